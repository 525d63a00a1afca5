"""What the MLflow UI opens on: the experiment's runs, with the task's score, size and latency as columns.

MLflow 3's UI (checked on 3.17) does not read the mode it opens an experiment in from the experiment:
it takes GenAI or model training from the address (``workflowType=machine_learning``), else from the
browser's storage, and a fresh browser profile gets GenAI, whatever the tag ``mlflow.experimentKind``
says. Its runs table shows a fresh profile no metric column. What it does read from the experiment is a
*saved view*: an experiment tag ``mlflow.sharedViewState.<id>`` holding the table's columns and sort,
listed in the runs page's **Views** menu and opened by the address's ``viewStateShareKey=<id>``.

So every experiment sweeper writes to carries the view ``sweeper: score, size, latency`` (tag
``mlflow.sharedViewState.sweeper``: the run's name, start and duration, ``test_score``, ``val_score``,
``size_bytes``, ``latency_ms`` and the logged model; the datasets and the rest under **Columns**), and
:func:`runs_page` is the address that opens it in model-training mode, which a multirun prints at its end.

Example:
    >>> runs_page("sqlite:///mlflow.db", "1")
    'http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=sweeper'
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

__all__ = [
    "COLUMNS",
    "DEFAULT_UI",
    "EXPERIMENT_KIND",
    "VIEW_ID",
    "VIEW_TAG",
    "experiment_tags",
    "runs_page",
    "saved_view",
]

DEFAULT_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # what MLflow's UI would read, were it asked
VIEW_ID = "sweeper"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"
VIEW_NAME = "sweeper: score, size, latency"
COLUMNS = ("test_score", "val_score", "size_bytes", "latency_ms")  # final metrics every trial logs


def saved_view(created_ms: int | None = None) -> str:
    """The saved view's tag value: MLflow's envelope (name, times, state) around the runs table's state."""
    state = {
        "searchFilter": "",
        "orderByKey": "attributes.start_time",  # the newest sweep first
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": [*(f"metrics.`{metric}`" for metric in COLUMNS), "attributes.`Models`"],
    }
    created = int(time.time() * 1000) if created_ms is None else created_ms
    return json.dumps({"name": VIEW_NAME, "createdAt": created, "updatedAt": created, "state": json.dumps(state)})


def experiment_tags() -> dict[str, str]:
    """The tags an experiment gets when sweeper creates it (and an existing one when it lacks them)."""
    return {**EXPERIMENT_KIND, VIEW_TAG: saved_view()}


def runs_page(uri: str, experiment_id: str) -> str:
    """The address of the experiment's runs in model-training mode, in the saved view.

    A tracking server (``http(s)://``) serves its own UI; any other store is browsed with
    ``mlflow ui --backend-store-uri <uri>`` at :data:`DEFAULT_UI`.
    """
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else DEFAULT_UI
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_ID})
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"
