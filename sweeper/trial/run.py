"""One trial, stage by stage: data -> model -> train -> compress -> export -> measure -> track.

``run(cfg, ctx)`` is a plain function of the composed config and the job's context
(:class:`~sweeper.trial.context.JobContext`): the Hydra entry point calls it, and so do tests and
notebooks. It plans the trial (:func:`sweeper.trial.plan.plan_trial`: every component built and
checked, so bad input fails in a second), then calls the stages: :func:`train_stage`,
:func:`deploy_stage` (compress, write the artifact, reload it, :func:`sweeper.trial.measure.measure_artifact`)
and the tracking of both, and returns what it made (:class:`TrialResult`).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sweeper.artifact import dense_payload, load_artifact, save_artifact, serialized_size
from sweeper.compression import Compressed, TrainingHooks, TrainsWithHooks, facts_of
from sweeper.configs import flatten, plain_dict
from sweeper.errors import ConfigError, ResultsNotLogged
from sweeper.hf import local_path
from sweeper.metrics import check_final_metrics
from sweeper.progress import TrialProgress
from sweeper.search.objectives import check_directions, check_task_defines
from sweeper.search.trial_context import TrialContext, is_pruned, open_trial
from sweeper.tasks.baselines import baseline_scores
from sweeper.tracking.names import trial_run_name
from sweeper.tracking.runs import TrialRun, finished_trial, resolve_tracking_uri, source_tags, trial_key
from sweeper.tracking.upload import keep_unlogged
from sweeper.training import TrainResult
from sweeper.training.loop import EpochHook
from sweeper.trial.base import Origin, obtain_base, train_network
from sweeper.trial.checkpoint import checkpoint_digest
from sweeper.trial.context import JobContext
from sweeper.trial.measure import measure_artifact, trial_times_latency, untouched_recurrent
from sweeper.trial.plan import TrialPlan, plan_trial
from sweeper.trial.runtimes import ONNX_FILE

__all__ = ["Deployed", "Trained", "TrialResult", "deploy_stage", "execute", "run", "train_stage"]

T = TypeVar("T")


@dataclass
class Trained:
    """What the training stage hands to the deployment stage.

    ``result`` is the training of the network (for a reused base: its base's); ``origin`` says where the
    network came from (``trained`` here, ``reused`` from another trial, ``checkpoint`` loaded as is);
    ``seconds`` what this trial spent on it.
    """

    result: TrainResult
    hooks: TrainingHooks | None = None  # the compression method's changes to training, if any
    origin: Origin = "trained"
    seconds: float | None = None  # None: the training's own time
    trained_by: str | None = None  # a reused base: the MLflow run that trained it


def train_stage(
    plan: TrialPlan,
    *,
    epoch_hook: EpochHook | None = None,
    base_cache: str | Path | None = None,
    run_id: str | None = None,
) -> Trained:
    """Train the plan's model in place, or take its base network from ``base_cache`` (:mod:`sweeper.trial.base`).

    A method that changes the main training run (its facts: ``in-training``) trains its own network with
    its training hooks; every other method starts from the base network of its data, model and training,
    trained once per cache (``base_cache=None``: trained here). ``run_id``: this trial's MLflow run, named
    by the trials that reuse what it trains.
    """
    if plan.unsupported is not None:
        raise plan.unsupported
    if facts_of(plan.compressor).training == "in-training" or isinstance(plan.compressor, TrainsWithHooks):
        hooks = plan.compressor.training_hooks(plan.context()) if isinstance(plan.compressor, TrainsWithHooks) else None
        result = train_network(plan, epoch_hook, hooks)
        origin: Origin = "checkpoint" if plan.checkpoint is not None and plan.strategy.epochs == 0 else "trained"
        return Trained(result, hooks, origin)
    base = obtain_base(plan, cache_dir=base_cache, run_id=run_id, epoch_hook=epoch_hook)
    return Trained(base.result, None, base.origin, base.seconds, base.trained_by)


@dataclass
class Deployed:
    """The deployment stage's outcome: the artifact on disk and every number measured on it reloaded."""

    compressed: Compressed  # the in-memory result of the compression method
    path: Path
    module: nn.Module  # the artifact reloaded from ``path``: what was measured
    metrics: dict[str, float]
    tags: dict[str, str]  # how it was measured (``latency_measured``: estimate, reused estimate, not timed)


def deploy_stage(plan: TrialPlan, trained: Trained, artifact_path: Path, *, time_latency: bool = True) -> Deployed:
    """Compress the trained model, write the artifact, reload it and measure the reloaded module.

    ``time_latency=False``: the latencies are left NaN, for the report's end-of-sweep round to time
    (:func:`sweeper.trial.measure.trial_times_latency` decides). ``measure.release_network=true``: the
    trained and compressed network is given up once its artifact is written (its tensors go to the meta
    device, the payload is dropped) and ``compressed.module`` is the reloaded artifact, so a large network is
    not held twice while it is measured.
    """
    cfg, task, result = plan.cfg, plan.task, trained.result
    model = plan.model.cpu().eval()
    dense_bytes = serialized_size("dense", plan.spec, dense_payload(model, copy=False))  # the fp32 baseline

    runtimes = list(cfg.measure.get("runtimes", ["torch"]))
    float_source = _float_source(plan, model) if "onnxruntime" in runtimes else None
    start = time.perf_counter()
    compressed = plan.compressor.compress(model, replace(plan.context(), hooks=trained.hooks))
    compress_seconds = time.perf_counter() - start
    size_bytes = save_artifact(artifact_path, compressed.kind, compressed.spec or plan.spec, compressed.payload)
    release = bool(cfg.measure.get("release_network", False))
    if release:
        _release(compressed, model)

    deployed = load_artifact(artifact_path)  # every number below is of the reloaded artifact
    if release:
        compressed.module = deployed  # what the in-memory network computed, as the artifact (checked by the tests)
    spec = compressed.spec or plan.spec
    network = f"{spec.target}|{sorted(spec.kwargs.items())}|{spec.resized}|{compressed.kind}|{size_bytes}|{plan.device}"
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
        "train_seconds": trained.seconds if trained.seconds is not None else result.train_seconds,  # this trial's
        "base_train_seconds": result.train_seconds,  # what training its network cost, once
        "compress_seconds": compress_seconds,
        "epochs_run": result.epochs_run,
        "epochs_planned": plan.strategy.epochs,  # with compare.equal_budget, the baseline's extra epochs included
        "steps": result.steps,
        **(trained.hooks.metrics if trained.hooks else {}),
        **compressed.metrics,
        **baseline_scores(task),
    }
    tags = {"latency_measured": how, "base_model": trained.origin}
    if facts_of(plan.compressor).family in ("pruning", "quantization"):  # what such a method left alone, said
        share, kinds = untouched_recurrent(deployed)
        metrics["uncompressed_share"] = share
        if kinds:
            tags["uncompressed_layers"] = ",".join(kinds)
            logging.getLogger("sweeper").warning(
                "compression=%s left %.0f %% of the network's weights uncompressed (%s layers: no method here "
                "compresses recurrent weights)",
                plan.choices.get("compression"),
                100 * share,
                ", ".join(kinds),
            )
    if trained.trained_by:
        tags["base_run_id"] = trained.trained_by
    if "onnxruntime" in runtimes:
        onnx_metrics, onnx_tags = _onnx_runtime(
            plan, compressed, deployed, float_source, artifact_path, time_latency=time_latency
        )
        metrics.update(onnx_metrics)
        tags.update(onnx_tags)
    check_final_metrics(metrics)
    return Deployed(compressed, artifact_path, deployed, metrics, tags)


