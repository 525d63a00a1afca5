"""Reading results back: MLflow runs as pandas DataFrames, one row per trial.

Example:
    >>> from sweeper.tracking.results import load_runs                     # doctest: +SKIP
    >>> runs = load_runs("sweeper", sweep_id="latest")            # doctest: +SKIP
    >>> runs.groupby("optimizer")["test_score"].agg(["mean", "std"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from sweeper.metrics import FINAL_METRICS, GROUPS, PER_EPOCH_ONLY
from sweeper.tracking.runs import DEFAULT_EXPERIMENT, ROLE_TAG, reading_client, runs_frame

__all__ = ["FINAL_METRICS", "ROLE_TAG", "list_sweeps", "load_history", "load_runs", "load_table"]

_TAG_COLUMNS = [
    "family",
    "sweep_id",
    "job",
    "score_metric",
    "score_direction",
    "latency_kind",
    "failure_reason",
    "device",
    "optuna_study",
    "optuna_trial",
    "optuna_state",
    "pruned_epoch",
]
_SEARCHED = {"lr": "optimizer.lr", "batch_size": "strategy.batch_size", "epochs": "strategy.epochs"}


def _numeric(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def _search(experiment: str, tracking_uri: str | None, filter_string: str = "") -> pd.DataFrame:
    client = reading_client(tracking_uri)
    found_experiment = client.get_experiment_by_name(experiment)
    if found_experiment is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"experiment {experiment!r} not found; existing: {', '.join(names) or 'none'}")
    found = runs_frame(client, found_experiment.experiment_id, filter_string)
    role = f"tags.{ROLE_TAG}"
    if role in found:  # only trials count: a sweep's parent run is not one
        found = found[found[role].isna()].reset_index(drop=True)
    return found


def list_sweeps(experiment: str = DEFAULT_EXPERIMENT, *, tracking_uri: str | None = None) -> list[str]:
    """Sweep ids of an experiment, the most recent first."""
    runs = _search(experiment, tracking_uri)
    if runs.empty or "tags.sweep_id" not in runs:
        return []
    runs = runs[runs["tags.sweep_id"].fillna("") != ""]
    latest = runs.groupby("tags.sweep_id")["start_time"].max().sort_values(ascending=False)
    return [str(s) for s in latest.index]


def load_runs(
    experiment: str = DEFAULT_EXPERIMENT, *, sweep_id: str | None = None, tracking_uri: str | None = None
) -> pd.DataFrame:
    """All trials of an experiment (or of one sweep) as a DataFrame, one row per trial.

    Args:
        experiment: MLflow experiment name (``tracking.experiment`` of the runs).
        sweep_id: only the runs of this sweep; ``"latest"`` for the most recent sweep.
        tracking_uri: defaults as for the runs themselves (``$MLFLOW_TRACKING_URI``, else
            ``sqlite:///mlflow.db`` in the working directory).

    Returns:
        Columns: ``run_id``, ``run_name``, ``parent_run_id`` (the sweep's run), ``status``, ``start_time``, the config-group
        choices (``data``, ``model``, ``optimizer``, ``strategy``, ``compression``),
        ``seed``, ``lr``, ``batch_size``, ``epochs``, the tags ``family`` (the compression method's, as it
        declares it), ``sweep_id``, ``job``,
        ``latency_kind``, ``failure_reason`` (and ``optuna_study``, ``optuna_trial``,
        ``optuna_state`` for trials of an Optuna search), every final metric (``test_score``, ``test_<metric>``,
        ``size_bytes``, ``latency_ms``, ...; NaN where a run has none), every config
        value under its dotted key (``optimizer.lr``, ``compression.amount``, ...) and the
        other tags a trial set (e.g. ``quantization_flow``).

    Raises:
        ValueError: the experiment or the sweep does not exist (the message lists those that do).
    """
    if sweep_id == "latest":
        sweeps = list_sweeps(experiment, tracking_uri=tracking_uri)
        if not sweeps:
            raise ValueError(f"experiment {experiment!r} has no sweeps (runs of a multirun)")
        sweep_id = sweeps[0]
    filter_string = f"tags.sweep_id = '{sweep_id}'" if sweep_id else ""
    raw = _search(experiment, tracking_uri, filter_string)
    if raw.empty and sweep_id:
        known = list_sweeps(experiment, tracking_uri=tracking_uri)
        raise ValueError(f"sweep {sweep_id!r} not found in {experiment!r}; existing: {', '.join(known) or 'none'}")
    return _tidy(raw)


def _tidy(raw: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(index=raw.index)
    frame["run_id"] = raw.get("run_id")
    frame["run_name"] = raw.get("tags.mlflow.runName")
    frame["parent_run_id"] = raw.get("tags.mlflow.parentRunId")  # the sweep's parent run (sweeper.sweep.parent_run)
    frame["status"] = raw.get("status")
    frame["start_time"] = raw.get("start_time")
    for column in [*GROUPS, *_TAG_COLUMNS]:
        frame[column] = raw.get(f"tags.{column}")
    frame["seed"] = raw.get("params.seed", pd.Series(index=raw.index, dtype=object)).map(_numeric)
    for column, key in _SEARCHED.items():
        frame[column] = raw.get(f"params.{key}", pd.Series(index=raw.index, dtype=object)).map(_numeric)
    extra = {c.removeprefix("metrics.") for c in raw.columns if c.startswith("metrics.")}
    metric_names = list(FINAL_METRICS) + sorted(extra - set(FINAL_METRICS) - PER_EPOCH_ONLY)
    for name in metric_names:
        frame[name] = (
            pd.to_numeric(raw.get(f"metrics.{name}"), errors="coerce") if f"metrics.{name}" in raw else float("nan")
        )
    params = {c.removeprefix("params."): raw[c].map(_numeric) for c in raw.columns if c.startswith("params.")}
    params = {k: v for k, v in params.items() if k not in frame.columns}
    # the other tags a trial sets (a compression method's, e.g. quantization_flow), MLflow's own left out
    tags = {
        c.removeprefix("tags."): raw[c]
        for c in raw.columns
        if c.startswith("tags.") and not c.startswith("tags.mlflow.")
    }
    tags = {k: v for k, v in tags.items() if k not in frame.columns and k not in params}
    frame = pd.concat([frame, pd.DataFrame(params, index=raw.index), pd.DataFrame(tags, index=raw.index)], axis=1)
    return _with_scores(frame).sort_values("start_time").reset_index(drop=True)


def _with_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs logged before tasks defined their metric scored accuracy: their ``*_score`` is their accuracy."""
    for prefix in ("test", "val", "best_val"):
        legacy = f"{prefix}_accuracy"
        if legacy in frame:
            frame[f"{prefix}_score"] = frame[f"{prefix}_score"].fillna(frame[legacy])
    frame["score_metric"] = frame["score_metric"].fillna("accuracy")
    return frame


def load_history(
    run_ids: Iterable[str],
    metrics: Iterable[str] = ("train_loss", "val_score", "lr"),
    *,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """Per-epoch metrics of runs, long format: ``run_id``, ``metric``, ``epoch``, ``value``.

    The final summary point (logged one step after the last epoch) is left out. ``val_score``
    of a run logged before tasks defined their metric is its ``val_accuracy``.
    """
    client = reading_client(tracking_uri)
    rows = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        epochs_run = run.data.metrics.get("epochs_run")
        for metric in metrics:
            points = client.get_metric_history(run_id, metric)
            if not points and metric == "val_score":
                points = client.get_metric_history(run_id, "val_accuracy")
            for point in points:
                if epochs_run is None or point.step < epochs_run:
                    rows.append({"run_id": run_id, "metric": metric, "epoch": point.step, "value": point.value})
    return pd.DataFrame(rows, columns=["run_id", "metric", "epoch", "value"])


def load_table(run_id: str, name: str, *, tracking_uri: str | None = None) -> pd.DataFrame | None:
    """A table a compression method measured on the way (``<name>.csv`` among the run's artifacts, e.g.
    ``compression=mixed``'s ``sensitivity``), or None when the run has none."""
    import tempfile

    from mlflow.exceptions import MlflowException

    client = reading_client(tracking_uri)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = client.download_artifacts(run_id, f"{name}.csv", scratch)
        except (MlflowException, OSError):
            return None
        return pd.read_csv(path)
