"""A sweep's parent run in MLflow: its trials are nested under it (tag ``mlflow.parentRunId``).

The run (named by the time it started and its command line's overrides, then its sweep id:
:func:`sweeper.tracking.names.sweep_run_name`; tag ``sweeper_role=sweep``) holds the sweep's command line, its
config (params and ``config.yaml``) and later the report. The callbacks of :mod:`sweeper.sweep`
open and close it; who publishes its id to the trials is their business.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sweeper.configs import flatten
from sweeper.tracking.names import sweep_run_name
from sweeper.tracking.runs import ROLE_TAG, SWEEP_ROLE, TrialRun, experiment_id, source_tags, writing_client

__all__ = ["close_sweep_run", "open_sweep_run"]

_opened: dict[str, str] = {}  # parent runs this process opened -> their tracking URI


def open_sweep_run(
    uri: str, experiment: str, *, sweep_dir: str, sweep_id: str | None, command: str, config: Mapping[str, Any]
) -> str:
    """Open the parent run of a sweep (found again when a sweep dir is re-run); return its id."""
    client = writing_client(uri)
    exp_id = experiment_id(client, experiment)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.{ROLE_TAG} = '{SWEEP_ROLE}' and tags.sweep_dir = '{sweep_dir}'", max_results=1
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        tags = {ROLE_TAG: SWEEP_ROLE, "sweep_dir": sweep_dir, "command": command[:5000], **source_tags()}
        if sweep_id:
            tags["sweep_id"] = sweep_id
        name = sweep_run_name(command, sweep_id or sweep_dir, datetime.now())
        run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
        run = TrialRun.attach(client, run_id)
        run.log_params(flatten(config))
        client.log_dict(run_id, dict(config), "config.yaml")
    _opened[run_id] = uri
    return run_id


def close_sweep_run(run_id: str | None, status: str = "FINISHED") -> None:
    """End the parent run ``run_id`` if this process opened it (``KILLED``/``FAILED`` when the sweep stopped early)."""
    uri = _opened.pop(run_id, None) if run_id else None
    if run_id and uri:
        writing_client(uri).set_terminated(run_id, status)
