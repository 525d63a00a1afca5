"""The Hydra callback that writes the report at the end of every multirun (grid or Optuna).

Registered in ``conf/config.yaml`` under ``hydra.callbacks.report``. It writes the report
into ``<sweep dir>/report/`` and attaches it to the sweep's parent run
(:mod:`sweeper.sweep.parent_run`): the files as artifacts, the recommendation as the run's
description, the recommended configuration's numbers as ``recommended_*`` metrics and the
trial counts. With ``report.register=true`` the recommended model goes to the Model Registry.
It never fails the sweep: a problem is logged as a warning.

Switch it off with ``hydra.callbacks.report.enabled=false``; give it budgets with
``hydra.callbacks.report.max_size_kb=100`` (and ``max_latency_ms``, ``min_score``).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from sweeper.report.build import ReportResult

__all__ = ["ReportCallback", "register_recommended", "summary_metrics"]

log = logging.getLogger("sweeper.report")


class ReportCallback(Callback):
    """Writes the sweep's report at the end of a multirun and logs it to MLflow.

    Args:
        enabled: false to skip the report (``hydra.callbacks.report.enabled=false``).
        max_size_kb: max_latency_ms: min_score: the budgets of the recommendation (``min_score``: the
            task's metric on validation, a fraction; ``min_accuracy`` is its former name).
        log_to_mlflow: false to write the files only (then the latency round's numbers stay in the report:
            trials that left their latency to it have none in MLflow).
        latency_rounds: the end-of-sweep latency round's rounds (every distinct network timed side by
            side, :mod:`sweeper.report.latency_round`); 0: the trials' own timings.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        max_size_kb: float | None = None,
        max_latency_ms: float | None = None,
        min_score: float | None = None,
        log_to_mlflow: bool = True,
        latency_rounds: int = 5,
        min_accuracy: float | None = None,
    ) -> None:
        self.enabled = enabled
        self.budget_values = (max_size_kb, max_latency_ms, min_score if min_score is not None else min_accuracy)
        self.log_to_mlflow = log_to_mlflow
        self.latency_rounds = latency_rounds

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        try:
            self._report(config)
        except Exception as exc:  # the sweep's results matter more than its report
            log.warning(
                "report not written: %s: %s (python -m sweeper.report writes it later)",
                type(exc).__name__,
                " ".join(str(exc).split()),
            )

    def _report(self, config: DictConfig) -> None:
        from sweeper.report.build import generate, plain
        from sweeper.report.recommend import Budget
        from sweeper.sweep.parent_run import sweep_id_of
        from sweeper.tracking.runs import resolve_tracking_uri

        tracking = config.get("tracking")
        if tracking is None or not tracking.get("enabled", True):
            log.info("report skipped: tracking is off (tracking.enabled=false)")
            return
        budget = Budget(*self.budget_values)
        uri = resolve_tracking_uri(tracking.get("uri"))
        experiment = str(tracking.get("experiment", "sweeper"))
        sweep_id = sweep_id_of(config)  # decided as the trials decided it: no scan of the store
        out = Path(str(config.hydra.sweep.dir)) / "report"
        result = generate(
            budget,
            out,
            experiment=experiment,
            sweep_id=sweep_id,
            tracking_uri=uri,
            latency_rounds=self.latency_rounds,
            log_latency=self.log_to_mlflow,
        )
        log.info("%s", plain(result.answer))
        log.info("report: %s", result.out_dir / "report.html")
        if self.log_to_mlflow:
            self._attach(config, uri, sweep_id, result)

    def _attach(self, config: DictConfig, uri: str, sweep_id: str, result: ReportResult) -> None:
        """The report on the sweep's parent run (opened here when the sweep had none)."""

        from sweeper.sweep.parent_run import close_sweep_run, sweep_run_for
        from sweeper.tracking.runs import TrialRun, writing_client
        from sweeper.trial.context import parent_run

        opened_here = parent_run() is None
        run_id = sweep_run_for(config)
        assert run_id is not None  # tracking is on
        try:
            run = TrialRun.attach(writing_client(uri), run_id)
            run.set_tags({"sweep_id": sweep_id, "mlflow.note.content": result.description})
            run.log_results(summary_metrics(result))
            run.log_artifacts(result.files)
            for other in result.others:  # the other sweeps of this sweep id, in their own folders
                for path in other.files:
                    run.client.log_artifact(run_id, str(path), other.out_dir.name)
            report = config.get("report") or {}
            if report.get("register", False):
                name = str(report.get("model_name") or config.tracking.get("experiment", "sweeper"))
                version = register_recommended(run.client, result, name, sweep_id=sweep_id)
                if version is not None:
                    log.info("registered: models:/%s/%s (alias @recommended)", name, version)
        finally:
            if opened_here:
                close_sweep_run()


def summary_metrics(result: ReportResult) -> dict[str, float]:
    """The parent run's numbers: trial counts, and the recommended configuration's means over seeds."""
    runs = result.runs
    metrics = {f"trials_{outcome}": float((runs["outcome"] == outcome).sum()) for outcome in ("ok", "failed", "pruned")}
    best = result.recommendation.best
    if best is not None and best in result.table.index:
        row = result.table.loc[best]
        metrics.update(
            {
                "recommended_test_score": float(row["score_mean"]),
                "recommended_val_score": float(row["val_mean"]),
                "recommended_size_bytes": float(row["size_bytes"]),
                "recommended_latency_ms": float(row["latency_ms"]),
                "recommended_n_seeds": float(row["n_seeds"]),
            }
        )
    return {k: v for k, v in metrics.items() if v == v}  # NaN: not measured (no finished run)


def register_recommended(client: MlflowClient, result: ReportResult, name: str, *, sweep_id: str) -> str | None:
    """Register the recommended configuration's model as a new version of ``name``; return the version.

    Of the configuration's finished runs (one per seed) the one with the best validation score is
    registered; the version is tagged with the sweep, the configuration and the budget, and gets the
    alias ``recommended``. Nothing to register (no recommendation, models not logged): ``None``, a warning.
    """
    from mlflow.exceptions import MlflowException

    best = result.recommendation.best
    runs = result.runs
    chosen = runs[(runs["config"] == best) & (runs["outcome"] == "ok")] if best is not None else runs.iloc[0:0]
    if chosen.empty:
        log.warning("nothing registered: no configuration is recommended within the budget")
        return None
    selection = "val_score" if "val_score" in chosen and chosen["val_score"].notna().any() else "test_score"
    lower = "score_direction" in chosen and (chosen["score_direction"] == "minimize").any()  # perplexity
    run_id = str(chosen.sort_values(selection, ascending=bool(lower))["run_id"].iloc[0])
    model_id = client.get_run(run_id).data.tags.get("model_id")
    if not model_id:
        log.warning("nothing registered: run %s logged no model (tracking.log_model=false)", run_id)
        return None
    with contextlib.suppress(MlflowException):  # registered by an earlier sweep
        client.create_registered_model(name, description="The models sweeper recommended, one version per sweep.")
    tags = {"sweep_id": sweep_id, "config": str(best), "budget": result.recommendation.budget.describe()}
    version = client.create_model_version(name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id)
    client.set_registered_model_alias(name, "recommended", version.version)
    return str(version.version)
