"""Benchmark of the `compression` group: one process, several seeds, one markdown table per network.

    python scripts/bench_compression.py [--networks small,transformer,resnet] [--seeds 3]
        [--methods none,prune,...] [--rounds 5] [--latency-seconds 0.2] [--threads 2]

(with the package installed, or ``PYTHONPATH=.`` from the repository root)

Networks:
  small        the default task: digits 8x8, ``model=cnn``, 20 epochs (call overhead dominates latency)
  transformer  digits as 64 positional tokens, ``model=transformer`` d_model 256, 4 layers, 4 heads,
               ff 512, AdamW 3e-4, batch 32, 10 epochs; teacher: 6 layers, ff 1024
  resnet       digits resized to 32x32, ``model=resnet`` channels [32, 64, 128], 10 epochs;
               teacher: channels [64, 128, 256]

Accuracy, size, params and compression ratio come from each trial (:func:`sweeper.trial.run.run`)
on the artifact reloaded from disk, for every seed. Methods that do not change the main training
run share its base network: the seed's dense model is trained once (``base.cache_dir``) and each
method compresses it. Latency is measured at the
end, side by side: the reloaded artifacts of seed 0 are timed in interleaved rounds (batch 1
and batch 64, one thread, round-robin in a rotating order), and each method's speed-up is the
median over rounds of its ratio to ``none`` measured in the same round, so the host's CPU
speed drift cancels. Tracking is off; teachers are cached under ``.sweeper_cache/``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from torch import nn

from sweeper.trial.context import JobContext
from sweeper.trial.measure import measure_latency
from sweeper.trial.run import run

NETWORKS: dict[str, list[str]] = {
    "small": [],
    "transformer": [
        "data=digit_tokens",
        "data.positional=true",
        "model=transformer",
        "model.vocab=1088",
        "model.d_model=256",
        "model.layers=4",
        "model.heads=4",
        "model.ff=512",
        "model.dropout=0.0",
        "optimizer=adamw",
        "optimizer.lr=0.0003",
        "strategy.batch_size=32",
        "strategy.epochs=10",
        "~compression.teacher_model",
        "+compression.teacher_model={_target_: sweeper.models.make_transformer, _partial_: true, vocab: 1088, "
        "d_model: 256, layers: 6, heads: 4, ff: 1024, dropout: 0.0}",
        "compression.teacher_epochs=10",
        "compression.teacher_lr=0.0003",
        "compression.teacher_batch_size=32",
    ],
    "resnet": [
        "data.image_size=32",
        "model=resnet",
        "model.channels=[32,64,128]",
        "strategy.epochs=10",
        "~compression.teacher_model",
        "+compression.teacher_model={_target_: sweeper.models.make_resnet, _partial_: true, channels: [64, 128, 256]}",
        "compression.teacher_epochs=10",
    ],
}
TEACHER_KEYS = (
    "compression.teacher_model",
    "compression.teacher_epochs",
    "compression.teacher_lr",
    "compression.teacher_batch_size",
)

# The method settings the project's targets refer to (the presets' defaults where they agree).
METHODS: dict[str, str] = {
    "none": "compression=none",
    "prune": "compression=prune compression.amount=0.9",
    "prune@0.8": "compression=prune compression.amount=0.8",  # the preset's default
    "prune_random": "compression=prune_random compression.amount=0.9",
    "prune_gradual": "compression=prune_gradual compression.amount=0.9",
    "prune_structured": "compression=prune_structured compression.amount=0.5",
    "quantize": "compression=quantize",
    "qat": "compression=qat compression.bits=4",
    "distill": "compression=distill",
    "pipeline": "compression=pipeline",  # distill -> prune 0.8 -> int8
}


def network_overrides(network: str, method: str) -> list[str]:
    """The network's overrides for one method: teacher keys go to the method that has a teacher."""
    stage = {"distill": "compression", "pipeline": "compression.stages.distill"}.get(method)
    out = []
    for item in NETWORKS[network]:
        key = next((k for k in TEACHER_KEYS if item.lstrip("~+").startswith(k)), None)
        if key is None:
            out.append(item)
        elif stage is not None:
            out.append(item.replace("compression.", f"{stage}.", 1))
    return out


@dataclass
class Row:
    """One method on one network: the metrics of every seed and the seed-0 artifact to time."""

    runs: list[dict[str, float]] = field(default_factory=list)
    latency_kind: str = ""
    module: nn.Module | None = None
    example: torch.Tensor | None = None


