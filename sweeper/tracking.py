"""MLflow tracking of one trial: one run, few calls (each SQLite call costs milliseconds).

The run is created with its tags, the flattened config goes in one batch at the start
(so a failed run still says what it was), and every per-epoch and final metric goes in
one batch at the end. A failure marks the run FAILED with the reason as a tag.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["DEFAULT_EXPERIMENT", "TrialRun", "flatten", "resolve_tracking_uri"]

DEFAULT_EXPERIMENT = "sweeper"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db`` (MLflow's default)."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are kept as their string form."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _client(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client: MlflowClient, name: str) -> str:
    """Id of experiment ``name``, created on first use."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:  # created meanwhile by a concurrent trial
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


class TrialRun:
    """Context manager around one MLflow run; ends FINISHED, FAILED or KILLED.

    KILLED means interrupted, or pruned by a search (tags ``optuna_state=PRUNED`` and
    ``pruned_epoch``, the 1-based epoch after which it stopped).

    Example:
        >>> with TrialRun(uri, "demo", run_name="adam", tags={"optimizer": "adam"}) as run:  # doctest: +SKIP
        ...     run.log_params({"optimizer.lr": 0.001})
        ...     run.log_results({"test_accuracy": 0.97}, history=[{"train_loss": 0.5}])
    """

    def __init__(
        self, uri: str, experiment: str, *, run_name: str, tags: Mapping[str, str] | None = None
    ) -> None:
        self.uri = uri
        self.client = _client(uri)
        exp_id = experiment_id(self.client, experiment)
        self.run_id: str = self.client.create_run(
            exp_id, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()}
        ).info.run_id

    def __enter__(self) -> TrialRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.client.set_terminated(self.run_id, "FINISHED")
            return
        pruned_epoch = getattr(exc, "pruned_epoch", None)  # stopped by a search pruner: not a failure
        if pruned_epoch is not None:
            try:
                self.set_tags({"optuna_state": "PRUNED", "pruned_epoch": pruned_epoch})
            finally:
                self.client.set_terminated(self.run_id, "KILLED")
            return
        status = "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED"
        reason = f"{type(exc).__name__}: {exc}"
        try:
            self.set_tags({"failure_reason": reason[:5000]})
            self.client.log_text(
                self.run_id, "".join(traceback.format_exception(exc_type, exc, tb)), "traceback.txt"
            )
        finally:
            self.client.set_terminated(self.run_id, status)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log a flat mapping of parameters in one batch (values are stringified, max 6000 chars)."""
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def log_results(self, final: Mapping[str, float], history: Iterable[Mapping[str, float]] = ()) -> None:
        """Log per-epoch metrics (step = epoch) and the final metrics in one batch.

        The final metrics are logged at the step after the last epoch, so that a name used
        for both (``val_accuracy``: per epoch, and the best as final) reads as the final one.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = list(history)
        metrics = [
            Metric(key, float(value), now, epoch) for epoch, row in enumerate(rows) for key, value in row.items()
        ]
        metrics += [Metric(key, float(value), now, len(rows)) for key, value in final.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))
