"""``python -m sweeper.report``: write the report of a sweep and print the recommendation.

Example:
    python -m sweeper.report --max-size-kb 100 --out R      # the latest sweep of `sweeper`
    python -m sweeper.report --experiment demo --sweep multirun/2026-11-28/11-46-06 --min-score 0.9

Errors (unknown experiment or sweep, bad budget) print one line and exit with status 2;
a sweep without any finished run still gets a report listing its failures (status 1).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import re
import sys
from pathlib import Path
from typing import NoReturn

PROG = "python -m sweeper.report"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        print(f"{PROG}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # Budget names the flag and what is allowed


def parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    p = _Parser(
        prog=PROG,
        description="Rank the configurations of a sweep, draw the Pareto front and "
        "recommend one for a budget. Writes report.md, report.html, PNG plots "
        "and runs.csv.",
    )
    p.add_argument("--experiment", default="sweeper", help="MLflow experiment (tracking.experiment); default: sweeper")
    p.add_argument("--sweep", default=None, help="sweep id (the tag sweep_id: the multirun's dir); default: the latest")
    p.add_argument("--max-size-kb", type=_number, default=None, metavar="N", help="artifact size at most N KiB")
    p.add_argument(
        "--max-latency-ms", type=_number, default=None, metavar="X", help="latency per sample at batch 1 at most X ms"
    )
    p.add_argument(
        "--min-score",
        "--min-accuracy",
        dest="min_score",
        type=_number,
        default=None,
        metavar="A",
        help="mean validation score (the task's metric, e.g. accuracy) at least A (a fraction, 0..1)",
    )
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder; default: reports/<sweep id>")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here",
    )
    p.add_argument(
        "--latency-rounds",
        type=int,
        default=5,
        metavar="N",
        help="time every distinct network side by side in N interleaved rounds (default 5); 0: the trials' own timing",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parser().parse_args(argv)
    atexit.register(gc.freeze)  # as `python -m sweeper` does: no seconds of collections over every object at exit
    from sweeper.report.build import generate, load_sweep, plain
    from sweeper.report.recommend import Budget
    from sweeper.trial.context import quiet_mlflow

    quiet_mlflow()

    try:
        budget = Budget(args.max_size_kb, args.max_latency_ms, args.min_score)
        if args.out is None:  # resolve the sweep first to name the folder after it
            _, sweep = load_sweep(args.experiment, args.sweep, args.tracking_uri)
            args.sweep, args.out = sweep, Path("reports") / re.sub(r"[^\w.-]+", "_", sweep)
        if args.latency_rounds < 0:
            raise ValueError(
                f"--latency-rounds={args.latency_rounds}: must be an integer >= 0 (0: the trials' own timing)"
            )
        result = generate(
            budget,
            args.out,
            experiment=args.experiment,
            sweep_id=args.sweep,
            tracking_uri=args.tracking_uri,
            latency_rounds=args.latency_rounds,
        )
    except (ValueError, FileNotFoundError) as exc:  # bad budget, unknown sweep, missing store
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(plain(result.answer))
    print(f"report: {result.out_dir / 'report.html'} ({len(result.files)} files in {result.out_dir})")
    for other in result.others:  # the sweep id held runs under other fixed overrides: reported apart
        print(f"another sweep under this sweep id: {other.out_dir / 'report.html'}")
    if result.finished == 0:
        print(f"{PROG}: no finished run in this sweep; the report lists the failures", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