def run_network(network: str, methods: list[str], seeds: int, threads: int, scratch: Path) -> dict[str, Row]:
    """Every method on every seed of one network; the methods of a seed that start from a trained network
    share its base (trained once, ``base.cache_dir`` in ``scratch``)."""
    rows = {m: Row() for m in methods}
    torch.set_num_threads(threads)
    for seed in range(seeds):
        for method in methods:
            overrides = [*METHODS[method].split(), *network_overrides(network, method), f"seed={seed}"]
            with initialize_config_module("sweeper.conf", version_base="1.3"):
                cfg = compose(
                    "config",
                    overrides=[
                        *overrides,
                        f"threads={threads}",
                        "tracking.enabled=false",
                        "measure.latency_seconds=0.01",
                        f"base.cache_dir={scratch / 'bases'}",
                    ],
                )
            result = run(cfg, JobContext.standalone(scratch / network / method / str(seed)))
            deployed = result.deployed
            assert deployed is not None
            row = rows[method]
            row.runs.append(deployed.metrics)
            row.latency_kind = deployed.compressed.latency_kind
            if seed == 0:
                row.module, row.example = deployed.module, result.plan.task.x_test
            print(
                f"{network} {method} seed {seed}: test_accuracy {deployed.metrics['test_accuracy']:.4f} "
                f"size {deployed.metrics['size_bytes']:,.0f} B",
                flush=True,
            )
    return rows


def interleaved_latency(rows: dict[str, Row], rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    """Median latency (ms per sample) at batch 1 and 64, and the median per-round ratio to ``none``."""
    names = [n for n, r in rows.items() if r.module is not None]
    times: dict[str, dict[int, list[float]]] = {n: {1: [], 64: []} for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no method always goes first
        for batch in (1, 64):
            for name in order:
                row = rows[name]
                assert row.module is not None and row.example is not None
                times[name][batch].append(
                    measure_latency(row.module, row.example[:batch], min_run_time=seconds).median_ms
                )
    out = {}
    for name in names:
        out[name] = {f"ms_b{b}": statistics.median(times[name][b]) for b in (1, 64)}
        if "none" in times:
            for b in (1, 64):
                ratios = [base / own for base, own in zip(times["none"][b], times[name][b], strict=True)]
                out[name][f"speedup_b{b}"] = statistics.median(ratios)
    return out


def table(rows: dict[str, Row], latency: dict[str, dict[str, float]]) -> str:
    """One markdown row per method: score over seeds, size, ratio, interleaved latency and speed-ups."""
    base = statistics.fmean(m["test_accuracy"] for m in rows["none"].runs) if "none" in rows else None
    lines = [
        "| method | test accuracy % (mean ± std) | Δ vs none (pp) | size_bytes | compression_ratio | params "
        "| latency_ms b=1 | speed-up b=1 | latency_ms/sample b=64 | speed-up b=64 | latency_kind |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        accs = [100 * m["test_accuracy"] for m in row.runs]
        acc, std = statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
        delta = f"{acc - 100 * base:+.2f}" if base is not None else "-"
        lat = latency.get(name, {})

        def cell(key: str, fmt: str, suffix: str = "", lat: dict = lat) -> str:
            return format(lat[key], fmt) + suffix if key in lat else "-"

        def mean(key: str, row: Row = row) -> float:
            return statistics.fmean(m[key] for m in row.runs)

        lines.append(
            f"| {name} | {acc:.2f} ± {std:.2f} | {delta} | {mean('size_bytes'):,.0f} | {mean('compression_ratio'):.2f}x "
            f"| {mean('params'):,.0f} | {cell('ms_b1', '.3f')} | {cell('speedup_b1', '.2f', 'x')} "
            f"| {cell('ms_b64', '.4f')} | {cell('speedup_b64', '.2f', 'x')} | {row.latency_kind} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="small", help=f"comma-separated, from {', '.join(NETWORKS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per method")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    parser.add_argument("--latency-seconds", type=float, default=0.2, help="timing budget per measurement in a round")
    parser.add_argument("--threads", type=int, default=2, help="training threads (latency is always one thread)")
    args = parser.parse_args(argv)
    chosen = {
        "--networks": [n.strip() for n in args.networks.split(",") if n.strip()],
        "--methods": [m.strip() for m in args.methods.split(",") if m.strip()],
    }
    for flag, allowed in (("--networks", NETWORKS), ("--methods", METHODS)):
        unknown = [n for n in chosen[flag] if n not in allowed]
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    methods = chosen["--methods"]
    if "none" in methods:  # the baseline first: the others are compared with it
        methods = ["none", *[m for m in methods if m != "none"]]
    with tempfile.TemporaryDirectory() as scratch:
        for network in chosen["--networks"]:
            rows = run_network(network, methods, args.seeds, args.threads, Path(scratch))
            latency = interleaved_latency(rows, args.rounds, args.latency_seconds)
            print(f"\n### {network}\n\n{table(rows, latency)}\n", flush=True)


if __name__ == "__main__":
    main()