def _release(compressed: Compressed, model: nn.Module) -> None:
    """Give up the trained and compressed network's tensors (moved to the meta device: shapes without memory)
    and the artifact's payload, once the artifact is written."""
    compressed.payload = {}
    for network in {id(m): m for m in (model, compressed.module)}.values():
        network.to("meta")
    _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand memory freed by the process back to the system (glibc keeps freed heap pages; the compression's many
    layer-sized temporaries leave hundreds of MB there); nothing elsewhere."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        trim = None
    if trim is not None:
        trim(0)


def _times_latency(cfg: DictConfig, ctx: JobContext) -> bool:
    """Whether this trial times its latency: see :func:`sweeper.trial.measure.trial_times_latency`."""
    return trial_times_latency(
        str(cfg.measure.get("trial_latency", "auto")),
        search_reads_latency=any(m.startswith("latency") for m in ctx.searched_metrics),
        round_follows=ctx.latency_round_follows,
    )


def _float_source(plan: TrialPlan, model: nn.Module) -> nn.Module | None:
    """A copy of the float network a method starts from, when its artifact has no ONNX form of its own
    (torch's int8 modules): ONNX Runtime quantizes that network its own way."""
    return copy.deepcopy(model) if facts_of(plan.compressor).float_source else None


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
    from sweeper.trial.runtimes import measure_onnx

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
    plan: TrialPlan,
    tracker: TrialRun | None,
    progress: TrialProgress,
    ctx: JobContext,
    *,
    epoch_hook: EpochHook | None = None,
) -> tuple[Trained, Deployed]:
    """Train, compress, export, reload and measure; log to ``tracker``; return the two stages' outcomes.

    ``epoch_hook`` replaces ``progress.epoch`` after each validation (a search chains its
    pruner); the tracker records the epoch first, so a pruned trial keeps its last epoch.
    """
    epoch_hooks = ([tracker.record_epoch] if tracker is not None else []) + [epoch_hook or progress.epoch]

    def after_epoch(epoch: int, metrics: dict[str, float]) -> None:
        for hook in epoch_hooks:
            hook(epoch, metrics)

    base = plan.cfg.get("base") or {}
    base_cache = base.get("cache_dir") if base.get("reuse", True) else None
    trained = train_stage(
        plan, epoch_hook=after_epoch, base_cache=base_cache, run_id=tracker.run_id if tracker is not None else None
    )
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    deployed = deploy_stage(plan, trained, ctx.output_dir / "model.pt", time_latency=_times_latency(plan.cfg, ctx))
    config_path = deployed.path.with_name("config.yaml")  # beside the artifact, tracked or not
    OmegaConf.save(plan.cfg, config_path, resolve=True)
    tables = [deployed.path.with_name(f"{name}.csv") for name in deployed.compressed.tables]
    for path in tables:  # what the method measured on the way (a sensitivity table): data, drawn by the report
        deployed.compressed.tables[path.stem].to_csv(path, index=False)
    if tracker is not None:
        _log_results(tracker, plan, deployed, [config_path, deployed.path, *tables, *_exported_onnx(deployed)], ctx)
    return trained, deployed


