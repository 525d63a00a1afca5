"""The Hydra callback that writes the report at the end of every multirun (grid or Optuna).

Registered in ``conf/config.yaml`` under ``hydra.callbacks.report``. It writes the report
into ``<sweep dir>/report/`` and logs the files as artifacts of one MLflow run of the
sweep (run name ``report <sweep id>``, tag ``sweeper_role=report``; ``load_runs`` leaves
such runs out). It never fails the sweep: a problem is logged as a warning.

Switch it off with ``hydra.callbacks.report.enabled=false``; give it budgets with
``hydra.callbacks.report.max_size_kb=100`` (and ``max_latency_ms``, ``min_accuracy``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

__all__ = ["ReportCallback", "sweep_candidates"]

log = logging.getLogger("sweeper.report")


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


def _written_study_name(sweep_dir: Path) -> str | None:
    """The study an Optuna sweep ran, as its ``optimization_results.yaml`` names it (a default name is
    computed by the sweeper, not found in the config)."""
    results = sweep_dir / "optimization_results.yaml"
    if not results.is_file():
        return None
    import yaml

    content = yaml.safe_load(results.read_text())
    return str(content["study_name"]) if isinstance(content, dict) and content.get("study_name") else None


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


class ReportCallback(Callback):
    """Writes the sweep's report at the end of a multirun and logs it to MLflow.

    Args:
        enabled: false to skip the report (``hydra.callbacks.report.enabled=false``).
        max_size_kb: max_latency_ms: min_accuracy: the budgets of the recommendation.
        log_to_mlflow: false to write the files only.
    """

    def __init__(self, *, enabled: bool = True, max_size_kb: float | None = None,
                 max_latency_ms: float | None = None, min_accuracy: float | None = None,
                 log_to_mlflow: bool = True) -> None:
        self.enabled = enabled
        self.budget_values = (max_size_kb, max_latency_ms, min_accuracy)
        self.log_to_mlflow = log_to_mlflow

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        try:
            self._report(config)
        except Exception as exc:  # the sweep's results matter more than its report
            log.warning("report not written: %s: %s (python -m sweeper.report writes it later)",
                        type(exc).__name__, " ".join(str(exc).split()))

    def _report(self, config: DictConfig) -> None:
        from sweeper.report.build import generate, plain
        from sweeper.report.recommend import Budget
        from sweeper.tracking import TrialRun, resolve_tracking_uri

        tracking = config.get("tracking")
        if tracking is None or not tracking.get("enabled", True):
            log.info("report skipped: tracking is off (tracking.enabled=false)")
            return
        budget = Budget(*self.budget_values)
        uri = resolve_tracking_uri(tracking.get("uri"))
        experiment = str(tracking.get("experiment", "sweeper"))
        candidates = sweep_candidates(config)
        sweep_id = resolve_sweep(candidates, experiment, uri)
        if sweep_id is None:
            log.warning("report not written: no runs tagged with sweep %s in %r", " or ".join(candidates), experiment)
            return
        out = Path(str(config.hydra.sweep.dir)) / "report"
        result = generate(budget, out, experiment=experiment, sweep_id=sweep_id, tracking_uri=uri)
        log.info("%s", plain(result.recommendation.sentence))
        log.info("report: %s", result.out_dir / "report.html")
        if self.log_to_mlflow:
            tags = {"sweeper_role": "report", "sweep_id": sweep_id,
                    "mlflow.note.content": result.recommendation.sentence}
            with TrialRun(uri, experiment, run_name=f"report {sweep_id}", tags=tags) as run:
                run.log_artifacts(result.files)
                for other in result.others:  # the other sweeps of this sweep id, in their own folders
                    for path in other.files:
                        run.client.log_artifact(run.run_id, str(path), other.out_dir.name)
