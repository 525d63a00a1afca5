"""Throughput of independent workers on one study, and the cost of the shared (PostgreSQL + server) path.

    python scripts/bench_workers.py [--trials 12] [--overhead-trials 6] [--epochs 30]

1. Trials per minute with 1 worker and with 2 workers (``n_jobs=1`` each, ``threads=1``) on
   one study of ``--trials`` trials (digits, small CNN, ``--epochs``) in a journal file: wall
   clock from the first start to the last exit (the ratio judged), and of warm workers (each
   worker's first trial, which pays for importing torch, left out).
   Last line: ``P3 <ratio> goal >= 1.8 PASS|MISS`` (also ``python scripts/bench.py workers``).
2. Per-trial overhead of the shared path: one worker, ``--overhead-trials`` tiny trials, with
   the study in PostgreSQL and the runs in a local ``mlflow server`` backed by PostgreSQL,
   against the local default (journal file + ``sqlite:///mlflow.db``). Needs PostgreSQL's
   binaries; skipped otherwise. The servers are started before the clock starts.

Both halves run in one invocation, so they see the same machine load; run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from services import find_pg_bin, start_mlflow_server, start_postgres, start_workers

# Tiny-but-not-trivial trials: a small CNN trained on digits, a few seconds each on one thread.
TRIAL = ["search=lr", "model=cnn", "measure.latency_seconds=0.05", "hydra.callbacks.report.enabled=false"]


def timed_sweep(workers: int, overrides: list[str], workdir: Path) -> float:
    """Seconds from starting ``workers`` workers until the last one exits (all must succeed)."""
    start = time.perf_counter()
    procs = start_workers(workers, overrides, workdir)
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - start
    if any(codes):
        logs = "\n".join((workdir / f"worker{i}" / "worker.log").read_text()[-1500:] for i in range(workers))
        raise SystemExit(f"a worker failed ({codes}):\n{logs}")
    return seconds


def study_overrides(trials: int, storage: str, tracking: str, epochs: int) -> list[str]:
    return [
        *TRIAL,
        f"strategy.epochs={epochs}",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.study_name=bench-{uuid.uuid4().hex[:8]}",
        f"hydra.sweeper.storage={storage}",
        f"tracking.uri={tracking}",
    ]


def study_of(overrides: list[str]) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweeper.study_name="))


def trial_span(storage: str, study_name: str, *, skip: int = 0) -> tuple[int, float]:
    """(trials, seconds from the first one's start to the last one's end), leaving out the first ``skip``.

    Each worker's first trial also pays for importing torch and building the data; with
    ``skip`` = the number of workers, the rest measures warm workers.
    """
    import optuna

    from sweeper.search.study import open_storage

    trials = [
        t
        for t in optuna.load_study(study_name=study_name, storage=open_storage(storage)).trials
        if t.datetime_start and t.datetime_complete
    ]
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials if t.datetime_start and t.datetime_complete)
    spans = spans[skip:]
    start = min(begun for begun, _ in spans)
    end = max(ended for _, ended in spans)
    return len(spans), (end - start).total_seconds()


def throughput(root: Path, trials: int, epochs: int) -> float:
    """Print trials/minute for 1 and 2 workers (wall clock, and trials only); return the wall-clock ratio."""
    rates, spans = {}, {}
    for n in (1, 2):
        work = root / f"workers{n}"
        work.mkdir()
        journal = str(work / "optuna.journal")
        overrides = study_overrides(trials, journal, f"sqlite:///{work / 'mlflow.db'}", epochs)
        seconds = timed_sweep(n, overrides, work)
        warm, span = trial_span(journal, study_of(overrides), skip=n)
        rates[n], spans[n] = trials / seconds * 60, warm / span * 60
        print(
            f"{n} worker(s): {trials} trials in {seconds:.1f} s = {rates[n]:.1f} trials/min; "
            f"warm workers (each one's first trial left out): {spans[n]:.1f} trials/min",
            flush=True,
        )
    print(f"ratio of warm workers: {spans[2] / spans[1]:.2f}")
    return rates[2] / rates[1]


def overhead(root: Path, trials: int) -> None:
    """Print the per-trial cost of PostgreSQL storage + tracking server against journal + SQLite."""
    if trials == 0:
        return
    if find_pg_bin() is None:
        print("overhead: skipped (PostgreSQL is not installed)")
        return
    cluster = start_postgres(root=Path(tempfile.mkdtemp(prefix="sweeper-bench-pg-")))
    server = None
    try:
        storage, backend = cluster.create_database("optuna"), cluster.create_database("mlflow")
        server = start_mlflow_server(backend, root / "artifacts", log_path=root / "mlflow-server.log")
        times: dict[str, list[float]] = {"local": [], "shared": []}  # seconds per trial, trials only
        for repeat in range(2):
            for name in times:  # interleaved: the machine's load drifts over time
                work = root / f"{name}{repeat}"
                work.mkdir()
                journal = str(work / "optuna.journal")
                if name == "local":
                    args = study_overrides(trials, journal, f"sqlite:///{work / 'mlflow.db'}", 2)
                else:
                    args = study_overrides(trials, storage, server.uri, 2)
                seconds = timed_sweep(1, args, work)
                _, span = trial_span(journal if name == "local" else storage, study_of(args))
                times[name].append(span / trials)
                print(
                    f"{name}: {trials} trials in {seconds:.1f} s wall, {span / trials:.2f} s/trial "
                    "(first trial start to last trial end)",
                    flush=True,
                )
        local, shared = min(times["local"]), min(times["shared"])
        print(
            f"overhead of PostgreSQL + tracking server: {shared - local:+.2f} s/trial "
            f"({shared:.2f} vs {local:.2f} s/trial, best of 2 each)"
        )
    finally:
        if server is not None:
            server.stop()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12, help="study size of the throughput comparison")
    parser.add_argument(
        "--overhead-trials", type=int, default=6, help="study size of the overhead comparison (0: skip it)"
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs per trial of the throughput comparison")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sweeper-bench-"))
    try:
        overhead(root, args.overhead_trials)
        ratio = throughput(root, args.trials, args.epochs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"throughput ratio 2 workers / 1 worker: {ratio:.2f}")
    print(f"P3 {ratio:.2f} goal >= 1.8 {'PASS' if ratio >= 1.8 else 'MISS'}")


if __name__ == "__main__":
    main()
