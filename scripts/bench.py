"""Benchmarks that hold the framework to the hardware, each against a baseline measured in the same run.

    python scripts/bench.py overhead|startup|latency|workers|search|pruner|all [--repeats N]

Each subcommand prints its measurements, then as its last line
``<id> <value> goal <target> PASS|MISS``. Repetitions of the measured thing and of its
baseline are interleaved and summarised by their median. Peak memory (RSS) is printed too.
Run it on an otherwise idle machine: other load changes the ratios.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mb(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024


def verdict(bench_id: str, value: float, goal: str, ok: bool) -> str:
    return f"{bench_id} {value:.3f} goal {goal} {'PASS' if ok else 'MISS'}"


def interleave(repeats: int, **candidates: Callable[[], float]) -> dict[str, list[float]]:
    """Call each candidate once per round, in turn, ``repeats`` rounds; collect the seconds each returns."""
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            seconds[name].append(fn())
    return seconds


# --- P1: per-trial overhead against a raw PyTorch loop ---------------------------------------


def raw_loop(seed: int = 0, epochs: int = 20, batch_size: int = 64, lr: float = 3e-3) -> float:
    """The default trial written as a plain PyTorch loop; returns its wall seconds.

    The same work a trial does: train with per-epoch validation, save the weights, reload them
    into a fresh network and score it on the test and validation splits.
    """
    import torch

    from sweeper.models import make_cnn
    from sweeper.tasks import load_digits

    start = time.perf_counter()
    torch.set_num_threads(1)
    task = load_digits(seed=seed)
    torch.manual_seed(seed)
    model = make_cnn(input_shape=task.input_shape, num_classes=task.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed + 1)
    n = len(task.x_train)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        for begin in range(0, n, batch_size):
            idx = order[begin : begin + batch_size]
            loss = torch.nn.functional.cross_entropy(model(task.x_train[idx]), task.y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            (model(task.x_val).argmax(1) == task.y_val).float().mean().item()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.pt"
        torch.save(model.state_dict(), path)
        reloaded = make_cnn(input_shape=task.input_shape, num_classes=task.num_classes)
        reloaded.load_state_dict(torch.load(path))
    reloaded.eval()
    with torch.no_grad():
        for x, y in ((task.x_test, task.y_test), (task.x_val, task.y_val)):
            (reloaded(x).argmax(1) == y).float().mean().item()
    return time.perf_counter() - start


class TimedCalls:
    """Wrap ``module.name`` so that the seconds spent in it are summed, until ``restore``."""

    def __init__(self, module: object, name: str) -> None:
        self.module, self.name, self.original = module, name, getattr(module, name)
        self.seconds = 0.0

        def timed(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(module, name, timed)

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def restore(self) -> None:
        setattr(self.module, self.name, self.original)


class JobClock:
    """A Hydra callback (``+hydra.callbacks.bench_clock._target_=__main__.JobClock``): per job of a
    multirun, the clock at its end and the seconds spent in the timed calls since the previous job."""

    ends: ClassVar[list[float]] = []
    parts: ClassVar[list[dict[str, float]]] = []
    timed: ClassVar[dict[str, TimedCalls]] = {}

    def on_job_end(self, config: object, job_return: object, **kwargs: object) -> None:
        JobClock.ends.append(time.perf_counter())
        JobClock.parts.append({name: calls.take() for name, calls in JobClock.timed.items()})

    def __getattr__(self, name: str) -> Callable[..., None]:  # every other Hydra callback hook: nothing
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def multirun_trials(jobs: int, workdir: Path, overrides: list[str]) -> tuple[list[float], list[dict[str, float]]]:
    """Run ``python -m sweeper -m seed=0,...`` of ``jobs`` jobs in this process, as a user's grid does.

    Returns each job's seconds from the previous job's end to its own (the first job, which
    follows the sweep's start, left out) and what its timed calls took.
    """
    from sweeper.__main__ import main

    JobClock.ends, JobClock.parts = [], []
    argv = sys.argv
    sys.argv = [
        "sweeper",
        "-m",
        f"seed={','.join(str(i) for i in range(jobs))}",
        *overrides,
        f"hydra.sweep.dir={workdir / f'multirun{time.monotonic_ns()}'}",
        "hydra.callbacks.report.enabled=false",  # the sweep's end (the report) is not timed
        "+hydra.callbacks.bench_clock._target_=__main__.JobClock",
    ]
    try:
        main()
    finally:
        sys.argv = argv
    ends = JobClock.ends
    return [b - a for a, b in itertools.pairwise(ends)], JobClock.parts[1:]


def bench_overhead(repeats: int) -> str:
    """P1: a job of a grid multirun of the default task against the same work as a raw PyTorch loop.

    Each repetition runs a 4-job multirun in this process (Hydra's per-job composition, the
    trial, its MLflow run) and 4 raw loops, then the multirun without tracking; per-trial times
    are the spans between consecutive jobs' ends.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    import sweeper.trial.run

    workdir = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    os.chdir(workdir)  # the multirun's outputs and default store land here
    tracked = [f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", "tracking.experiment=bench"]
    untracked = ["tracking.enabled=false"]
    JobClock.timed = {
        "config composition": TimedCalls(ConfigLoaderImpl, "load_sweep_config"),
        "trial (sweeper.trial.run.run)": TimedCalls(sweeper.trial.run, "run"),
        "training": TimedCalls(sweeper.trial.run, "train"),
    }
    # the trials of a user's grid, whose report times latency at the end: none times itself
    # (the report is off here, its time is not per trial)
    tracked.append("measure.trial_latency=never")
    seconds: dict[str, list[float]] = {"raw": [], "sweeper": [], "untracked": []}
    parts: dict[str, list[float]] = {name: [] for name in JobClock.timed}
    try:
        multirun_trials(2, workdir, [*tracked, "strategy.epochs=1"])  # warm-up: imports, store creation
        raw_loop(epochs=1)
        for _ in range(repeats):  # interleaved: the CPU's speed drifts
            spans, job_parts = multirun_trials(4, workdir, tracked)
            seconds["sweeper"] += spans
            for row in job_parts:
                for name, value in row.items():
                    parts[name].append(value)
            seconds["raw"] += [raw_loop() for _ in range(4)]
            seconds["untracked"] += multirun_trials(4, workdir, untracked)[0]
    finally:
        for calls in JobClock.timed.values():
            calls.restore()
    raw, full, bare = (statistics.median(seconds[k]) for k in ("raw", "sweeper", "untracked"))
    median = {name: statistics.median(values) for name, values in parts.items()}
    print(f"raw PyTorch loop (train, save, reload, score)  {raw:.3f} s")
    print(f"job of a grid multirun                         {full:.3f} s  (+{full - raw:.3f} s)")
    print(f"  without MLflow (tracking.enabled=false)      {bare:.3f} s  (tracking costs {full - bare:.3f} s)")
    print(f"  of which Hydra's per-job composition         {median['config composition']:.3f} s")
    print(f"  of which training (sweeper.training.train)   {median['training']:.3f} s")
    trial_rest = median["trial (sweeper.trial.run.run)"] - median["training"]
    print(f"  of which the rest of the trial (data, model, artifact round trip, scores, MLflow) {trial_rest:.3f} s")
    launch = full - median["trial (sweeper.trial.run.run)"] - median["config composition"]
    print(f"  of which Hydra's job launch and callbacks    {launch:.3f} s")
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    ratio = full / raw
    return verdict("P1", ratio, "<= 1.05", ratio <= 1.05)


# --- P2: start-up ---------------------------------------------------------------------------


def timed_process(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "true"}
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_startup(repeats: int) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    trial = [sys.executable, "-m", "sweeper", "model=mlp", "strategy.epochs=1", "measure.latency_seconds=0.01"]
    timed_process(trial, workdir)  # creates the MLflow store once, as a user's first run does
    baseline = [sys.executable, "-c", "import torch, mlflow"]
    # What any script that trains with torch.optim and logs to an MLflow SQLite store imports too:
    # torch's optimizers import torch._dynamo on first use; the SQLite store needs SQLAlchemy.
    floor = [sys.executable, "-c", "import torch, mlflow, torch._dynamo, mlflow.store.tracking.sqlalchemy_store"]
    seconds = interleave(
        repeats,
        baseline=lambda: timed_process(baseline, workdir),
        floor=lambda: timed_process(floor, workdir),
        sweeper=lambda: timed_process(trial, workdir),
        no_model=lambda: timed_process([*trial, "tracking.log_model=false"], workdir),
        untracked=lambda: timed_process([*trial, "tracking.enabled=false"], workdir),
    )
    base, low, full, no_model, untracked = (
        statistics.median(seconds[k]) for k in ("baseline", "floor", "sweeper", "no_model", "untracked")
    )
    print(f"python -c 'import torch, mlflow'   {base:.3f} s")
    print(f"  + torch._dynamo + MLflow's SQL store {low:.3f} s  (paid by any tracked torch training)")
    print(f"python -m sweeper (1-epoch trial)   {full:.3f} s  ({full / low:.3f} x that floor)")
    print(
        f"  tracking.log_model=false          {no_model:.3f} s  (the first logged MLflow model costs {full - no_model:.3f} s)"
    )
    print(
        f"  tracking.enabled=false            {untracked:.3f} s  (no MLflow at all: {untracked / base:.3f} x the baseline)"
    )
    print(f"peak RSS of a child {peak_rss_mb(children=True):.0f} MB")
    ratio = full / base
    return verdict("P2", ratio, "<= 1.5", ratio <= 1.5)


# --- P7: latency repeatability --------------------------------------------------------------


def bench_latency(repeats: int) -> str:
    """P7: how repeatable the report's latency ratio is: the round repeated, the ratio's coefficient of variation.

    The report's round (:func:`sweeper.report.latency_round.interleaved_round`) times the default CNN
    (the baseline) and the same CNN at twice the channels side by side; each repetition gives the ratio
    wide / baseline. Printed beside it, for contrast: the CV of the baseline's absolute latency.
    """
    import torch

    from sweeper.models import make_cnn
    from sweeper.report.latency_round import RoundNetwork, interleaved_round, ratio_interval
    from sweeper.tasks import load_digits

    task = load_digits(seed=0)
    torch.manual_seed(0)
    base = make_cnn(input_shape=task.input_shape, num_classes=task.num_classes).eval()
    wide = make_cnn(input_shape=task.input_shape, num_classes=task.num_classes, channels=[32, 64], hidden=128).eval()
    x1, xb = task.x_test[:1], task.x_test[:256]
    networks = [RoundNetwork("base", base, x1, xb), RoundNetwork("wide", wide, x1, xb)]
    ratios, absolute = [], []
    for _ in range(repeats):
        times = interleaved_round(networks, rounds=5, block_seconds=0.05)
        ratios.append(ratio_interval(times["wide"]["batch1"], times["base"]["batch1"])[0])
        absolute.append(statistics.median(times["base"]["batch1"]))
    cv = statistics.stdev(ratios) / statistics.fmean(ratios)
    cv_absolute = statistics.stdev(absolute) / statistics.fmean(absolute)
    print("ratio wide / baseline at batch 1, per repetition of the round: " + ", ".join(f"{r:.3f}" for r in ratios))
    print(
        f"ratio CV {100 * cv:.2f}%; the baseline's absolute latency over the same rounds: CV {100 * cv_absolute:.2f}%"
    )
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    return verdict("P7", 100 * cv, "<= 5 (%)", cv <= 0.05)


# --- P4 / P5: search efficiency and pruner savings, through the real Optuna sweeper ------------


def sweep(workdir: Path, *overrides: str) -> pd.DataFrame:
    """Run ``python -m sweeper -m ...`` in ``workdir``; return its trials (`load_runs`)."""
    from sweeper.tracking.results import load_runs

    workdir.mkdir(parents=True, exist_ok=True)
    study = next(o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweeper.study_name="))
    timed_process(
        [
            sys.executable,
            "-m",
            "sweeper",
            "-m",
            "hydra/sweeper=optuna",
            "hydra.callbacks.report.enabled=false",
            *overrides,
        ],
        workdir,
    )
    return load_runs(sweep_id=study, tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


LRS = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1]
WIDTHS = [8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384]
OBJECTIVES = "hydra.sweeper.objectives={val_accuracy: maximize, size_bytes: minimize, latency_ms: minimize}"


def bench_search(repeats: int) -> str:
    """Hypervolume of 30 TPE and 30 random trials against the 120-point grid of the same space."""
    from sweeper.report.grouping import network_keys
    from sweeper.report.pareto import hypervolume

    workdir = Path(tempfile.mkdtemp(prefix="bench-search-"))
    space = [
        f"optimizer.lr=choice({', '.join(map(str, LRS))})",
        f"model.hidden=choice({', '.join(map(str, WIDTHS))})",
        "model=cnn",
        "strategy.epochs=5",
        "measure.latency_seconds=0.05",
        OBJECTIVES,
    ]
    budgets = {"grid": 120, "tpe": 30, "random": 30}
    runs = {
        name: sweep(
            workdir / name,
            *space,
            f"hydra.sweeper.sampler={name}",
            f"hydra.sweeper.n_trials={n}",
            "hydra.sweeper.seed=0",
            f"hydra.sweeper.study_name=p4-{name}",
        )
        for name, n in budgets.items()
    }
    # The sweeps run minutes apart, and the CPU's speed drifts between them: as the report does,
    # each deployed network gets the median latency of all its measurements (here: per width).
    every_run = pd.concat(runs.values(), keys=list(runs), names=["sampler", None])
    keys = network_keys(every_run)
    pooled = every_run.latency_ms.groupby(keys).transform("median")
    volumes: dict[str, dict[str, float]] = {}
    for latency, label in ((pooled, "pooled per network"), (every_run.latency_ms, "as measured")):
        points = pd.DataFrame({"acc": -every_run.val_accuracy, "size": every_run.size_bytes, "lat": latency})
        reference = np.array([0.0, 1.1 * points["size"].max(), 1.1 * points["lat"].max()])
        volume = volumes[label] = {name: hypervolume(points.loc[name].to_numpy(), reference) for name in runs}
        print(f"latency {label}; reference point: accuracy 0, size {reference[1]:.0f} B, latency {reference[2]:.4f} ms")
        for name, df in runs.items():
            print(
                f"  {name:7s} {len(df):4d} trials  hypervolume {volume[name]:.4g}  ratio to grid "
                f"{volume[name] / volume['grid']:.3f}"
            )
    volume = volumes["pooled per network"]
    print(f"peak RSS of a child {peak_rss_mb(children=True):.0f} MB")
    ratio = volume["tpe"] / volume["grid"]
    return verdict("P4", ratio, ">= 0.95 and > random", ratio >= 0.95 and volume["tpe"] > volume["random"])


def bench_pruner(repeats: int) -> str:
    """A 30-trial lr search with the hyperband pruner against the same search without one."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-pruner-"))
    common = [
        "search=lr",
        "hydra.sweeper.n_trials=30",
        "hydra.sweeper.seed=0",
        "model=mlp",
        "measure.latency_seconds=0.02",
    ]
    plain = sweep(workdir / "none", *common, "hydra.sweeper.study_name=p5-none")
    pruned = sweep(
        workdir / "hyperband", *common, "hydra.sweeper.pruner=hyperband", "hydra.sweeper.study_name=p5-hyperband"
    )

    def epochs(df: pd.DataFrame) -> int:
        ran = df.epochs_run.fillna(pd.to_numeric(df.pruned_epoch, errors="coerce"))
        return int(ran.sum())

    saved = 1 - epochs(pruned) / epochs(plain)
    best_gap = 100 * (plain.val_accuracy.max() - pruned.val_accuracy.max())
    print(f"no pruner  {epochs(plain):5d} epochs  best val_accuracy {plain.val_accuracy.max():.4f}")
    print(
        f"hyperband  {epochs(pruned):5d} epochs  best val_accuracy {pruned.val_accuracy.max():.4f} "
        f"({(pruned.optuna_state == 'PRUNED').sum()} pruned)"
    )
    print(f"epochs saved {100 * saved:.1f}%, best val_accuracy {best_gap:+.2f} pp behind")
    return verdict("P5", 100 * saved, ">= 40 (%) with best within 0.5 pp", saved >= 0.4 and best_gap <= 0.5)


# --- P3: two warm workers on one study --------------------------------------------------------


def bench_workers(repeats: int) -> str:
    """P3: trials per minute of 2 workers against 1 on a 12-trial study (``scripts/bench_workers.py``).

    Each worker is one ``python -m sweeper -m`` process that runs trial after trial of the shared
    study (it stays warm: imports, data and the MLflow store once); both ends are timed in this run.
    """
    import shutil

    from bench_workers import throughput

    root = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        ratio = throughput(root, trials=12, epochs=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"peak RSS of a child {peak_rss_mb(children=True):.0f} MB")
    return verdict("P3", ratio, ">= 1.8", ratio >= 1.8)


BENCHES: dict[str, tuple[Callable[[int], str], int]] = {
    "overhead": (bench_overhead, 5),
    "startup": (bench_startup, 5),
    "search": (bench_search, 1),
    "pruner": (bench_pruner, 1),
    "latency": (bench_latency, 5),
    "workers": (bench_workers, 1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", choices=[*BENCHES, "all"])
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds of overhead, startup and latency (default: their own); workers, search and pruner run once",
    )
    args = parser.parse_args()
    if args.repeats is not None and args.repeats < 2:
        parser.error(f"--repeats={args.repeats}: must be >= 2")
    names = list(BENCHES) if args.bench == "all" else [args.bench]
    verdicts = []
    for name in names:
        fn, default_repeats = BENCHES[name]
        print(f"== {name}")
        verdicts.append(fn(args.repeats or default_repeats))
        print(verdicts[-1], flush=True)
    if len(verdicts) > 1:
        print("== summary")
        print("\n".join(verdicts))


if __name__ == "__main__":
    main()
