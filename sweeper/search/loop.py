"""The Optuna search, top to bottom: ask trials, launch them as Hydra jobs, tell Optuna what they returned.

The Hydra plug-in (``hydra_plugins/sweeper_optuna``: ``hydra/sweeper=optuna`` and its options) is a
thin facade over :class:`OptunaSweeperImpl`; this package holds the rest: ``space`` (the search
space from Hydra's sweep syntax), ``objectives``, ``study`` (storage, sampler, pruner),
``workers`` (slots shared by many workers, heartbeats), ``trial_context`` (the trial a job
evaluates) and ``summary`` (the results file and progress line). The search writes no MLflow
itself: each trial tracks its own run, and the sweep's parent run (``sweeper.sweep.parent_run``) takes
the results file at the end.

One sweep call: check every input (space, objectives, budgets, sampler, pruner) and compose
one config per branch of the space -> open or resume the study -> while fewer than
``n_trials`` trials are complete or pruned: ask up to ``n_jobs`` trials, sample their
overrides, launch them, tell their outcome -> write the best trial or the Pareto front.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.study import StudyDirection

from sweeper.errors import ConfigError
from sweeper.search import trial_context
from sweeper.search.objectives import Constraint, parse_constraints, parse_objectives
from sweeper.search.space import SearchSpace, parse_space
from sweeper.search.study import build_pruner, build_sampler, default_study_name, open_storage
from sweeper.search.summary import UNLIMITED, progress_line, summarize, write_results
from sweeper.search.workers import GRACE_SECONDS, HEARTBEAT_SECONDS, free_slots, heartbeat, release_surplus

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "optuna.journal"
WAIT_SECONDS = 2.0  # how often a worker with no free slot looks again (other workers' last trials)
DEFAULT_N_TRIALS = 20  # n_trials when neither it nor a timeout is given


class SweepAborted(RuntimeError):
    """Too many trials failed (``hydra.sweeper.max_failure_rate``)."""


@dataclass
class SearchPlan:
    """Everything a search needs, checked before the first trial."""

    space: SearchSpace
    objectives: dict[str, str]
    constraints: list[Constraint]
    study_name: str
    storage: str
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner
    n_trials: int  # hydra.sweeper.n_trials, or the grid's size when smaller; UNLIMITED: until the timeout
    timeout: float | None = None  # seconds after which this worker starts no trial


def _container(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler's time limit, ``kill``) like Ctrl-C while trials run, so that
    running trials end FAIL in Optuna and KILLED in MLflow instead of staying RUNNING."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class OptunaSweeperImpl(Sweeper):
    """See :class:`hydra_plugins.sweeper_optuna.config.OptunaSweeperConf` for the options."""

    def __init__(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        conditional_params: Mapping[str, Any] | None = None,
        objectives: Mapping[str, str] | None = None,
        constraints: Mapping[str, str] | None = None,
        n_trials: int | None = None,
        n_jobs: int = 1,
        sampler: str = "tpe",
        seed: int | None = None,
        sampler_options: Mapping[str, Any] | None = None,
        pruner: str = "none",
        pruner_options: Mapping[str, Any] | None = None,
        storage: str | None = None,
        study_name: str | None = None,
        max_failure_rate: float = 0.5,
        stale_after: float = GRACE_SECONDS,
        timeout: float | None = None,
    ) -> None:
        self.params = _container(params) or {}
        self.conditional_params = _container(conditional_params) or {}
        self.objectives = _container(objectives)
        self.constraints = _container(constraints) or {}
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler_name, self.seed, self.sampler_options = sampler, seed, _container(sampler_options) or {}
        self.pruner_name, self.pruner_options = pruner, _container(pruner_options) or {}
        self.storage, self.study_name = storage, study_name
        self.max_failure_rate = max_failure_rate
        self.stale_after = stale_after
        self.timeout = timeout
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ---- checks, before any trial -------------------------------------------------------------

    def _check_numbers(self) -> None:
        if not (self.n_trials is None or (isinstance(self.n_trials, int) and self.n_trials >= 1)):
            raise ConfigError(f"hydra.sweeper.n_trials={self.n_trials}: must be an integer >= 1 or null")
        timeout = self.timeout
        if not (
            timeout is None or (isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0)
        ):
            raise ConfigError(f"hydra.sweeper.timeout={timeout}: must be a number of seconds > 0 or null")
        if not (isinstance(self.n_jobs, int) and self.n_jobs >= 1):
            raise ConfigError(f"hydra.sweeper.n_jobs={self.n_jobs}: must be an integer >= 1")
        if not 0.0 <= float(self.max_failure_rate) <= 1.0:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={self.max_failure_rate}: must be in [0, 1]")
        if not float(self.stale_after) >= 2 * HEARTBEAT_SECONDS:
            raise ConfigError(
                f"hydra.sweeper.stale_after={self.stale_after}: must be >= {2 * HEARTBEAT_SECONDS:g} "
                f"(two heartbeats of {HEARTBEAT_SECONDS:g} s: one missed beat must not fail a live trial)"
            )

    def plan(self, arguments: Sequence[str]) -> SearchPlan:
        """Check every input and build the sampler, pruner, study name and storage; run nothing.

        Raises:
            ConfigError: the message names the key and what is allowed.
        """
        self._check_numbers()
        space = parse_space(self.params, self.conditional_params, arguments=list(arguments))
        objectives = parse_objectives(self.objectives)
        constraints = parse_constraints(self.constraints)
        pruner = build_pruner(self.pruner_name, self.pruner_options)
        if len(objectives) > 1 and self.pruner_name != "none":
            raise ConfigError(
                f"hydra.sweeper.pruner={self.pruner_name}: Optuna cannot prune a multi-objective study "
                f"({', '.join(objectives)}); allowed: none, or a single objective"
            )
        sampler = build_sampler(self.sampler_name, seed=self.seed, options=self.sampler_options, space=space)
        choices = OmegaConf.select(self.config, "hydra.runtime.choices", default={}) if self.config else {}
        prefix = str(choices.get("search") or "optuna")
        defining = [space.fixed, [(p.name, repr(p.distribution)) for p in space.params], objectives, self.constraints]
        study_name = self.study_name or default_study_name(prefix, defining)
        storage = self.storage or str(Path.cwd() / DEFAULT_STORAGE)
        n_trials = self.n_trials or (UNLIMITED if self.timeout else DEFAULT_N_TRIALS)
        if self.sampler_name == "grid":
            n_trials = min(n_trials, math.prod(len(values) for values in space.grid().values()))
        timeout = float(self.timeout) if self.timeout else None
        return SearchPlan(space, objectives, constraints, study_name, storage, sampler, pruner, n_trials, timeout)

    def _check_composes(self, space: SearchSpace) -> None:
        """Compose one job config per branch of the space, so a wrong key fails before any trial."""
        assert self.config is not None and self.hydra_context is not None
        for overrides in space.probe_overrides():
            self.hydra_context.config_loader.load_sweep_config(self.config, overrides)

    def _check_reachable(self, plan: SearchPlan) -> None:
        """A shared storage or tracking server that does not answer fails here, in seconds."""
        from sweeper.tracking.reachability import check_database_url, check_tracking_uri
        from sweeper.tracking.runs import resolve_tracking_uri

        if "://" in plan.storage and not plan.storage.startswith("journal://"):
            check_database_url(plan.storage, key="hydra.sweeper.storage")
        assert self.config is not None  # set by setup()
        if OmegaConf.select(self.config, "tracking.enabled", default=False):
            check_tracking_uri(resolve_tracking_uri(OmegaConf.select(self.config, "tracking.uri", default=None)))

    def _open_study(self, plan: SearchPlan) -> optuna.Study:
        study = optuna.create_study(
            study_name=plan.study_name,
            storage=open_storage(plan.storage),
            sampler=plan.sampler,
            pruner=plan.pruner,
            directions=[StudyDirection[d.upper()] for d in plan.objectives.values()],
            load_if_exists=True,
        )
        stored = study.user_attrs.get("objectives")
        if stored is not None and list(stored) != list(plan.objectives):
            raise ConfigError(
                f"hydra.sweeper.study_name={plan.study_name}: the stored study optimizes {', '.join(stored)}; "
                f"the objectives give {', '.join(plan.objectives)}; choose another study_name"
            )
        if [d.name.lower() for d in study.directions] != list(plan.objectives.values()):
            raise ConfigError(
                f"hydra.sweeper.study_name={plan.study_name}: the stored study has directions "
                f"{[d.name.lower() for d in study.directions]}; choose another study_name"
            )
        study.set_user_attr("objectives", list(plan.objectives))
        with warnings.catch_warnings():  # experimental in Optuna since 3.2, still what optuna-dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(plan.objectives))  # the dashboard shows val_score, not "Objective 0"
        return study

    # ---- the sweep ------------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None
        plan = self.plan(arguments)
        self._check_composes(plan.space)
        self._check_reachable(plan)
        study = self._open_study(plan)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        start, failed, launched, last_reason, returns = time.perf_counter(), 0, 0, "", []
        deadline = start + plan.timeout if plan.timeout else math.inf
        done, free = self._slots(study, plan)
        print(_start_line(plan, done), flush=True)
        while done < plan.n_trials and time.perf_counter() < deadline:
            if free == 0:  # the last trials run in other workers: wait in case one fails or its worker dies
                time.sleep(WAIT_SECONDS)
                done, free = self._slots(study, plan)
                continue
            batch = release_surplus(study, [study.ask() for _ in range(min(self.n_jobs, free))], plan.n_trials)
            if batch:
                with heartbeat(batch):
                    results = self._launch(study, plan, batch)
                returns.append(results)
                launched += len(batch)
                for trial, result in zip(batch, results, strict=True):
                    if self._tell(study, plan, trial, result) == optuna.trial.TrialState.FAIL:
                        failed, last_reason = failed + 1, trial.user_attrs.get("failure_reason", "unknown")
                print(progress_line(study, plan.objectives, plan.n_trials, time.perf_counter() - start), flush=True)
            done, free = self._slots(study, plan)
            allowed = plan.n_trials if plan.n_trials < UNLIMITED else launched  # no n_trials: of those started
            if failed > self.max_failure_rate * allowed:
                self._finish(study, plan, sweep_dir)
                raise SweepAborted(
                    f"hydra.sweeper.max_failure_rate={self.max_failure_rate}: {failed} trials failed in this run "
                    f"(more than {self.max_failure_rate:g} x {allowed} trials); stopping. "
                    f"Last reason: {last_reason}"
                )
        timed_out = done < plan.n_trials and time.perf_counter() >= deadline
        if timed_out:
            print(
                f"hydra.sweeper.timeout={plan.timeout:g}: the time budget ended the search; no trial starts", flush=True
            )
        self._finish(study, plan, sweep_dir, stopped_by="timeout" if timed_out else "n_trials")
        return returns

    def _slots(self, study: optuna.Study, plan: SearchPlan) -> tuple[int, int]:
        """(done trials, free slots), after failing trials whose worker stopped its heartbeat."""
        return free_slots(study, plan.n_trials, stale_after=self.stale_after, on_stale=self._close_run)

    def _close_run(self, trial: optuna.trial.FrozenTrial, reason: str) -> None:
        """Close the MLflow run of a stale trial as KILLED (when this sweep tracks to MLflow)."""
        assert self.config is not None
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id and OmegaConf.select(self.config, "tracking.enabled", default=False):
            from sweeper.tracking.runs import close_stale_run, resolve_tracking_uri

            close_stale_run(resolve_tracking_uri(OmegaConf.select(self.config, "tracking.uri")), str(run_id), reason)

    def _launch(self, study: optuna.Study, plan: SearchPlan, batch: list[optuna.Trial]) -> Sequence[JobReturn]:
        assert self.launcher is not None
        jobs = []
        for trial in batch:
            overrides = plan.space.overrides(plan.space.sample(trial))
            trial.set_user_attr("overrides", overrides)
            env = {
                trial_context.ENV_STUDY: plan.study_name,
                trial_context.ENV_STORAGE: plan.storage,
                trial_context.ENV_TRIAL: str(trial.number),
                trial_context.ENV_METRICS: ",".join(
                    [*(f"{m}:{d}" for m, d in plan.objectives.items()), *(c.metric for c in plan.constraints)]
                ),
            }
            jobs.append([*overrides, *(f"hydra.job.env_set.{k}={_quote(v)}" for k, v in env.items())])
            trial_context.register(plan.study_name, trial)
        try:
            with _sigterm_as_interrupt():
                return self.launcher.launch(jobs, initial_job_idx=batch[0].number)
        except BaseException as exc:  # interrupted or a launcher error: no trial stays RUNNING
            for trial in batch:
                trial.set_user_attr("failure_reason", f"{type(exc).__name__}: {exc}"[:2000])
                study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            raise
        finally:
            for trial in batch:
                trial_context.unregister(plan.study_name, trial.number)

    def _tell(self, study: optuna.Study, plan: SearchPlan, trial: optuna.Trial, result: JobReturn) -> Any:
        """Tell Optuna how ``trial`` ended; return its state."""
        state = optuna.trial.TrialState
        if result.status == JobStatus.FAILED:
            exc = result._return_value
            if trial_context.is_pruned(exc):
                return study.tell(trial, state=state.PRUNED, skip_if_finished=True).state
            trial.set_user_attr("failure_reason", f"{type(exc).__name__}: {exc}"[:2000])
            study.tell(trial, state=state.FAIL, skip_if_finished=True)
            raise exc  # the task raised on purpose (bad input, fail_fast=true): stop the sweep
        metrics = result.return_value
        reason = self._missing(metrics, plan)
        if reason:
            if "failure_reason" not in trial.user_attrs:  # the job may have said why already
                trial.set_user_attr("failure_reason", reason)
            log.warning("trial %d failed: %s", trial.number, reason)
            return study.tell(trial, state=state.FAIL, skip_if_finished=True).state
        for constraint in plan.constraints:
            trial.set_constraint(constraint.metric, constraint.violation(float(metrics[constraint.metric])))
        values = [float(metrics[m]) for m in plan.objectives]
        return study.tell(trial, values, skip_if_finished=True).state

    @staticmethod
    def _missing(metrics: Any, plan: SearchPlan) -> str:
        """Why ``metrics`` cannot be told to Optuna ('' when it can)."""
        if metrics is None:
            return "the trial failed (see the failure_reason of its MLflow run)"
        if not isinstance(metrics, Mapping):
            return f"the task returned {type(metrics).__name__}, expected a mapping of metrics"
        for name in [*plan.objectives, *(c.metric for c in plan.constraints)]:
            if name not in metrics:
                return f"metric {name} not returned by the trial; returned: {', '.join(sorted(metrics))}"
            if not math.isfinite(float(metrics[name])):
                return f"metric {name} is {metrics[name]}"
        return ""

    def _finish(self, study: optuna.Study, plan: SearchPlan, sweep_dir: Path, stopped_by: str = "failures") -> None:
        assert self.config is not None
        results = summarize(study, plan.space, plan.objectives, plan.constraints)
        results["storage"] = _shown(plan.storage)
        results["stopped_by"] = stopped_by  # n_trials reached, the timeout, or max_failure_rate
        if plan.timeout:
            results["timeout_seconds"] = plan.timeout
        path = write_results(results, sweep_dir)  # the sweep's parent run takes it to MLflow (sweeper.sweep.parent_run)
        print(_summary_text(results, path), flush=True)


def _start_line(plan: SearchPlan, done: int) -> str:
    """``study S in optuna.journal: 3/20 trials done, resuming``, with the time budget when there is one."""
    target = f"{done}/{plan.n_trials} trials done" if plan.n_trials < UNLIMITED else f"{done} trials done"
    budget = f", time budget {plan.timeout:g} s" if plan.timeout else ""
    resuming = ", resuming" if done and done < plan.n_trials else ""
    return f"study {plan.study_name} in {_shown(plan.storage)}: {target}{budget}{resuming}"


def _shown(storage: str) -> str:
    """The storage as printed: a database URL without its password."""
    if "://" not in storage or storage.startswith("journal://"):
        return storage
    import sqlalchemy

    return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)


def _summary_text(results: Mapping[str, Any], path: Path) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in results["trials"].items())
    lines = [f"study {results['study_name']}: {counts}"]
    if "best" in results:
        best = results["best"]
        lines.append(
            "no feasible complete trial"
            if best is None
            else f"best trial {best['trial']}: {best['values']} with {' '.join(best['overrides']) or 'defaults'}"
        )
    else:
        lines.append(f"Pareto front ({len(results['pareto_front'])} trials):")
        lines += [
            f"  trial {e['trial']}: {e['values']} with {' '.join(e['overrides'])}" for e in results["pareto_front"]
        ]
    lines.append(f"results: {path}")
    return "\n".join(lines)