def _exported_onnx(deployed: Deployed) -> list[Path]:
    """The ONNX export beside the artifact, if the trial measured it."""
    return [deployed.path.with_name(ONNX_FILE)] if "test_score_onnxruntime" in deployed.metrics else []


def _log_results(tracker: TrialRun, plan: TrialPlan, deployed: Deployed, files: list[Path], ctx: JobContext) -> None:
    """The trial's files, extras and results to its run; if the store does not take them, kept on disk.

    Raises:
        ResultsNotLogged: the write failed; the message names the directory and the command that logs it later.
    """
    tags = {
        "latency_kind": deployed.compressed.latency_kind,
        "device": str(plan.device),
        **deployed.compressed.tags,
        **deployed.tags,
    }
    final = _measured(deployed.metrics)
    try:
        tracker.log_artifacts(files)
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
        tracker.log_results(final, tags=tags, params=deployed.compressed.params)
    except Exception as exc:
        where = ctx.output_dir.resolve()
        keep_unlogged(where, tracker, files=files, final=final, tags=tags, params=deployed.compressed.params)
        raise ResultsNotLogged(
            f"the tracking store did not take the results ({type(exc).__name__}: {' '.join(str(exc).split())[:300]});"
            f" kept in {where}: log them later with python -m sweeper.tracking.upload {where}"
        ) from exc


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
    plan: TrialPlan, config: dict[str, Any], ctx: JobContext, search: TrialContext | None
) -> dict[str, str]:
    """The tags a trial's MLflow run is created with: what it chose, where it belongs, whose code ran."""
    tags = {
        **source_tags(),
        **plan.choices,
        "family": facts_of(plan.compressor).family,
        "seed": str(plan.seed),
        "score_metric": plan.task.score_metric,
        "score_direction": "maximize" if plan.task.higher_is_better else "minimize",
        **({"baseline": plan.task.baseline} if plan.task.baseline else {}),
        "sweep_id": ctx.sweep_id,
        "trial_key": trial_key(config),
    }
    if plan.checkpoint is not None:  # where the weights came from
        tags["checkpoint"] = str(local_path(plan.checkpoint).resolve())
        tags["checkpoint_sha256"] = checkpoint_digest(tags["checkpoint"])
    if ctx.parent_run_id:  # nested under the sweep's run in the MLflow UI
        tags["mlflow.parentRunId"] = ctx.parent_run_id
    if ctx.index is not None:
        tags["job"] = str(ctx.index - 1)
    if ctx.fixed_overrides():
        tags["fixed_overrides"] = ctx.fixed_overrides()
    if search is not None:
        tags.update(search.tags())
    return tags


@dataclass
class TrialResult:
    """What a trial made: its plan, the trained network, the deployed artifact, and its numbers.

    ``trained`` and ``deployed`` are None for a trial skipped because it had finished in this sweep
    before (``metrics`` are then that run's, from MLflow).
    """

    plan: TrialPlan
    metrics: dict[str, float]
    trained: Trained | None = None
    deployed: Deployed | None = None
    run_id: str | None = None  # its MLflow run (None: tracking off)
    tags: dict[str, str] = field(default_factory=dict)  # the run's tags at creation (tracking on)


