"""MLflow tracking of one trial: one run, few calls (each SQLite call costs milliseconds).

The run is created with its tags, the flattened config goes in one batch at the start
(so a failed run still says what it was), and every per-epoch and final metric goes in
one batch at the end. A failure marks the run FAILED with the reason as a tag.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag
    from torch import Tensor, nn

    from sweeper.data import Task

__all__ = [
    "DEFAULT_EXPERIMENT",
    "ROLE_TAG",
    "SWEEP_ROLE",
    "TrialRun",
    "close_stale_run",
    "experiment_id",
    "finished_trial",
    "reading_client",
    "resolve_tracking_uri",
    "runs_frame",
    "source_tags",
    "trial_key",
    "writing_client",
]

# Config keys that do not change what a trial computes (left out of its identity).
_NOT_IDENTITY = ("tracking", "fail_fast", "resume", "report", "options")  # options: merged into the groups

DEFAULT_EXPERIMENT = "sweeper"
ROLE_TAG = "sweeper_role"  # set on runs that are not trials: a sweep's parent run has sweeper_role=sweep
SWEEP_ROLE = "sweep"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else MLflow's own default: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``."""
    if uri:
        return uri
    import mlflow

    return str(mlflow.get_tracking_uri())


_checked_uris: set[str] = set()  # tracking URIs found reachable by this process


def writing_client(uri: str) -> MlflowClient:
    """The client every write goes through: the store checked reachable once per process, a new SQLite one created atomically."""
    from mlflow import MlflowClient

    from sweeper.tracking.reachability import check_tracking_uri

    if uri not in _checked_uris:
        check_tracking_uri(uri)  # a server that is down: one line in seconds, not minutes of retries
        _checked_uris.add(uri)
    _create_sqlite_store_atomically(uri)
    return MlflowClient(tracking_uri=uri)


def sqlite_store_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI; ``None`` for any other store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _create_sqlite_store_atomically(uri: str) -> None:
    """Create a new SQLite store's schema in a scratch file, then link it into place.

    MLflow builds the schema in about twenty migrations; a process killed in the middle
    would leave a store that no later run can open. The link fails if another process
    created the store meanwhile, and then that one is used.
    """
    path = sqlite_store_path(uri)
    if path is None or path.exists():
        return
    from mlflow import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        MlflowClient(tracking_uri=f"sqlite:///{scratch}").search_experiments(max_results=1)
        os.link(scratch, path)
    except FileExistsError:
        pass
    finally:
        scratch.unlink(missing_ok=True)


