"""A sweep's parent run in MLflow: one per multirun, its trials nested under it.

A Hydra callback (``hydra.callbacks.sweep_run`` in ``conf/config.yaml``), as MLflow's own
hyperparameter-tuning guide lays a sweep out: at the start of a multirun (grid or Optuna) it
opens the parent run ``sweep <sweep id>`` (tag ``sweeper_role=sweep``) with the command line,
the sweep's config and the code's git commit; every trial names it as ``mlflow.parentRunId``.
At the end the report (``hydra.callbacks.report``) is attached to it, an Optuna search's
``optimization_results.yaml`` and best values too, and the run ends FINISHED (KILLED when the
sweep is interrupted). ``sweeper.results.load_runs`` leaves parent runs out: they are no trials.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweeper.search.summary import RESULTS_FILE  # written by the Optuna sweeper into the sweep dir

__all__ = ["SweepRunCallback", "resolve_sweep", "sweep_candidates", "sweep_run_for"]

log = logging.getLogger("sweeper")


def sweep_candidates(config: DictConfig) -> list[str]:
    """Ids the trials of this multirun may carry as ``sweep_id``, most specific first.

    ``tracking.sweep_id`` when set, the Hydra sweep dir, and an Optuna study's name: the
    configured one, or the one its ``optimization_results.yaml`` names (the Optuna sweep tags
    its trials with it).
    """
    hydra_cfg = config.get("hydra")
    tracking = config.get("tracking") or {}
    values = [
        tracking.get("sweep_id"),
        hydra_cfg.sweep.dir if hydra_cfg is not None else None,
        hydra_cfg.sweeper.get("study_name") if hydra_cfg is not None and "sweeper" in hydra_cfg else None,
        _written_study_name(Path(str(hydra_cfg.sweep.dir))) if hydra_cfg is not None else None,
    ]
    return [str(v) for v in values if v]


def _written_results(sweep_dir: Path) -> dict[str, Any] | None:
    results = sweep_dir / RESULTS_FILE
    if not results.is_file():
        return None
    import yaml

    content = yaml.safe_load(results.read_text())
    return content if isinstance(content, dict) else None


def _written_study_name(sweep_dir: Path) -> str | None:
    """The study an Optuna sweep ran, as its ``optimization_results.yaml`` names it (a default name is
    computed by the sweeper, not found in the config)."""
    results = _written_results(sweep_dir)
    return str(results["study_name"]) if results and results.get("study_name") else None


def resolve_sweep(candidates: list[str], experiment: str, tracking_uri: str) -> str | None:
    """The sweep id the trials actually carry: a candidate, or the sweep of an Optuna study named so."""
    from sweeper.results import list_sweeps, load_runs

    sweeps = list_sweeps(experiment, tracking_uri=tracking_uri)
    for candidate in candidates:
        if candidate in sweeps:
            return candidate
    runs = load_runs(experiment, tracking_uri=tracking_uri)
    studies = runs[runs["optuna_study"].isin(candidates)] if "optuna_study" in runs else runs.iloc[0:0]
    return str(studies["sweep_id"].dropna().iloc[-1]) if studies["sweep_id"].notna().any() else None


def _tracking(config: DictConfig) -> tuple[str, str] | None:
    """(tracking URI, experiment) of the multirun, or None when tracking is off."""
    from sweeper.tracking import resolve_tracking_uri

    tracking = config.get("tracking")
    if tracking is None or not tracking.get("enabled", True):
        return None
    return resolve_tracking_uri(tracking.get("uri")), str(tracking.get("experiment", "sweeper"))


def _app_config(config: DictConfig) -> dict[str, Any]:
    plain = OmegaConf.to_container(config, resolve=False)
    assert isinstance(plain, dict)
    return {str(k): v for k, v in plain.items() if k != "hydra"}


def sweep_run_for(config: DictConfig) -> str | None:
    """The parent run of this multirun: the one opened at its start, else found or opened now."""
    from sweeper.tracking import open_sweep_run, parent_run_id

    found = parent_run_id()
    where = _tracking(config)
    if found or where is None:
        return found
    uri, experiment = where
    tracking = config.get("tracking") or {}
    return open_sweep_run(
        uri,
        experiment,
        sweep_dir=str(config.hydra.sweep.dir),
        sweep_id=tracking.get("sweep_id") or None,
        command=" ".join(["python -m sweeper", *sys.argv[1:]]),
        config=_app_config(config),
    )


class SweepRunCallback(Callback):
    """Opens the sweep's parent run at the start of a multirun and closes it at the end.

    Args:
        enabled: false for flat runs, no parent (``hydra.callbacks.sweep_run.enabled=false``).
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from sweeper.progress import SWEEP_STARTED_ENV, quiet_launch_lines

        os.environ[SWEEP_STARTED_ENV] = str(time.time())  # for the trials' time-left estimate
        quiet_launch_lines()
        if self.enabled:
            sweep_run_for(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from sweeper.tracking import close_sweep_run, parent_run_id

        run_id, where = parent_run_id(), _tracking(config)
        if run_id is None or where is None:
            return
        try:
            self._summarize(run_id, config, *where)
        except Exception as exc:  # the trials matter more than their parent's summary
            log.warning("sweep run %s not summarized: %s: %s", run_id, type(exc).__name__, exc)
        finally:
            close_sweep_run()

    @staticmethod
    def _summarize(run_id: str, config: DictConfig, uri: str, experiment: str) -> None:
        """The sweep id its trials carry, and an Optuna search's results, on the parent run."""
        from mlflow.entities import Metric, RunTag

        from sweeper.tracking import writing_client

        client = writing_client(uri)
        tags: list[RunTag] = []
        # the report, when it ran, resolved it already: resolving reads every run of the experiment
        known = client.get_run(run_id).data.tags.get("sweep_id")
        sweep_id = None if known else resolve_sweep(sweep_candidates(config), experiment, uri)
        if sweep_id:
            tags.append(RunTag("sweep_id", sweep_id))
        sweep_dir = Path(str(config.hydra.sweep.dir))
        results = _written_results(sweep_dir)
        metrics: list[Metric] = []
        if results is not None:  # an Optuna search: its best trial or Pareto front
            now = int(time.time() * 1000)
            best = results.get("best") or {}
            metrics = [Metric(f"best_{k}", float(v), now, 0) for k, v in best.get("values", {}).items()]
            tags += [RunTag("optuna_study", str(results["study_name"]))]
            tags += [RunTag(f"trials_{state}", str(n)) for state, n in results.get("trials", {}).items()]
            if best:
                tags.append(RunTag("best_trial", str(best["trial"])))
            if "pareto_front" in results:
                tags.append(RunTag("pareto_trials", ",".join(str(e["trial"]) for e in results["pareto_front"])))
            client.log_artifact(run_id, str(sweep_dir / RESULTS_FILE))
        client.log_batch(run_id, metrics=metrics, tags=tags)
