"""One trial, stage by stage: data -> model -> train -> compress -> export -> measure -> track.

`run(cfg)` is a plain function: the Hydra entry point calls it, and so do tests. It plans the
trial (:func:`sweeper.plan.plan_trial`: every component built and checked, so bad input fails
in a second), then calls the stages: :func:`train_stage`, :func:`deploy_stage` (compress, write
the artifact, reload it, :func:`sweeper.measure.measure_artifact`) and the tracking of both.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sweeper import sweep_layout
from sweeper.artifact import dense_payload, load_artifact, save_artifact, serialized_size
from sweeper.baselines import baseline_scores
from sweeper.compression import Compressed, TrainingHooks, TrainsWithHooks
from sweeper.errors import ConfigError
from sweeper.measure import measure_artifact, trial_times_latency
from sweeper.metrics import check_final_metrics
from sweeper.plan import TrialPlan, hydra_config, plain_dict, plan_trial
from sweeper.progress import TrialProgress
from sweeper.runtimes import ONNX_FILE
from sweeper.search import trial_context
from sweeper.search.objectives import check_task_defines
from sweeper.search.trial_context import TrialContext
from sweeper.tracking import (
    TrialRun,
    finished_trial,
    flatten,
    parent_run_id,
    resolve_tracking_uri,
    source_tags,
    trial_key,
)
from sweeper.training import TrainResult, train
from sweeper.training.loop import EpochHook

__all__ = ["Deployed", "Trained", "deploy_stage", "execute", "run", "train_stage"]

T = TypeVar("T")


def _output_dir() -> Path:
    hydra_cfg = hydra_config()
    if hydra_cfg is not None:
        return Path(hydra_cfg.runtime.output_dir)
    return Path(tempfile.mkdtemp(prefix="sweeper-"))


def _sweep_id(cfg: DictConfig, search: TrialContext | None) -> str:
    if cfg.tracking.get("sweep_id"):
        return str(cfg.tracking.sweep_id)
    if search is not None:  # an Optuna study groups its trials across resumed runs
        return search.study_name
    hydra_cfg = hydra_config()
    if hydra_cfg is not None and _is_multirun():
        return str(hydra_cfg.sweep.dir)
    return ""


def _is_multirun() -> bool:
    hydra_cfg = hydra_config()
    return hydra_cfg is not None and str(hydra_cfg.mode) == "RunMode.MULTIRUN"


def _trial_position() -> tuple[int | None, int | None]:
    """(1-based index of this job in the multirun, number of jobs) where Hydra tells them."""
    hydra_cfg = hydra_config()
    if hydra_cfg is None or not _is_multirun():
        return None, None
    return int(hydra_cfg.job.num) + 1, sweep_layout.current(multirun=True).size


def _run_label(choices: dict[str, str], cfg: DictConfig) -> str:
    """Run name from what varies: the swept overrides of a multirun, else the task's overrides."""
    hydra_cfg = hydra_config()
    overrides = list(hydra_cfg.overrides.task) if hydra_cfg is not None else []
    label = sweep_layout.current(multirun=_is_multirun()).label(overrides)
    return (
        label
        or f"{choices['model']}-{choices['optimizer']}-{choices['strategy']}-{choices['compression']}-seed{cfg.seed}"
    )


@dataclass
class Trained:
    """What the training stage hands to the deployment stage."""

    result: TrainResult
    hooks: TrainingHooks | None = None  # the compression method's changes to training, if any


def train_stage(plan: TrialPlan, *, epoch_hook: EpochHook | None = None) -> Trained:
    """Train the plan's model in place, with the compression method's training hooks if it has any."""
    if plan.unsupported is not None:
        raise plan.unsupported
    hooks = plan.compressor.training_hooks(plan.context()) if isinstance(plan.compressor, TrainsWithHooks) else None
    result = train(
        plan.model,
        plan.task,
        plan.optimizer_factory,
        plan.strategy,
        seed=plan.seed,
        device=plan.device,
        loss_fn=hooks.loss_fn if hooks else None,
        step_hook=hooks.step_hook if hooks else None,
        epoch_hook=epoch_hook,
    )
    return Trained(result, hooks)


