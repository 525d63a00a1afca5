"""Benchmark of ``compression=mixed`` against uniform settings at the same artifact size.

    python scripts/bench_mixed.py [--tasks default,vision] [--seeds 3]

(with the package installed, or ``PYTHONPATH=.`` from the repository root)

For each task and seed the dense model is trained once (the base every method of the seed starts
from, ``base.cache_dir``) and compressed four ways, each fine-tuned for the
same 5 epochs: uniform ``qat`` at 4 bits, uniform ``prune`` at 0.9 (global magnitude), and
``mixed`` with ``budget_kb`` set to the size of that seed's qat-4 artifact and of its prune-0.9
artifact. Every number is of the artifact reloaded from disk; scores are on the test split, the
allocation is chosen on the validation split. Tracking is off.

Tasks:
  default  digits 8x8, ``model=cnn`` (the built-in default task)
  vision   the vision preset: 5,000 MNIST digits, a residual network (``experiment=vision``)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module

from sweeper.trial.context import JobContext
from sweeper.trial.run import run

TASKS = {"default": [], "vision": ["experiment=vision"]}
UNIFORM = {
    "qat 4-bit": ["compression=qat", "compression.bits=4"],
    "prune 0.9": ["compression=prune", "compression.amount=0.9"],
}


def _metrics(task: str, seed: int, overrides: list[str], work: Path, name: str) -> dict[str, float]:
    """A trial's final metrics; every method of a seed starts from its one base (``base.cache_dir`` in ``work``)."""
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        cfg = compose(
            "config",
            [*TASKS[task], *overrides, f"seed={seed}", "tracking.enabled=false", f"base.cache_dir={work / 'bases'}"],
        )
    return run(cfg, JobContext.standalone(work / f"{task}-{seed}-{name}")).metrics


def run_task(task: str, seeds: int, work: Path) -> list[dict[str, Any]]:
    """Every (method, seed) row of one task: method, budget, size, validation and test score."""
    rows = []
    for seed in range(seeds):
        for name, overrides in UNIFORM.items():
            uniform = _metrics(task, seed, overrides, work, name)
            budget = ["compression=mixed", f"compression.budget_kb={uniform['size_bytes'] / 1024}"]
            mixed = _metrics(task, seed, budget, work, f"mixed-{name}")
            for method, metrics in ((name, uniform), (f"mixed at {name}'s size", mixed)):
                rows.append({"task": task, "seed": seed, "method": method, "pair": name, **metrics})
                scores = f"test {metrics['test_score']:.4f} val {metrics['val_score']:.4f}"
                shape = f"bits {metrics.get('bits', float('nan')):.2f} sparsity {metrics.get('sparsity', 0.0):.2f}"
                print(f"{task} seed {seed} {method}: {scores} size {metrics['size_bytes'] / 1024:.2f} KiB {shape}")
    return rows


def _mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table: per task and method, test score mean ± std over seeds, size, mean bits and sparsity."""
    lines = [
        "| task | method | test score (mean ± std) | val score | size (KiB) | mean bits | mean sparsity | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((r["task"], r["method"]) for r in rows))
    for task, method in keys:
        group = [r for r in rows if r["task"] == task and r["method"] == method]
        lines.append(
            f"| {task} | {method} | {_mean_std([r['test_score'] for r in group])} | "
            f"{statistics.mean(r['val_score'] for r in group):.3f} | "
            f"{statistics.mean(r['size_bytes'] for r in group) / 1024:.2f} | "
            f"{statistics.mean(r.get('bits', 32.0) for r in group):.2f} | "
            f"{statistics.mean(r.get('sparsity', 0.0) for r in group):.2f} | {len(group)} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Per task and budget: mixed against the uniform method of the same size, paired over seeds."""
    lines = []
    for task, pair in dict.fromkeys((r["task"], r["pair"]) for r in rows):
        uniform = [r for r in rows if r["task"] == task and r["method"] == pair]
        mixed = [r for r in rows if r["task"] == task and r["method"] == f"mixed at {pair}'s size"]
        gaps = [m["test_score"] - u["test_score"] for m, u in zip(mixed, uniform, strict=True)]
        sizes = all(m["size_bytes"] <= u["size_bytes"] for m, u in zip(mixed, uniform, strict=True))
        lines.append(
            f"{task}, at {pair}'s size: mixed {statistics.mean(gaps) * 100:+.1f} points "
            f"(per seed {', '.join(f'{g * 100:+.1f}' for g in gaps)}); within the size in every seed: {sizes}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="default,vision", help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        for task in args.tasks.split(","):
            rows += run_task(task, args.seeds, Path(work))
    print()
    print(table(rows))
    print()
    print("\n".join(verdicts(rows)))


if __name__ == "__main__":
    main()
