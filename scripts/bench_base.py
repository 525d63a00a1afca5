"""P10, time to an answer: a compression grid with each base network trained once, against the code before.

    python scripts/bench_base.py [--baseline-ref ec6ae2c] [--epochs 200] [--repeats 2]
        [--methods none,prune,prune_structured,quantize,qat,mixed,pipeline]

Runs the grid ``-m compression=none,prune,prune_structured,quantize,qat,mixed,pipeline seed=0,1,2`` on the
default task (digits, the small CNN) with ``strategy.epochs`` large enough that training dominates, once
with this checkout and once with ``--baseline-ref`` (a git worktree of the commit before bases were reused,
where every trial trains its own network), interleaved ``--repeats`` times, each run in a fresh directory
(no cache carried over; the report is off in both: its latency round is the same work). Prints the wall
time of each, their ratio, and the floor: the grid's three base trainings plus each method's own work
(compression, fine-tuning, a distillation teacher, an in-training method's own training), summed from the
metrics of this checkout's runs (``base_train_seconds`` of the runs that trained a base,
``compress_seconds`` of every run, ``train_seconds`` of in-training runs).

Last lines: ``P10 <ratio> goal <= 0.35 PASS|MISS`` and ``P10-floor <ratio to the floor> goal <= 1.2 PASS|MISS``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = "none,prune,prune_structured,quantize,qat,mixed,pipeline"


def checkout(ref: str, into: Path) -> Path:
    """A worktree of ``ref``, run from its source tree (``PYTHONPATH``): nothing is installed from it. Its
    configs are linked where the installed package keeps them (``sweeper.conf``), so its own are read."""
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), ref], check=True, capture_output=True
    )
    (into / "sweeper" / "conf").symlink_to(into / "conf", target_is_directory=True)
    return into


def timed_grid(code: Path, epochs: int, methods: str) -> tuple[float, Path]:
    """Seconds ``python -m sweeper`` of ``code`` takes for the grid, in a fresh directory (kept for its store)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-base-"))
    env = {**os.environ, "PYTHONPATH": str(code), "CI": "true"}
    args = [
        "-m",
        f"compression={methods}",
        "seed=0,1,2",
        f"strategy.epochs={epochs}",
        "measure.latency_seconds=0.05",
        "hydra.callbacks.report.enabled=false",
    ]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sweeper", *args], cwd=workdir, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{code}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return seconds, workdir


def floor_seconds(workdir: Path) -> tuple[float, int]:
    """The work no reuse can save, from the runs of one grid: (seconds, bases trained)."""
    sys.path.insert(0, str(REPO))
    from sweeper.tracking.results import load_runs
    from sweeper.trial.plan import compression_options

    runs = load_runs(sweep_id="latest", tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    in_training = runs["compression"].map(lambda name: compression_options()[name].training == "in-training")
    bases = runs[(runs["base_model"] == "trained") & ~in_training]
    own = runs.loc[in_training, "train_seconds"].sum() + runs.get("teacher_seconds", runs["seed"] * 0).fillna(0).sum()
    return float(bases["base_train_seconds"].sum() + runs["compress_seconds"].sum() + own), len(bases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-ref", default="ec6ae2c", help="the commit before bases were reused")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--methods", default=METHODS, help="the grid's compression options")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    baseline = checkout(args.baseline_ref, Path(tempfile.mkdtemp(prefix="bench-base-ref-")) / "code")
    times: dict[str, list[float]] = {"reuse": [], "baseline": []}
    floors: list[float] = []
    try:
        for repeat in range(args.repeats):  # interleaved: the machine's speed drifts
            seconds, _ = timed_grid(baseline, args.epochs, args.methods)
            times["baseline"].append(seconds)
            seconds, workdir = timed_grid(REPO, args.epochs, args.methods)
            times["reuse"].append(seconds)
            floor, bases = floor_seconds(workdir)
            floors.append(floor)
            print(f"repeat {repeat + 1}: baseline {times['baseline'][-1]:.1f} s, reuse {seconds:.1f} s "
                  f"({bases} bases trained), floor {floor:.1f} s", flush=True)  # fmt: skip
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], capture_output=True)
    reuse, base, floor = (statistics.median(v) for v in (times["reuse"], times["baseline"], floors))
    ratio, to_floor = reuse / base, reuse / floor
    n = len(args.methods.split(","))
    print(f"grid of {3 * n} trials ({n} methods x 3 seeds), strategy.epochs={args.epochs}: median of {args.repeats}")
    print(f"  every trial trains its own network ({args.baseline_ref})  {base:.1f} s")
    print(f"  each base trained once (this checkout)            {reuse:.1f} s")
    print(f"  floor (3 bases + each method's own work)          {floor:.1f} s")
    print(f"P10 {ratio:.3f} goal <= 0.35 {'PASS' if ratio <= 0.35 else 'MISS'}")
    print(f"P10-floor {to_floor:.3f} goal <= 1.2 {'PASS' if to_floor <= 1.2 else 'MISS'}")


if __name__ == "__main__":
    main()