@dataclass
class Deployed:
    """The deployment stage's outcome: the artifact on disk and every number measured on it reloaded."""

    compressed: Compressed  # the in-memory result of the compression method
    path: Path
    module: nn.Module  # the artifact reloaded from ``path``: what was measured
    metrics: dict[str, float]
    tags: dict[str, str]  # how it was measured (``latency_measured``: estimate, reused estimate, not timed)


def deploy_stage(plan: TrialPlan, trained: Trained, artifact_path: Path) -> Deployed:
    """Compress the trained model, write the artifact, reload it and measure the reloaded module."""
    cfg, task, result = plan.cfg, plan.task, trained.result
    model = plan.model.cpu().eval()
    dense_bytes = serialized_size("dense", plan.spec, dense_payload(model))  # the fp32 baseline

    runtimes = list(cfg.measure.get("runtimes", ["torch"]))
    float_source = _int8_source(plan, model) if "onnxruntime" in runtimes else None
    start = time.perf_counter()
    compressed = plan.compressor.compress(model, replace(plan.context(), hooks=trained.hooks))
    compress_seconds = time.perf_counter() - start
    size_bytes = save_artifact(artifact_path, compressed.kind, compressed.spec or plan.spec, compressed.payload)

    deployed = load_artifact(artifact_path)  # every number below is of the reloaded artifact
    spec = compressed.spec or plan.spec
    network = f"{spec.target}|{sorted(spec.kwargs.items())}|{spec.resized}|{compressed.kind}|{size_bytes}|{plan.device}"
    time_latency = _times_latency(cfg)
    measured, how = measure_artifact(
        deployed,
        task,
        latency_seconds=float(cfg.measure.latency_seconds),
        latency_batch=int(cfg.measure.latency_batch),
        network=network,
        time_latency=time_latency,
    )
    metrics: dict[str, float] = {
        **measured,
        "best_val_score": result.best_val_score,
        "size_bytes": size_bytes,
        "compression_ratio": dense_bytes / size_bytes,
        "train_seconds": result.train_seconds,
        "compress_seconds": compress_seconds,
        "epochs_run": result.epochs_run,
        "steps": result.steps,
        **(trained.hooks.metrics if trained.hooks else {}),
        **compressed.metrics,
        **baseline_scores(task),
    }
    tags = {"latency_measured": how}
    if "onnxruntime" in runtimes:
        onnx_metrics, onnx_tags = _onnx_runtime(
            plan, compressed, deployed, float_source, artifact_path, time_latency=time_latency
        )
        metrics.update(onnx_metrics)
        tags.update(onnx_tags)
    check_final_metrics(metrics)
    return Deployed(compressed, artifact_path, deployed, metrics, tags)


def _times_latency(cfg: DictConfig) -> bool:
    """Whether this trial times its latency: see :func:`sweeper.measure.trial_times_latency`."""
    return trial_times_latency(
        str(cfg.measure.get("trial_latency", "auto")),
        search_reads_latency=any(m.startswith("latency") for m in trial_context.searched_metrics()),
        round_follows=_latency_round_follows(cfg),
    )


def _latency_round_follows(cfg: DictConfig) -> bool:
    """Whether this job belongs to a multirun whose report times every network side by side at the end
    (the report callback on, with rounds, and tracking on: the report reads the runs from MLflow)."""
    hydra_cfg = hydra_config()
    if hydra_cfg is None or not _is_multirun() or not cfg.tracking.get("enabled", True):
        return False
    report = (hydra_cfg.callbacks or {}).get("report")
    if report is None or not report.get("enabled", True):
        return False
    rounds = report.get("latency_rounds", 5)
    return isinstance(rounds, int) and rounds > 0


def _int8_source(plan: TrialPlan, model: nn.Module) -> nn.Module | None:
    """A copy of the float network a torch int8 method quantizes (ONNX Runtime quantizes it its own way)."""
    from sweeper.compression import Int8Quantization

    return copy.deepcopy(model) if isinstance(plan.compressor, Int8Quantization) else None


