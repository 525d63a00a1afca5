"""Benchmark of the `compression` group on the default task: one process, several seeds, a markdown table.

    python scripts/bench_compression.py [--seeds 3] [--methods none,prune,...] [--latency-seconds 0.5]

(with the package installed, or ``PYTHONPATH=.`` from the repository root)

Every number is measured by the trial itself (:func:`sweeper.run.execute`) on the artifact
reloaded from disk: test accuracy (mean +- std over seeds), size in bytes, compression
ratio against the same model's fp32 dense artifact, median per-sample latency at batch 1
and at the larger batch, and whether the latency saving is ``real`` or ``simulated``.
Tracking is off; trained teachers are cached under ``.sweeper_cache/`` in the working
directory, as in any run.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from hydra import compose, initialize_config_module

from sweeper.progress import TrialProgress
from sweeper.run import execute, plan_trial

# The method settings the project's targets refer to (the presets' defaults where they agree).
METHODS: dict[str, list[str]] = {
    "none": ["compression=none"],
    "prune": ["compression=prune", "compression.amount=0.9"],
    "prune@0.8": ["compression=prune", "compression.amount=0.8"],  # the preset's default
    "prune@0.9,ft10": ["compression=prune", "compression.amount=0.9", "compression.finetune_epochs=10"],
    "prune_random": ["compression=prune_random", "compression.amount=0.9"],
    "prune_gradual": ["compression=prune_gradual", "compression.amount=0.9"],
    "prune_structured": ["compression=prune_structured", "compression.amount=0.5"],
    "quantize": ["compression=quantize"],
    "qat": ["compression=qat", "compression.bits=4"],
    "distill": ["compression=distill"],
    "pipeline": ["compression=pipeline"],  # distill -> prune 0.8 -> int8
    "pipeline@0.9": ["compression=pipeline", "+compression.options={prune: {amount: 0.9}}"],
}


def run_method(overrides: list[str], seed: int, latency_seconds: float) -> tuple[dict[str, float], str]:
    """One trial with tracking off; its final metrics and latency kind."""
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[*overrides, f"seed={seed}", "tracking.enabled=false", f"measure.latency_seconds={latency_seconds}"],
        )
    plan = plan_trial(cfg)
    compress, results = plan.compressor.compress, []

    def keep_result(model: Any, ctx: Any) -> Any:  # the latency kind travels with the compressed result
        results.append(compress(model, ctx))
        return results[-1]

    plan.compressor.compress = keep_result  # type: ignore[method-assign]
    metrics = execute(plan, None, TrialProgress(f"{' '.join(overrides)} seed={seed}", plan.strategy.epochs))
    return metrics, results[-1].latency_kind


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(results: dict[str, list[dict[str, float]]], kinds: dict[str, str]) -> str:
    """The markdown table: one row per method, means over seeds, differences against ``none``."""
    base_acc = statistics.fmean(m["test_accuracy"] for m in results["none"]) if "none" in results else None
    base_lat = statistics.median(m["latency_ms"] for m in results["none"]) if "none" in results else None
    lines = [
        "| method | test accuracy % (mean ± std) | Δ vs none (pp) | size_bytes | compression_ratio | latency_ms (b=1) "
        "| speed-up b=1 | latency_ms_batch | latency_kind | sparsity | bits |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        acc, std = _mean_std([100 * m["test_accuracy"] for m in runs])
        delta = f"{acc - 100 * base_acc:+.2f}" if base_acc is not None else "-"
        latency = statistics.median(m["latency_ms"] for m in runs)
        speedup = f"{base_lat / latency:.2f}x" if base_lat else "-"
        optional = [f"{statistics.fmean(m[k] for m in runs):.3g}" if k in runs[0] else "-" for k in ("sparsity", "bits")]
        lines.append(
            f"| {name} | {acc:.2f} ± {std:.2f} | {delta} | {statistics.fmean(m['size_bytes'] for m in runs):,.0f} "
            f"| {statistics.fmean(m['compression_ratio'] for m in runs):.2f}x | {latency:.3f} | {speedup} "
            f"| {statistics.median(m['latency_ms_batch'] for m in runs):.4f} | {kinds[name]} | {' | '.join(optional)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per method")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--latency-seconds", type=float, default=0.5, help="timing budget per latency measurement")
    args = parser.parse_args(argv)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; allowed: {', '.join(METHODS)}")

    results: dict[str, list[dict[str, float]]] = {}
    kinds: dict[str, str] = {}
    for name in names:
        for seed in range(args.seeds):
            metrics, kinds[name] = run_method(METHODS[name], seed, args.latency_seconds)
            results.setdefault(name, []).append(metrics)
        print(f"\n{table(results, kinds)}\n", flush=True)  # the table so far: a long run can be read as it goes


if __name__ == "__main__":
    main()