def run(cfg: DictConfig, ctx: JobContext | None = None) -> TrialResult:
    """Run one trial described by a composed config in the job's context; return what it made.

    ``ctx``: the job's context (:func:`sweeper.trial.context.job_context` at the entry point); without
    one, a single run in a scratch output directory.

    Raises:
        ConfigError: bad input, before any training or tracking.
        TrainingDiverged: the loss became NaN/inf (the MLflow run is marked FAILED first).
    """
    ctx = ctx or JobContext.standalone()
    plan = plan_trial(cfg, choices=ctx.choices, extra_epochs=ctx.equal_budget_epochs)
    torch.use_deterministic_algorithms(True, warn_only=True)
    ref = ctx.search
    search = None
    if ref is not None:  # the Optuna trial this job evaluates
        check_task_defines(ref.metrics, plan.task.metrics, plan.task.name)
        check_directions(ref.directions, plan.task.metrics, plan.task.name)
        search = open_trial(
            ref.study_name,
            ref.storage,
            ref.number,
            metrics=ref.metrics,
            pruner=ref.pruner,
            pruner_options=ref.pruner_options,
        )
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg.threads))
    choices = plan.choices
    label = ctx.run_label(
        f"{choices['model']}-{choices['optimizer']}-{choices['strategy']}-{choices['compression']}-seed{cfg.seed}"
    )
    if search is not None:  # named by the Optuna trial number; failed trials are replaced, so no total
        label = f"#{search.number} {label}"
    progress = TrialProgress(
        label,
        plan.strategy.epochs,
        index=None if search else ctx.index,
        total=ctx.total,
        metric=plan.task.score_metric,
        live=ctx.live_progress,
        sweep_started=ctx.sweep_started,
        higher_is_better=plan.task.higher_is_better,
    )
    epoch_hook = search.epoch_hook(progress.epoch) if search is not None else None
    if not cfg.tracking.enabled:

        def untracked() -> TrialResult:
            trained, deployed = execute(plan, None, progress, ctx, epoch_hook=epoch_hook)
            return TrialResult(plan, deployed.metrics, trained, deployed)

        return _reported(progress, search, untracked)

    config = plain_dict(cfg)
    uri, experiment = resolve_tracking_uri(cfg.tracking.uri), str(cfg.tracking.experiment)
    try:
        tags = _trial_tags(plan, config, ctx, search)
    except Exception as exc:  # nothing is tracked yet: say it here, or the failure goes unseen
        progress.failed(f"{type(exc).__name__}: {exc}")
        raise
    if search is None and ctx.sweep_id and cfg.get("resume", True):  # a study resumes itself; a grid re-run skips
        previous = finished_trial(uri, experiment, ctx.sweep_id, tags["trial_key"])
        if previous is not None:
            progress.skipped(previous[0], previous[1].get("val_score", previous[1].get("val_accuracy")))
            return TrialResult(plan, previous[1], run_id=previous[0], tags=tags)
    try:
        tracker = TrialRun(uri, experiment, run_name=trial_run_name(label), tags=tags)
    except ConfigError:
        raise  # an unreachable or unwritable store: bad input, one line
    except Exception as exc:  # nothing is tracked yet: say it here, or the failure goes unseen
        progress.failed(f"{type(exc).__name__}: {exc} (creating its MLflow run at {uri})")
        raise

    def tracked() -> TrialResult:
        with tracker:  # entered at once: whatever fails from here on ends the run FAILED, never RUNNING
            if search is not None:
                search.attach_run(tracker.run_id)
            tracker.log_params(flatten(config))
            trained, deployed = execute(plan, tracker, progress, ctx, epoch_hook=epoch_hook)
            return TrialResult(plan, deployed.metrics, trained, deployed, tracker.run_id, tags)

    return _reported(progress, search, tracked)


def _reported(progress: TrialProgress, search: TrialContext | None, trial: Callable[[], TrialResult]) -> TrialResult:
    """Run ``trial``; its outcome on the console (and a failure's reason on the Optuna trial)."""
    try:
        result = trial()
    except Exception as exc:
        if is_pruned(exc):
            progress.pruned(str(exc))
        else:
            progress.failed(f"{type(exc).__name__}: {exc}")
            if search is not None:
                search.record_failure(f"{type(exc).__name__}: {exc}")
        raise
    progress.done(result.metrics)
    return result