def _onnx_runtime(
    plan: TrialPlan,
    compressed: Compressed,
    deployed: nn.Module,
    float_source: nn.Module | None,
    artifact: Path,
    *,
    time_latency: bool,
) -> tuple[dict[str, float], dict[str, str]]:
    """The ``*_onnxruntime`` metrics and tags of the deployed network (``measure.runtimes`` has onnxruntime)."""
    from sweeper.runtimes import measure_onnx

    if compressed.kind == "int8" and float_source is None:  # a pipeline's int8 stage: its float input is internal
        return {}, {"onnxruntime_unavailable": "int8 from a pipeline stage: no float network to export and quantize"}
    return measure_onnx(
        deployed,
        plan.task,
        artifact.with_name(ONNX_FILE),
        int8_from=float_source if compressed.kind == "int8" else None,
        latency_seconds=float(plan.cfg.measure.latency_seconds),
        latency_batch=int(plan.cfg.measure.latency_batch),
        time_latency=time_latency,
    )


def execute(
    plan: TrialPlan, tracker: TrialRun | None, progress: TrialProgress, *, epoch_hook: EpochHook | None = None
) -> dict[str, float]:
    """Train, compress, export, reload and measure; log to ``tracker``; return the final metrics.

    ``epoch_hook`` replaces ``progress.epoch`` after each validation (a search chains its
    pruner); the tracker records the epoch first, so a pruned trial keeps its last epoch.
    """
    epoch_hooks = ([tracker.record_epoch] if tracker is not None else []) + [epoch_hook or progress.epoch]

    def after_epoch(epoch: int, metrics: dict[str, float]) -> None:
        for hook in epoch_hooks:
            hook(epoch, metrics)

    trained = train_stage(plan, epoch_hook=after_epoch)
    deployed = deploy_stage(plan, trained, _output_dir() / "model.pt")
    config_path = deployed.path.with_name("config.yaml")  # beside the artifact, tracked or not
    OmegaConf.save(plan.cfg, config_path, resolve=True)
    extra_files = [deployed.path.with_name(name) for name in deployed.compressed.files]
    onnx = deployed.path.with_name(ONNX_FILE)
    for path in extra_files:  # what the method wrote down (a sensitivity table, its plot)
        path.write_bytes(deployed.compressed.files[path.name])
    if tracker is not None:
        tags = {
            "latency_kind": deployed.compressed.latency_kind,
            "device": str(plan.device),
            **deployed.compressed.tags,
            **deployed.tags,
        }
        exported = [onnx] if "test_score_onnxruntime" in deployed.metrics else []
        tracker.log_artifacts([config_path, deployed.path, *extra_files, *exported])
        _extra(tracker, "datasets", lambda: tracker.log_datasets(plan.task, _data_source(plan.cfg)))
        if plan.cfg.tracking.get("log_model", True):
            model_id = _extra(
                tracker,
                "model",
                lambda: tracker.log_model(deployed.path, plan.task.inputs("test")[:2], deployed.module),
            )
            if model_id is not None:
                tags["model_id"] = model_id
        # the results last, in one write: a run with metrics has everything else logged
        tracker.log_results(_measured(deployed.metrics), tags=tags, params=deployed.compressed.params)
    return deployed.metrics


