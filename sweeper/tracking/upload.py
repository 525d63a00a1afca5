"""A finished trial's results that the tracking store did not take: kept on disk, logged later.

A trial writes its results to its MLflow run last (artifact, curves, final metrics, tags). If that
write fails (a tracking server away longer than MLflow's HTTP retries, about two minutes), the
trial's output directory keeps them: ``model.pt``, ``config.yaml`` and :data:`UNLOGGED_FILE`, what
the run was to receive. The trial fails with one line naming the directory, and::

    python -m sweeper.tracking.upload multirun/2026-12-03/10-00-00/3 [more dirs] [--uri URI]

logs them into the trial's run once the store is back and ends it FINISHED (a resumed grid then
skips the trial). The run's MLflow model and dataset inputs are not rebuilt (tag ``model_not_logged``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sweeper.tracking.runs import TrialRun, writing_client

__all__ = ["UNLOGGED_FILE", "keep_unlogged", "main", "upload"]

UNLOGGED_FILE = "unlogged.json"


def keep_unlogged(
    directory: Path,
    tracker: TrialRun,
    *,
    files: Sequence[Path],
    final: Mapping[str, float],
    tags: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Path:
    """Write what ``tracker``'s run was to receive (``files`` must lie in ``directory``); return the record."""
    record = {
        "uri": tracker.uri,
        "run_id": tracker.run_id,
        "files": [str(Path(f).relative_to(directory)) for f in files],
        "epochs": [dict(row) for row in tracker.recorded_epochs],
        "final": {k: float(v) for k, v in final.items()},
        "tags": {k: str(v) for k, v in tags.items()},
        "params": {k: str(v) for k, v in params.items()},
    }
    path = directory / UNLOGGED_FILE
    path.write_text(json.dumps(record, indent=1))
    return path


def upload(directory: str | Path, uri: str | None = None) -> str:
    """Log a trial directory's kept results into its run (at ``uri``, else where it was tracked); end it
    FINISHED; return the run id. The record is renamed ``logged.json`` once written.

    Raises:
        FileNotFoundError: ``directory`` holds no record (nothing to log, or logged already).
        ValueError: the store does not hold the trial's run.
    """
    from mlflow.exceptions import MlflowException

    directory = Path(directory)
    path = directory / UNLOGGED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {UNLOGGED_FILE} (nothing to log, or logged already)")
    record = json.loads(path.read_text())
    uri = uri or record["uri"]
    client = writing_client(uri)
    try:
        run = TrialRun.attach(client, record["run_id"])
    except MlflowException as exc:
        raise ValueError(
            f"{directory}: run {record['run_id']} is not in {uri}; pass the store it was created in"
        ) from exc
    run.log_artifacts([directory / name for name in record["files"]])
    for epoch, row in enumerate(record["epochs"]):
        run.record_epoch(epoch, row)
    tags = {**record["tags"], "model_not_logged": "logged later from disk: the artifact file only"}
    run.log_results(record["final"], tags=tags, params=record["params"])
    client.set_terminated(run.run_id, "FINISHED")
    path.rename(directory / "logged.json")
    return run.run_id


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sweeper.tracking.upload DIR [DIR ...] [--uri URI]``; exit 1 if any directory failed."""
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.tracking.upload",
        description="Log trials whose results the tracking store did not take (kept in their output directories).",
    )
    parser.add_argument("directories", nargs="+", type=Path, help="trial output directories holding unlogged.json")
    parser.add_argument("--uri", default=None, help="the tracking store (default: the one each trial was tracked in)")
    args = parser.parse_args(argv)
    failed = 0
    for directory in args.directories:
        try:
            run_id = upload(directory, args.uri)
        except (OSError, ValueError) as exc:
            print(f"sweeper: error: {' '.join(str(exc).split())}", file=sys.stderr)
            failed += 1
            continue
        print(f"logged {directory} into run {run_id}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