def experiment_id(client: MlflowClient, name: str) -> str:
    """Id of experiment ``name``, created on first use with the runs view of :mod:`sweeper.tracking.ui`."""
    from mlflow.exceptions import MlflowException

    from sweeper.tracking.ui import experiment_tags

    found = client.get_experiment_by_name(name)
    if found is not None:
        for key, value in experiment_tags().items():  # an older or foreign experiment: its runs' view too
            if key not in found.tags:
                client.set_experiment_tag(found.experiment_id, key, value)
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, tags=experiment_tags()))
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

    def __init__(self, uri: str, experiment: str, *, run_name: str, tags: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.client = writing_client(uri)
        self.experiment_id = experiment_id(self.client, experiment)
        self.run_id: str = self.client.create_run(
            self.experiment_id, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()}
        ).info.run_id
        self._epochs: list[Mapping[str, float]] = []  # per-epoch metrics, written in one batch

    @classmethod
    def attach(cls, client: MlflowClient, run_id: str) -> TrialRun:
        """The wrapper around an existing run (its writes, without creating one)."""
        run = cls.__new__(cls)
        run.uri, run.client, run.run_id, run._epochs = str(client.tracking_uri), client, run_id, []
        run.experiment_id = str(client.get_run(run_id).info.experiment_id)
        return run

    def __enter__(self) -> TrialRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.client.set_terminated(self.run_id, "FINISHED")
            return
        from sweeper.errors import ResultsNotLogged

        if isinstance(exc, ResultsNotLogged):  # the store did not take the results: no more minutes of retries
            return  # the run stays RUNNING until `python -m sweeper.tracking.upload` (or a resume) ends it
        pruned_epoch = getattr(exc, "pruned_epoch", None)  # stopped by a search pruner: not a failure
        if pruned_epoch is not None:
            try:
                self.log_results({})  # the curves up to the pruned epoch
                self.set_tags({"optuna_state": "PRUNED", "pruned_epoch": pruned_epoch})
            finally:
                self.client.set_terminated(self.run_id, "KILLED")
            return
        status = "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED"
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            self.log_results({})  # keep the curves of the epochs that did finish
            self.set_tags({"failure_reason": reason[:5000]})
            self.client.log_text(self.run_id, "".join(traceback.format_exception(exc_type, exc, tb)), "traceback.txt")
        finally:
            self.client.set_terminated(self.run_id, status)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=_run_tags(tags))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log a flat mapping of parameters in one batch (values are stringified, max 6000 chars)."""
        self.client.log_batch(self.run_id, params=_params(params))

    @property
    def recorded_epochs(self) -> list[Mapping[str, float]]:
        """The per-epoch metrics not yet written (what `log_results` writes next)."""
        return list(self._epochs)

    def record_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Keep one epoch's metrics for the batch written by `log_results` (an epoch hook)."""
        self._epochs.append(dict(metrics))

    def log_results(
        self,
        final: Mapping[str, float],
        *,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """Log the recorded per-epoch metrics (step = epoch) and the final metrics in one batch.

        A final metric is one value at step 0 (the UI shows it as a value, not a one-point curve),
        except a name also logged per epoch (``val_accuracy``): that one goes to the step after the
        last epoch, so that its latest value is the artifact's. ``tags`` and ``params`` go in the
        same call (MLflow splits it only past its batch limits).
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows, self._epochs = self._epochs, []
        metrics = [
            Metric(key, float(value), now, epoch) for epoch, row in enumerate(rows) for key, value in row.items()
        ]
        curves = {key for row in rows for key in row}
        metrics += [Metric(key, float(value), now, len(rows) if key in curves else 0) for key, value in final.items()]
        self.client.log_batch(self.run_id, metrics=metrics, params=_params(params or {}), tags=_run_tags(tags or {}))

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def log_datasets(self, task: Task, source: Mapping[str, str]) -> None:
        """The task's three splits as the run's dataset inputs (name, digest, shapes, sizes; context tag each).

        ``source`` (e.g. the data config's ``_target_`` and knobs) says where the data comes from.
        """
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.numpy_dataset import from_numpy
        from mlflow.entities import DatasetInput, InputTag

        inputs = []
        for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
            x, y = getattr(task, f"x_{split}"), getattr(task, f"y_{split}")
            dataset = from_numpy(
                x.cpu().numpy(), targets=y.cpu().numpy(), name=task.name, source=CodeDatasetSource(dict(source))
            )
            # _to_mlflow_entity: what mlflow.log_input does with a dataset; the client API takes the entity
            inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]))
        from mlflow.exceptions import MlflowException

        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException:  # another trial stored the same dataset meanwhile (a unique key): link it now
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def log_model(self, artifact: Path, example: Tensor, module: nn.Module) -> str:
        """``artifact`` as the run's MLflow model (see :mod:`sweeper.tracking.serving`); return its id (for the tag ``model_id``)."""
        from sweeper.tracking.serving import log_trial_model

        return log_trial_model(self.client, self.experiment_id, self.run_id, artifact, example, module)


def _params(params: Mapping[str, Any]) -> list[Param]:
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in params.items()]  # MLflow's longest param value


def _run_tags(tags: Mapping[str, Any]) -> list[RunTag]:
    from mlflow.entities import RunTag

    return [RunTag(k, str(v)) for k, v in tags.items()]


def trial_key(config: Mapping[str, Any]) -> str:
    """A short hash of everything in a resolved config that determines the trial's result."""
    identity = {k: v for k, v in config.items() if k not in _NOT_IDENTITY}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def finished_trial(uri: str, experiment: str, sweep_id: str, key: str) -> tuple[str, dict[str, float]] | None:
    """(run id, final metrics) of a FINISHED run of this trial in this sweep, if there is one.

    Runs of the same trial left RUNNING (their process was killed without a chance to
    close them) are closed as KILLED on the way.
    """
    client = writing_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id], filter_string=f"tags.sweep_id = '{sweep_id}' and tags.trial_key = '{key}'"
    )
    for stale in (r for r in runs if r.info.status == "RUNNING"):
        close_stale_run(uri, stale.info.run_id, "the process ended without closing the run")
    done = [r for r in runs if r.info.status == "FINISHED"]
    if not done:
        return None
    return done[0].info.run_id, dict(done[0].data.metrics)


def close_stale_run(uri: str, run_id: str, reason: str) -> None:
    """End a run that a killed process left RUNNING: status KILLED, tag ``failure_reason``."""
    client = writing_client(uri)
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, "failure_reason", reason)
        client.set_terminated(run_id, "KILLED")


@functools.cache
def source_tags() -> dict[str, str]:
    """MLflow's source tags for runs started here: the command, the user, the working directory's git commit.

    The commit is that of the repository the command runs in (where a user's configs and model
    plug-ins live); ``git_dirty=true`` when it has uncommitted changes. No repository, no commit tags.
    """
    import getpass
    import subprocess

    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": "python -m sweeper", "mlflow.user": getpass.getuser()}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git_dirty"] = str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower()
        remote = git("config", "--get", "remote.origin.url")
        if remote:
            tags["mlflow.source.git.repoURL"] = remote
    return tags


def reading_client(uri: str | None = None) -> MlflowClient:
    """A client for reading the store at ``uri`` (resolved as for the runs); a SQLite store must exist.

    Raises:
        FileNotFoundError: no SQLite store there (reading never creates an empty one).
    """
    from mlflow import MlflowClient

    resolved = resolve_tracking_uri(uri)
    store = sqlite_store_path(resolved)
    if store is not None and not store.is_file():
        raise FileNotFoundError(f"no MLflow store at {store} (tracking_uri={resolved}); run a sweep there first")
    return MlflowClient(tracking_uri=resolved)


def runs_frame(client: MlflowClient, experiment_id: str, filter_string: str = "") -> pd.DataFrame:
    """The runs of an experiment as one row each: ``run_id``, ``status``, ``start_time``, ``metrics.*``,
    ``params.*``, ``tags.*`` (the columns of ``mlflow.search_runs``, read through the client, page by page)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=5000, page_token=token)
        for run in page:
            row: dict[str, Any] = {
                "run_id": run.info.run_id,
                "status": run.info.status,
                "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
            }
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            rows.append(row)
        token = page.token
        if not token:
            return pd.DataFrame(rows)
