"""The job context: what one job knows of the sweep it belongs to, built once at the entry point.

A trial is a plain function of its config and this context (:func:`sweeper.trial.run.run`). Everything a
job learns from outside its config is gathered here, once, by :func:`job_context`: its output directory,
its place in the multirun, the sweep's id and parent run, the Optuna trial it evaluates, whether the
report's end-of-sweep latency round follows it, and the equal-budget epochs of a grid.

This module is the seam between a sweep and its jobs, and the only one below the entry point that
reads Hydra's runtime config or the process environment. A sweep hands values to its jobs through
environment variables because a launcher may run the jobs in other processes (joblib, submitit), which
inherit the environment: the callbacks at the start of a multirun publish them with the ``publish_*``
functions below, the Optuna sweeper through ``hydra.job.env_set`` (names in
:mod:`sweeper.search.trial_context`).

Example:
    >>> ctx = JobContext.standalone()
    >>> ctx.multirun, ctx.sweep_id, ctx.search is None
    (False, '', True)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sweeper.search.trial_context import ENV_METRICS, ENV_STORAGE, ENV_STUDY, ENV_TRIAL
from sweeper.trial.layout import SweepLayout, from_command_line

__all__ = [
    "JobContext",
    "SearchRef",
    "decide_sweep_id",
    "job_context",
    "last_job",
    "parent_run",
    "publish_equal_budget",
    "publish_grid",
    "publish_parent_run",
    "publish_sweep_start",
    "quiet_mlflow",
    "retract_parent_run",
    "stdout_is_interactive",
]

GRID_ENV = "SWEEPER_GRID"  # the grid's layout (JSON), from the grid check
EQUAL_BUDGET_ENV = "SWEEPER_EQUAL_BUDGET_EPOCHS"  # compare.extra_epochs=auto, from the grid check
PARENT_RUN_ENV = "SWEEPER_PARENT_RUN_ID"  # the sweep's MLflow parent run
SWEEP_STARTED_ENV = "SWEEPER_SWEEP_STARTED"  # the multirun's start (time.time()), for the time-left estimate
_NO_LAYOUT = SweepLayout(None, frozenset(), ())


@dataclass(frozen=True)
class SearchRef:
    """The Optuna trial a job evaluates, as the sweeper named it (opened by :mod:`sweeper.search.trial_context`)."""

    study_name: str
    storage: str
    number: int
    metrics: tuple[str, ...] = ()  # what the search reads from the trial: objectives and constraints
    directions: Mapping[str, str] = field(default_factory=dict)  # objective -> maximize | minimize
    pruner: str = "none"
    pruner_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobContext:
    """What a job knows of its sweep; :meth:`standalone` for a trial run outside Hydra (a test, a notebook)."""

    output_dir: Path
    choices: Mapping[str, str] = field(default_factory=dict)  # the option chosen in each config group
    overrides: tuple[str, ...] = ()  # the job's own overrides (the command line's, or the sweeper's)
    multirun: bool = False
    index: int | None = None  # 1-based position of the job in the multirun
    layout: SweepLayout = _NO_LAYOUT  # the multirun's size, swept keys and fixed overrides
    sweep_id: str = ""  # groups the runs of one sweep; "" for a single run
    sweep_dir: str = ""  # the multirun's directory (a re-run with hydra.sweep.dir=<it> resumes it)
    parent_run_id: str | None = None  # the sweep's MLflow parent run, if one was opened
    search: SearchRef | None = None
    latency_round_follows: bool = False  # the report times every network side by side after the sweep
    equal_budget_epochs: int | None = None  # compare.extra_epochs=auto: the grid's longest fine-tuning
    sweep_started: float | None = None
    live_progress: bool = False  # a redrawn progress line (a terminal, not CI)

    @classmethod
    def standalone(cls, output_dir: Path | None = None, **values: Any) -> JobContext:
        """A single run outside Hydra: its own scratch output directory unless one is given."""
        return cls(output_dir or Path(tempfile.mkdtemp(prefix="sweeper-")), **values)

    @property
    def total(self) -> int | None:
        """Number of jobs in the multirun, where it can be told."""
        return self.layout.size if self.multirun else None

    @property
    def searched_metrics(self) -> tuple[str, ...]:
        """What the running search reads from this job's trial; empty outside a search."""
        return self.search.metrics if self.search is not None else ()

    def run_label(self, fallback: str) -> str:
        """A run's name from what varies: the swept overrides of a multirun, else the job's overrides."""
        return self.layout.label(self.overrides) or fallback

    def fixed_overrides(self) -> str:
        """The fixed overrides that define the sweep's configuration space (a tag of every run of a sweep)."""
        return self.layout.fixed_overrides() if self.sweep_id else ""


def decide_sweep_id(*, explicit: object, study_name: object, sweep_dir: object) -> str:
    """The id every run of a sweep carries: ``tracking.sweep_id``, else the Optuna study (a study groups its
    trials across resumed runs), else the multirun's sweep dir; ``""`` for a single run.

    Example:
        >>> decide_sweep_id(explicit=None, study_name=None, sweep_dir="multirun/2026-12-03/10-00-00")
        'multirun/2026-12-03/10-00-00'
    """
    for value in (explicit, study_name, sweep_dir):
        if value:
            return str(value)
    return ""


