"""A sweep's parent run in MLflow: one per multirun, its trials nested under it.

A Hydra callback (``hydra.callbacks.sweep_run`` in ``conf/config.yaml``), as MLflow's own
hyperparameter-tuning guide lays a sweep out: at the start of a multirun (grid or Optuna) it
opens the parent run ``sweep <sweep id>`` (tag ``sweeper_role=sweep``) with the command line,
the sweep's config and the code's git commit; every trial names it as ``mlflow.parentRunId``.
At the end the report (``hydra.callbacks.report``) is attached to it, an Optuna search's
``optimization_results.yaml`` and best values too, and the run ends FINISHED (KILLED when the
sweep is interrupted). ``sweeper.tracking.results.load_runs`` leaves parent runs out: they are no trials.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweeper.search.summary import RESULTS_FILE  # written by the Optuna sweeper into the sweep dir
from sweeper.trial.context import (
    decide_sweep_id,
    parent_run,
    publish_parent_run,
    publish_sweep_start,
    retract_parent_run,
)

__all__ = ["SweepRunCallback", "close_sweep_run", "sweep_id_of", "sweep_run_for"]

log = logging.getLogger("sweeper")


def _written_results(sweep_dir: Path) -> dict[str, Any] | None:
    results = sweep_dir / RESULTS_FILE
    if not results.is_file():
        return None
    import yaml

    content = yaml.safe_load(results.read_text())
    return content if isinstance(content, dict) else None


def sweep_id_of(config: DictConfig) -> str:
    """The id the trials of this multirun carry (:func:`sweeper.trial.context.decide_sweep_id`), read from its
    config at the end of the multirun: an Optuna search's study is the one its ``optimization_results.yaml``
    names (a default name is computed by the sweeper, not found in the config)."""
    hydra_cfg = config.hydra
    written = _written_results(Path(str(hydra_cfg.sweep.dir)))
    study = written.get("study_name") if written else (hydra_cfg.get("sweeper") or {}).get("study_name")
    return decide_sweep_id(
        explicit=(config.get("tracking") or {}).get("sweep_id"), study_name=study, sweep_dir=hydra_cfg.sweep.dir
    )


def _tracking(config: DictConfig) -> tuple[str, str] | None:
    """(tracking URI, experiment) of the multirun, or None when tracking is off."""
    from sweeper.tracking.runs import resolve_tracking_uri

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
    from sweeper.tracking.parent import open_sweep_run

    found = parent_run()
    where = _tracking(config)
    if found or where is None:
        return found
    uri, experiment = where
    tracking = config.get("tracking") or {}
    run_id = open_sweep_run(
        uri,
        experiment,
        sweep_dir=str(config.hydra.sweep.dir),
        sweep_id=tracking.get("sweep_id") or None,
        command=" ".join(["python -m sweeper", *sys.argv[1:]]),
        config=_app_config(config),
    )
    publish_parent_run(run_id)  # every trial of the sweep (and each worker a launcher starts) names it
    return run_id


def close_sweep_run(status: str = "FINISHED") -> None:
    """End the parent run this process opened (no-op without one) and stop publishing it."""
    from sweeper.tracking.parent import close_sweep_run as close

    close(retract_parent_run(), status)


def _point_to_the_ui(run_id: str, uri: str) -> None:
    """One line: the address of the experiment's runs in MLflow's UI, in model-training mode and sweeper's
    view (score, size and latency as columns: :mod:`sweeper.tracking.ui`), and how to start the UI."""
    from sweeper.tracking.runs import writing_client
    from sweeper.tracking.ui import runs_page

    try:
        experiment_id = writing_client(uri).get_run(run_id).info.experiment_id
    except Exception:  # the store went away: the trials said where they are
        return
    served = uri.startswith(("http://", "https://"))
    log.info("MLflow: %s%s", runs_page(uri, experiment_id), "" if served else f" (mlflow ui --backend-store-uri {uri})")


class SweepRunCallback(Callback):
    """Opens the sweep's parent run at the start of a multirun and closes it at the end.

    Args:
        enabled: false for flat runs, no parent (``hydra.callbacks.sweep_run.enabled=false``).
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from sweeper.progress import quiet_launch_lines
        from sweeper.trial.context import stdout_is_interactive

        publish_sweep_start()  # for the trials' time-left estimate
        quiet_launch_lines(live=stdout_is_interactive())
        if self.enabled:
            sweep_run_for(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        run_id, where = parent_run(), _tracking(config)
        if run_id is None or where is None:
            return
        try:
            self._summarize(run_id, config, where[0])
        except Exception as exc:  # the trials matter more than their parent's summary
            log.warning("sweep run %s not summarized: %s: %s", run_id, type(exc).__name__, exc)
        finally:
            close_sweep_run()
        _point_to_the_ui(run_id, where[0])

    @staticmethod
    def _summarize(run_id: str, config: DictConfig, uri: str) -> None:
        """The sweep id its trials carry, and an Optuna search's results, on the parent run."""
        from mlflow.entities import Metric, RunTag

        from sweeper.tracking.runs import writing_client

        client = writing_client(uri)
        tags = [RunTag("sweep_id", sweep_id_of(config))]
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
