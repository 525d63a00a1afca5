"""Training strategies against their baseline, seed by seed: precision, gradient accumulation, data parallel.

    python scripts/bench_strategies.py [--fields digits,vision,text,recsys,bio,llm] [--compare precision,...]
                                       [--seeds 3] [--device cpu|cuda] [--epochs N] [--out bench_strategies.md]

Each comparison trains the same field twice per seed (:func:`sweeper.trial.run.run`, tracking off, no base
reuse) and prints, per field: the score of each side (mean over seeds), their paired difference with its 95 %
t-interval, and the ratio of training time (variant / baseline, median over seeds; measured in the same run):

- ``precision``: ``strategy.precision=bf16`` against ``32`` (on a GPU: autocast on tensor cores);
- ``accumulate``: ``strategy.batch_size=16 strategy.accumulate_steps=4`` against ``strategy.batch_size=64``;
- ``nproc``: ``nproc=2`` (data parallel, two processes) against one process at the same global batch.

``llm`` is a causal LM on the text of ``data=lm_text``: ``model=tiny_llama`` on CPU, the pretrained SmolLM2-135M
fine-tuned on a GPU (``--device cuda``). Run it on an otherwise idle machine: other load changes the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_module

from sweeper.report.stats import mean_interval
from sweeper.trial.context import JobContext
from sweeper.trial.run import run

FIELDS = {
    "digits": [],
    "vision": ["experiment=vision", "data.n_samples=6000"],
    "text": ["experiment=text"],
    "recsys": ["experiment=recsys"],
    "bio": ["experiment=bio"],
    "llm": ["data=lm_text", "model=tiny_llama", "strategy.batch_size=16", "optimizer.lr=0.003"],
}
LLM_ON_GPU = ["experiment=llm", "strategy.epochs=1", "data.eval_windows=64"]
COMPARISONS = {
    "precision": (["strategy.precision=32"], ["strategy.precision=bf16"]),
    "accumulate": (["strategy.batch_size=64"], ["strategy.batch_size=16", "strategy.accumulate_steps=4"]),
    "nproc": (["nproc=1"], ["nproc=2"]),
}


def trial(overrides: list[str]) -> tuple[float, float]:
    """(test score, training seconds) of one trial."""
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        cfg = compose("config", [*overrides, "tracking.enabled=false", "base.reuse=false"])
    result = run(cfg, JobContext.standalone(Path(tempfile.mkdtemp(prefix="bench-strategies-"))))
    return result.metrics["test_score"], result.metrics["train_seconds"]


def compare(field: list[str], comparison: str, seeds: int) -> str:
    """One table row: baseline and variant over ``seeds`` seeds."""
    base, variant = COMPARISONS[comparison]
    scores: dict[str, list[float]] = {"base": [], "variant": []}
    ratios = []
    for seed in range(seeds):
        a, a_time = trial([*field, *base, f"seed={seed}"])
        b, b_time = trial([*field, *variant, f"seed={seed}"])
        scores["base"].append(a)
        scores["variant"].append(b)
        ratios.append(b_time / a_time)
        print(f"  seed {seed}: {' '.join(base)} {a:.4f} ({a_time:.1f} s), {' '.join(variant)} {b:.4f} ({b_time:.1f} s)")
    mean, low, high = mean_interval([b - a for a, b in zip(scores["base"], scores["variant"], strict=True)])
    interval = f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]" if seeds > 1 else f"{mean:+.4f}"
    return (
        f"{' '.join(variant)} vs {' '.join(base)} | {statistics.fmean(scores['base']):.4f} | "
        f"{statistics.fmean(scores['variant']):.4f} | {interval} | {statistics.median(ratios):.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fields", default="digits,vision,llm")
    parser.add_argument("--compare", default="precision,accumulate,nproc")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="strategy.epochs for every field (default: its own)")
    parser.add_argument("--out", type=Path, default=Path("bench_strategies.md"))
    args = parser.parse_args()
    extra = [f"device={args.device}", *([f"strategy.epochs={args.epochs}"] if args.epochs is not None else [])]
    lines = [
        f"device {args.device}, {args.seeds} seeds; difference = variant - baseline (score), time = variant / baseline",
        "",
        "| field | comparison | baseline score | variant score | difference [95 % CI] | training time |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.fields.split(","):
        field = LLM_ON_GPU if name == "llm" and args.device.startswith("cuda") else FIELDS[name]
        for comparison in args.compare.split(","):
            print(f"{name}: {comparison}", flush=True)
            lines.append(f"| {name} | {compare([*field, *extra], comparison, args.seeds)} |")
            print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