def job_context(cfg: DictConfig) -> JobContext:
    """The context of the running Hydra job (a standalone one outside Hydra); ``cfg``: the job's config."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return JobContext.standalone(live_progress=stdout_is_interactive())
    hydra_cfg = HydraConfig.get()
    multirun = str(hydra_cfg.mode) == "RunMode.MULTIRUN"
    search = _search_ref(hydra_cfg)
    tracking = cfg.get("tracking") or {}
    sweep_id = decide_sweep_id(
        explicit=tracking.get("sweep_id"),
        study_name=search.study_name if search else None,
        sweep_dir=hydra_cfg.sweep.dir if multirun else None,
    )
    started = os.environ.get(SWEEP_STARTED_ENV)
    global _last
    _last = JobContext(
        output_dir=Path(hydra_cfg.runtime.output_dir),
        choices={str(k): str(v) for k, v in hydra_cfg.runtime.choices.items() if v is not None},
        overrides=tuple(str(o) for o in hydra_cfg.overrides.task),
        multirun=multirun,
        index=int(hydra_cfg.job.num) + 1 if multirun else None,
        layout=_layout(multirun),
        sweep_id=sweep_id,
        sweep_dir=str(hydra_cfg.sweep.dir) if multirun else "",
        parent_run_id=parent_run() if sweep_id else None,
        search=search,
        latency_round_follows=multirun and bool(tracking.get("enabled", True)) and _report_times(hydra_cfg),
        equal_budget_epochs=int(os.environ[EQUAL_BUDGET_ENV]) if os.environ.get(EQUAL_BUDGET_ENV) else None,
        sweep_started=float(started) if started else None,
        live_progress=stdout_is_interactive(),
    )
    return _last


_last: JobContext | None = None  # the context of this process's latest job


def last_job() -> JobContext | None:
    """The context :func:`job_context` built last in this process (what an interrupted sweep was doing)."""
    return _last


def _search_ref(hydra_cfg: Any) -> SearchRef | None:
    """The Optuna trial named by the variables the Optuna sweeper set for this job, if any."""
    study_name, number = os.environ.get(ENV_STUDY), os.environ.get(ENV_TRIAL)
    if not study_name or not number:
        return None
    sweeper_cfg = hydra_cfg.sweeper
    options = sweeper_cfg.get("pruner_options") or {}
    entries = [entry.partition(":") for entry in os.environ.get(ENV_METRICS, "").split(",") if entry]
    return SearchRef(
        study_name=study_name,
        storage=os.environ.get(ENV_STORAGE, ""),
        number=int(number),
        metrics=tuple(name for name, _, _ in entries),
        directions={name: direction for name, _, direction in entries if direction},
        pruner=str(sweeper_cfg.get("pruner", "none")),
        pruner_options={str(k): v for k, v in options.items()},
    )


def _report_times(hydra_cfg: Any) -> bool:
    """Whether the report callback is on with latency rounds: then it times every network of the sweep."""
    report = (hydra_cfg.callbacks or {}).get("report")
    if report is None or not report.get("enabled", True):
        return False
    rounds = report.get("latency_rounds", 5)
    return isinstance(rounds, int) and rounds > 0


def _layout(multirun: bool) -> SweepLayout:
    """The grid check's layout of this multirun, else the one the command line describes."""
    handed = os.environ.get(GRID_ENV) if multirun else None
    if handed:
        found = json.loads(handed)
        return SweepLayout(found["size"], frozenset(found["swept"]), tuple(found["fixed"]))
    return from_command_line(tuple(sys.argv[1:]))


def quiet_mlflow(*, verbose: bool = False) -> None:
    """MLflow's INFO lines off (read when mlflow is imported, in launcher workers too), no "View run ..."
    lines per run with a tracking server, unless ``verbose``; no progress bar per downloaded artifact."""
    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def stdout_is_interactive() -> bool:
    """Whether standard output gets a redrawn live line: a terminal, and not under CI."""
    return sys.stdout.isatty() and not os.environ.get("CI")


# ---- what a sweep hands to its jobs (this process, and the workers a launcher starts) ----------


def publish_grid(layout: SweepLayout) -> None:
    """The grid check's layout of the multirun: its size, swept keys and fixed overrides."""
    os.environ[GRID_ENV] = json.dumps({"size": layout.size, "swept": sorted(layout.swept), "fixed": layout.fixed})


def publish_equal_budget(epochs: int) -> None:
    """``compare.extra_epochs=auto``: the grid's longest fine-tuning, which its ``none`` jobs train more."""
    os.environ[EQUAL_BUDGET_ENV] = str(epochs)


def publish_sweep_start(started: float | None = None) -> None:
    """When the multirun started, for the trials' time-left estimate."""
    os.environ[SWEEP_STARTED_ENV] = str(started if started is not None else time.time())


def publish_parent_run(run_id: str) -> None:
    """The sweep's MLflow parent run, which every trial names as ``mlflow.parentRunId``."""
    os.environ[PARENT_RUN_ENV] = run_id


def parent_run() -> str | None:
    """The parent run published by the sweep this process belongs to, if any."""
    return os.environ.get(PARENT_RUN_ENV) or None


def retract_parent_run() -> str | None:
    """Forget the published parent run (the sweep closed it); return it."""
    return os.environ.pop(PARENT_RUN_ENV, None) or None