def _measured(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics to log: a latency the trial did not time is left out (the report's round logs it)."""
    return {k: v for k, v in metrics.items() if not (k.startswith("latency") and math.isnan(v))}


def _extra(tracker: TrialRun, what: str, log: Callable[[], T]) -> T | None:
    """Log a trial's extras (its datasets, its MLflow model); a failure there is a tag, never a failed trial."""
    try:
        return log()
    except Exception as exc:  # these only describe the trial's results, which are logged next
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        tracker.set_tags({f"{what}_not_logged": reason})
        logging.getLogger("sweeper").warning("the trial's %s were not logged to MLflow: %s", what, reason)
        return None


def _data_source(cfg: DictConfig) -> dict[str, str]:
    """Where the task's data comes from, as the datasets' source: the data config's keys."""
    data = plain_dict(cfg.data)
    return {f"data.{key}": str(value) for key, value in data.items()}


def _trial_tags(
    plan: TrialPlan, config: dict[str, Any], sweep_id: str, index: int | None, search: TrialContext | None
) -> dict[str, str]:
    """The tags a trial's MLflow run is created with: what it chose, where it belongs, whose code ran."""
    tags = {
        **source_tags(),
        **plan.choices,
        "seed": str(plan.seed),
        "score_metric": plan.task.score_metric,
        **({"baseline": plan.task.baseline} if plan.task.baseline else {}),
        "sweep_id": sweep_id,
        "trial_key": trial_key(config),
    }
    parent = parent_run_id() if sweep_id else None
    if parent:  # nested under the sweep's run in the MLflow UI
        tags["mlflow.parentRunId"] = parent
    if index is not None:
        tags["job"] = str(index - 1)
    fixed = sweep_layout.current(multirun=_is_multirun()).fixed_overrides() if sweep_id else ""
    if fixed:
        tags["fixed_overrides"] = fixed
    if search is not None:
        tags.update(search.tags())
    return tags


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one trial described by a composed config; return its final metrics.

    Raises:
        ConfigError: bad input, before any training or tracking.
        TrainingDiverged: the loss became NaN/inf (the MLflow run is marked FAILED first).
    """
    plan = plan_trial(cfg)
    torch.use_deterministic_algorithms(True, warn_only=True)
    search = trial_context.current()  # the Optuna trial this job evaluates, if any
    if search is not None:
        check_task_defines(search.metrics, plan.task.metrics, plan.task.name)
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg.threads))
    index, total = _trial_position()
    label = _run_label(plan.choices, cfg)
    if search is not None:  # named by the Optuna trial number; failed trials are replaced, so no total
        label = f"#{search.number} {label}"
    progress = TrialProgress(
        label, plan.strategy.epochs, index=None if search else index, total=total, metric=plan.task.score_metric
    )
    epoch_hook = search.epoch_hook(progress.epoch) if search is not None else None
    if not cfg.tracking.enabled:
        return _reported(progress, search, lambda: execute(plan, None, progress, epoch_hook=epoch_hook))

    config = plain_dict(cfg)
    uri, experiment = resolve_tracking_uri(cfg.tracking.uri), str(cfg.tracking.experiment)
    sweep_id = _sweep_id(cfg, search)
    tags = _trial_tags(plan, config, sweep_id, index, search)
    if search is None and sweep_id and cfg.get("resume", True):  # a study resumes itself; a grid re-run skips
        previous = finished_trial(uri, experiment, sweep_id, tags["trial_key"])
        if previous is not None:
            progress.skipped(previous[0], previous[1].get("val_score", previous[1].get("val_accuracy")))
            return previous[1]
    try:
        tracker = TrialRun(uri, experiment, run_name=label, tags=tags)
    except ConfigError:
        raise  # an unreachable or unwritable store: bad input, one line
    except Exception as exc:  # nothing is tracked yet: say it here, or the failure goes unseen
        progress.failed(f"{type(exc).__name__}: {exc} (creating its MLflow run at {uri})")
        raise

    def tracked() -> dict[str, float]:
        with tracker:  # entered at once: whatever fails from here on ends the run FAILED, never RUNNING
            if search is not None:
                search.attach_run(tracker.run_id)
            tracker.log_params(flatten(config))
            return execute(plan, tracker, progress, epoch_hook=epoch_hook)

    return _reported(progress, search, tracked)


def _reported(
    progress: TrialProgress, search: TrialContext | None, trial: Callable[[], dict[str, float]]
) -> dict[str, float]:
    """Run ``trial``; its outcome on the console (and a failure's reason on the Optuna trial)."""
    try:
        metrics = trial()
    except Exception as exc:
        if trial_context.is_pruned(exc):
            progress.pruned(str(exc))
        else:
            progress.failed(f"{type(exc).__name__}: {exc}")
            if search is not None:
                search.record_failure(f"{type(exc).__name__}: {exc}")
        raise
    progress.done(metrics)
    return metrics
