"""The seam between a sweep and one trial: which Optuna trial the running job evaluates.

The Optuna sweeper launches each job with four environment variables (through Hydra's
``hydra.job.env_set``, so every launcher passes them on): the study name, its storage, the
trial number and the metrics the search reads; the job's context
(:func:`sweeper.trial.context.job_context`) reads them. In the sweeper's own process (the basic
launcher) the live trial is registered here; a job in another process reopens it from the
storage (:func:`open_trial`). The trial uses the context to tag the MLflow run, to report
``val_score`` every epoch (raising ``optuna.TrialPruned`` when the pruner says so) and to record
the MLflow run id and any failure reason on the trial. Nothing here imports Optuna unless a trial
is running.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = [
    "ENV_METRICS",
    "ENV_STORAGE",
    "ENV_STUDY",
    "ENV_TRIAL",
    "TrialContext",
    "is_pruned",
    "open_trial",
    "register",
    "unregister",
]

ENV_STUDY = "SWEEPER_OPTUNA_STUDY"
ENV_STORAGE = "SWEEPER_OPTUNA_STORAGE"
ENV_TRIAL = "SWEEPER_OPTUNA_TRIAL"
ENV_METRICS = (
    "SWEEPER_OPTUNA_METRICS"  # objectives (metric:direction) and constraints' metrics, checked against the task
)
REPORTED_METRIC = "val_score"

_live: dict[tuple[str, int], optuna.Trial] = {}
EpochHook = Callable[[int, dict[str, float]], None]


def register(study_name: str, trial: optuna.Trial) -> None:
    """Make ``trial`` the one that jobs of this process find for its number."""
    _live[(study_name, trial.number)] = trial


def unregister(study_name: str, number: int) -> None:
    _live.pop((study_name, number), None)


def is_pruned(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna's ``TrialPruned`` (without importing Optuna when nothing did)."""
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(exc, optuna.TrialPruned)


@dataclass
class TrialContext:
    """The Optuna trial a job evaluates."""

    study_name: str
    trial: optuna.Trial
    metrics: tuple[str, ...] = ()  # what the search reads from the trial (objectives, constraints)

    @property
    def number(self) -> int:
        return self.trial.number

    def tags(self) -> dict[str, str]:
        """MLflow tags linking the run to the trial."""
        return {"optuna_study": self.study_name, "optuna_trial": str(self.number)}

    def attach_run(self, run_id: str) -> None:
        """Record the MLflow run id on the trial (user attribute ``mlflow_run_id``)."""
        self.trial.set_user_attr("mlflow_run_id", run_id)

    def record_failure(self, reason: str) -> None:
        """Record why the trial failed (user attribute ``failure_reason``)."""
        self.trial.set_user_attr("failure_reason", reason[:2000])

    def report(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Report ``val_score`` at step ``epoch + 1``; raise ``TrialPruned`` when the pruner says so.

        Single-objective studies only; a no-op in multi-objective ones.

        The exception carries ``pruned_epoch`` (1-based), which the MLflow run records.
        """
        import optuna

        if len(self.trial.study.directions) > 1:
            return  # Optuna keeps no intermediate values (and prunes nothing) in multi-objective studies
        step = epoch + 1
        self.trial.report(float(metrics[REPORTED_METRIC]), step)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_epoch", step)
            exc = optuna.TrialPruned(f"pruned at epoch {step} ({REPORTED_METRIC}={metrics[REPORTED_METRIC]:.4f})")
            vars(exc)["pruned_epoch"] = step  # read by TrialRun: the epoch after which it stopped
            raise exc

    def epoch_hook(self, inner: EpochHook) -> EpochHook:
        """``inner`` (e.g. console progress), then :meth:`report`."""

        def hook(epoch: int, metrics: dict[str, float]) -> None:
            inner(epoch, metrics)
            self.report(epoch, metrics)

        return hook


def _reopen(study_name: str, storage: str, number: int, pruner: str, options: Mapping[str, Any]) -> optuna.Trial:
    import optuna

    from sweeper.search.study import build_pruner, open_storage

    study = optuna.load_study(
        study_name=study_name, storage=open_storage(storage), pruner=build_pruner(pruner, options)
    )
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise RuntimeError(f"{ENV_TRIAL}={number}: no such trial in study {study_name!r}")
    return optuna.trial.Trial(study, found[0]._trial_id)  # Optuna's own way to resume a trial by id


def open_trial(
    study_name: str,
    storage: str,
    number: int,
    *,
    metrics: tuple[str, ...] = (),
    pruner: str = "none",
    pruner_options: Mapping[str, Any] | None = None,
) -> TrialContext:
    """The trial ``number`` of the study: the live one of this process, else reopened from ``storage``."""
    trial = _live.get((study_name, number))
    if trial is None:
        trial = _reopen(study_name, storage, number, pruner, pruner_options or {})
    return TrialContext(study_name, trial, metrics)
