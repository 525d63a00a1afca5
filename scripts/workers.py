"""Start N independent sweep workers on one Optuna study (each a ``python -m sweeper -m`` process).

    python scripts/workers.py N [--wait] [--logs DIR] -- OVERRIDES...

Every worker runs the same command with ``hydra.sweeper.n_jobs=1`` in its own working
directory ``DIR/worker<i>``; they share the study through ``hydra.sweeper.storage`` (give a
database URL, or a journal file path on one machine) and stop together once the study has
``n_trials`` done trials. It prints the pids, logs and the command that stops them; with
``--wait`` it waits for them and exits non-zero if one failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services import start_workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, help="number of workers")
    parser.add_argument("--logs", type=Path, default=Path("workers"), help="working directories and logs")
    parser.add_argument("--wait", action="store_true", help="wait for the workers to finish")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, overrides = parser.parse_args(argv[:split]), argv[split + 1 :]  # after --: the sweep's overrides
    if not any(o.startswith("hydra.sweeper.storage=") for o in overrides):
        parser.error("give hydra.sweeper.storage=... after --: workers share the study through it")
    procs = start_workers(args.n, overrides, args.logs.resolve())
    for i, proc in enumerate(procs):
        print(f"worker {i}: pid {proc.pid}, log {args.logs.resolve() / f'worker{i}' / 'worker.log'}")
    print(f"stop with: kill -TERM {' '.join(str(p.pid) for p in procs)}  (running trials end FAIL and are replaced)")
    if args.wait:
        codes = [proc.wait() for proc in procs]
        print(f"exit statuses: {codes}")
        sys.exit(1 if any(codes) else 0)  # a worker killed by a signal has a negative code


if __name__ == "__main__":
    main()
