"""One trial, stage by stage: data -> model -> train -> compress -> export -> measure -> track.

`run(cfg)` is a plain function: the Hydra entry point calls it, and so do tests. Every
component is built and checked (:func:`plan_trial`) before any training, so bad input
fails in a second with a one-line :class:`~sweeper.errors.ConfigError`.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from hydra.conf import HydraConf
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sweeper import sweep_layout
from sweeper.artifact import ModelSpec, dense_payload, load_artifact, save_artifact, serialized_size
from sweeper.compression import (
    ChecksModel,
    Compressed,
    CompressionContext,
    CompressionMethod,
    TrainingHooks,
    TrainsWithHooks,
    UnsupportedLayer,
)
from sweeper.data import Task
from sweeper.errors import ConfigError
from sweeper.measure import count_params, measure_latency
from sweeper.metrics import GROUPS
from sweeper.option_knobs import apply_option_knobs
from sweeper.progress import TrialProgress
from sweeper.search import trial_context
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
from sweeper.training import Strategy, TrainResult, build_optimizers, evaluate_accuracy, train
from sweeper.training.loop import EpochHook
from sweeper.training.optimizers import OptimizerFactory

__all__ = [
    "GROUPS",
    "Deployed",
    "Trained",
    "TrialPlan",
    "deploy_stage",
    "execute",
    "group_choices",
    "plan_trial",
    "run",
    "train_stage",
]

_BUILTIN_PREFIXES = ("sweeper.", "torch.optim.")


@dataclass
class TrialPlan:
    """Every component of a trial, built and checked, nothing trained yet."""

    cfg: DictConfig
    task: Task
    model: nn.Module
    spec: ModelSpec
    optimizer_factory: OptimizerFactory
    strategy: Strategy
    compressor: CompressionMethod
    device: torch.device
    seed: int
    choices: dict[str, str]
    unsupported: UnsupportedLayer | None = None  # the compression method cannot handle this model: the trial fails

    def context(self) -> CompressionContext:
        """What the compression method may use (no training hooks yet)."""
        return CompressionContext(self.task, self.spec, self.optimizer_factory, self.strategy, self.seed, self.device)


def plain_dict(node: Any) -> dict[str, Any]:
    """A config node as a plain, resolved ``dict`` with string keys."""
    container = OmegaConf.to_container(node, resolve=True)
    if not isinstance(container, dict):
        raise TypeError(f"expected a mapping, got {type(container).__name__}")
    return {str(key): value for key, value in container.items()}


def _hydra_config() -> HydraConf | None:
    return HydraConfig.get() if HydraConfig.initialized() else None


def group_choices(cfg: DictConfig, choices: dict[str, str] | None = None) -> dict[str, str]:
    """The option chosen in each config group, as the trial's tags, labels and report name it.

    The option's name (``model=cnn``, or a user's own ``model=my_cnn`` from their config dir);
    the ``_target_`` only where a built-in option's target was replaced on the command line
    (``model._target_=my_plugins.make_cnn``), since the option's name would then be wrong.
    ``choices`` are Hydra's runtime choices of the job (default: those of the running job).
    """
    hydra_cfg = _hydra_config()
    chosen = choices if choices is not None else dict(hydra_cfg.runtime.choices) if hydra_cfg is not None else {}
    result = {}
    for group in GROUPS:
        node = cfg.get(group)
        target = str(node.get("_target_", "")) if isinstance(node, DictConfig) else ""
        is_plugin = bool(target) and not target.startswith(_BUILTIN_PREFIXES)
        option = chosen.get(group)
        replaced = is_plugin and (option is None or option in _builtin_options(group))
        result[group] = target if replaced or option is None else str(option)
    return result


@functools.cache
def _builtin_options(group: str) -> frozenset[str]:
    """The options the package ships for ``group`` (its YAML files in sweeper.conf)."""
    from importlib.resources import files

    folder = files("sweeper.conf") / group
    return frozenset(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name!r}: unknown device; allowed: auto, cpu, cuda, cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available here; allowed: auto, cpu")
    return device


def _instantiate(group: str, node: DictConfig, **runtime: Any) -> Any:
    """``instantiate`` with errors that name the group and its `_target_`."""
    target = node.get("_target_", "?")
    try:
        return instantiate(node, **runtime)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        # a nested node (a pipeline's stage) fails under its own key: name it, not the group
        nested = re.search(r"full_key: (\S+)", str(exc))
        where = nested.group(1) if nested else group
        if nested and where != group:
            target = OmegaConf.select(node, where.removeprefix(f"{group}."), default=node).get("_target_", target)
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
            key = str(cause).rsplit("'", 2)[-2]
            raise ConfigError(f"{where}.{key}: unknown key for {target}") from exc
        if isinstance(cause, ValueError | ConfigError):
            raise ConfigError(" ".join(str(cause).split()).replace(f"{group}.", f"{where}.", 1)) from exc
        raise ConfigError(f"{where}._target_={target}: {' '.join(str(cause).split())}") from exc


def _build_model(cfg: DictConfig, task: Task) -> tuple[nn.Module, ModelSpec]:
    kwargs = plain_dict(cfg.model)
    target = str(kwargs.pop("_target_", ""))
    kwargs.update(input_shape=list(task.input_shape), num_classes=task.num_classes)
    model = _instantiate("model", cfg.model, input_shape=list(task.input_shape), num_classes=task.num_classes)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model._target_={target}: returned {type(model).__name__}, expected a torch.nn.Module")
    with torch.no_grad():
        out = model(task.x_train[:2])
    if tuple(out.shape) != (2, task.num_classes):
        raise ConfigError(
            f"model._target_={target}: output shape {tuple(out.shape)} for a batch of 2; expected (2, {task.num_classes})"
        )
    return model, ModelSpec(target=target, kwargs=kwargs)


_BASELINE_TARGET = "sweeper.compression.NoCompression"
EQUAL_BUDGET_ENV = "SWEEPER_EQUAL_BUDGET_EPOCHS"  # set by a grid's check for compare.extra_epochs=auto


def _equal_budget(cfg: DictConfig, strategy: Strategy) -> Strategy:
    """``compare.equal_budget=true``: the uncompressed baseline trains ``compare.extra_epochs`` epochs more.

    Compressed configurations fine-tune after training; the baseline then gets as many epochs
    in all, so a difference is the method's, not the extra training's. ``extra_epochs: auto``
    takes the most fine-tuning epochs among the compressed jobs of the grid, which the grid's
    check (:mod:`sweeper.preflight`) hands over in ``$SWEEPER_EQUAL_BUDGET_EPOCHS``. Other
    trials are unchanged.

    Raises:
        ConfigError: ``compare.equal_budget=true`` without a usable ``compare.extra_epochs``.
    """
    compare = cfg.get("compare")
    if compare is None or compare.get("equal_budget") is not True:
        return strategy
    extra = compare.get("extra_epochs", "auto")
    if extra == "auto":
        found = os.environ.get(EQUAL_BUDGET_ENV)
        if found is None:
            raise ConfigError(
                "compare.extra_epochs=auto: known only in a grid multirun with compressed jobs "
                "(e.g. -m compression=none,prune); elsewhere set compare.extra_epochs=N"
            )
        extra = int(found)
    if not (isinstance(extra, int) and not isinstance(extra, bool) and extra >= 0):
        raise ConfigError(
            f"compare.extra_epochs={extra!r}: allowed: auto or an integer >= 0, the fine-tuning epochs "
            "of the longest compressed configuration (e.g. 5 for compression=prune)"
        )
    if cfg.compression.get("_target_") != _BASELINE_TARGET:
        return strategy
    return replace(strategy, epochs=strategy.epochs + extra)


def finetune_epochs(node: Any) -> int:
    """All ``finetune_epochs`` of a compression config (a pipeline's stages summed): its training after training.

    Example:
        >>> finetune_epochs({"stages": {"prune": {"finetune_epochs": 5}, "qat": {"finetune_epochs": 3}}})
        8
    """
    if isinstance(node, dict | DictConfig):
        return sum(int(v) if k == "finetune_epochs" else finetune_epochs(v) for k, v in node.items())
    return 0


def plan_trial(cfg: DictConfig, *, choices: dict[str, str] | None = None) -> TrialPlan:
    """Build and check every component of the trial described by ``cfg``; train nothing.

    ``choices`` are Hydra's runtime choices of the job (default: the running job's). A
    compression method that cannot handle the model leaves ``unsupported`` set (the trial
    will fail; a sweep goes on).

    Raises:
        ConfigError: a value, key or plug-in is wrong (the message names it).
    """
    hydra_cfg = _hydra_config()
    raw_choices = choices if choices is not None else dict(hydra_cfg.runtime.choices) if hydra_cfg is not None else {}
    apply_option_knobs(cfg, raw_choices, GROUPS)  # +options.<group>.<option>.<key>=value
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r}: must be an integer >= 0")
    seed = int(cfg.seed)
    if not cfg.measure.latency_seconds > 0 or not int(cfg.measure.latency_batch) >= 1:
        raise ConfigError(
            f"measure.latency_seconds={cfg.measure.latency_seconds}, measure.latency_batch="
            f"{cfg.measure.latency_batch}: need seconds > 0 and batch >= 1"
        )
    device = _resolve_device(str(cfg.device))
    threads = cfg.get("threads")
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"threads={threads!r}: must be an integer >= 1 or null (torch's default)")
    try:
        strategy = Strategy.from_dict(plain_dict(cfg.strategy))
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from exc
    strategy = _equal_budget(cfg, strategy)
    lr = cfg.optimizer.get("lr")
    if lr is not None and not (isinstance(lr, int | float) and lr > 0):
        raise ConfigError(f"optimizer.lr={lr}: must be a number > 0")
    is_gd = cfg.optimizer.get("_target_") == "torch.optim.SGD" and group_choices(cfg, choices)["optimizer"] == "gd"
    if is_gd and strategy.batch_size != "full":
        raise ConfigError(f"strategy.batch_size={strategy.batch_size}: optimizer=gd needs 'full'")

    task = _instantiate("data", cfg.data, seed=seed)
    if not isinstance(task, Task):
        raise ConfigError(
            f"data._target_={cfg.data.get('_target_')}: returned {type(task).__name__}, expected sweeper.data.Task"
        )
    torch.manual_seed(seed)  # the initialisation of the weights derives from the seed
    model, spec = _build_model(cfg, task)
    optimizer_factory = _instantiate("optimizer", cfg.optimizer)
    try:  # torch checks its own hyper-parameters when an optimizer is built
        build_optimizers(optimizer_factory, model)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"optimizer: {exc}") from exc
    compressor = _instantiate("compression", cfg.compression)
    if not isinstance(compressor, CompressionMethod):
        raise ConfigError(f"compression._target_={cfg.compression.get('_target_')}: has no compress(model, ctx) method")
    plan = TrialPlan(
        cfg, task, model, spec, optimizer_factory, strategy, compressor, device, seed, group_choices(cfg, choices)
    )
    if isinstance(compressor, ChecksModel):  # checks that need the model (layer widths, class counts), before training
        try:
            compressor.check(model, plan.context())
        except UnsupportedLayer as exc:  # this model, not the input, is the problem: the trial fails, a sweep goes on
            plan.unsupported = exc
        except ValueError as exc:
            raise ConfigError(" ".join(str(exc).split())) from exc
    return plan


def _output_dir() -> Path:
    hydra_cfg = _hydra_config()
    if hydra_cfg is not None:
        return Path(hydra_cfg.runtime.output_dir)
    return Path(tempfile.mkdtemp(prefix="sweeper-"))


def _sweep_id(cfg: DictConfig, search: TrialContext | None) -> str:
    if cfg.tracking.get("sweep_id"):
        return str(cfg.tracking.sweep_id)
    if search is not None:  # an Optuna study groups its trials across resumed runs
        return search.study_name
    hydra_cfg = _hydra_config()
    if hydra_cfg is not None and _is_multirun():
        return str(hydra_cfg.sweep.dir)
    return ""


def _is_multirun() -> bool:
    hydra_cfg = _hydra_config()
    return hydra_cfg is not None and str(hydra_cfg.mode) == "RunMode.MULTIRUN"


def _trial_position() -> tuple[int | None, int | None]:
    """(1-based index of this job in the multirun, number of jobs) where Hydra tells them."""
    hydra_cfg = _hydra_config()
    if hydra_cfg is None or not _is_multirun():
        return None, None
    return int(hydra_cfg.job.num) + 1, sweep_layout.current(multirun=True).size


def _run_label(choices: dict[str, str], cfg: DictConfig) -> str:
    """Run name from what varies: the swept overrides of a multirun, else the task's overrides."""
    hydra_cfg = _hydra_config()
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


def deploy_stage(plan: TrialPlan, trained: Trained, artifact_path: Path) -> Deployed:
    """Compress the trained model, write the artifact, reload it and measure the reloaded module."""
    cfg, task, result = plan.cfg, plan.task, trained.result
    model = plan.model.cpu().eval()
    dense_bytes = serialized_size("dense", plan.spec, dense_payload(model))  # the fp32 baseline

    start = time.perf_counter()
    compressed = plan.compressor.compress(model, replace(plan.context(), hooks=trained.hooks))
    compress_seconds = time.perf_counter() - start
    size_bytes = save_artifact(artifact_path, compressed.kind, compressed.spec or plan.spec, compressed.payload)

    deployed = load_artifact(artifact_path)  # every number below is of the reloaded artifact
    params, nonzero = count_params(deployed)
    batch = min(int(cfg.measure.latency_batch), len(task.x_test))
    seconds = float(cfg.measure.latency_seconds)
    latency = measure_latency(deployed, task.x_test[:1], min_run_time=seconds)
    latency_batch = measure_latency(deployed, task.x_test[:batch], min_run_time=seconds)
    metrics: dict[str, float] = {
        "test_accuracy": evaluate_accuracy(deployed, task.x_test, task.y_test),
        "val_accuracy": evaluate_accuracy(deployed, task.x_val, task.y_val),
        "best_val_accuracy": result.best_val_accuracy,
        "size_bytes": size_bytes,
        "compression_ratio": dense_bytes / size_bytes,
        "latency_ms": latency.median_ms,
        "latency_iqr_ms": latency.iqr_ms,
        "latency_ms_batch": latency_batch.median_ms,
        "params": params,
        "nonzero_params": nonzero,
        "train_seconds": result.train_seconds,
        "compress_seconds": compress_seconds,
        "epochs_run": result.epochs_run,
        "steps": result.steps,
        "train_samples": len(task.x_train),  # after the validation carve
        "val_samples": len(task.x_val),
        "test_samples": len(task.x_test),
        **(trained.hooks.metrics if trained.hooks else {}),
        **compressed.metrics,
    }
    return Deployed(compressed, artifact_path, deployed, metrics)


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
    if tracker is not None:
        tags = {
            "latency_kind": deployed.compressed.latency_kind,
            "device": str(plan.device),
            **deployed.compressed.tags,
        }
        tracker.set_tags(tags)
        tracker.log_results(deployed.metrics)
        config_path = deployed.path.with_name("config.yaml")
        OmegaConf.save(plan.cfg, config_path, resolve=True)
        tracker.log_artifacts([config_path, deployed.path])
        tracker.log_datasets(plan.task, _data_source(plan.cfg))
        if plan.cfg.tracking.get("log_model", True):
            tracker.log_model(deployed.path, plan.task.x_test[:2], deployed.module)
    return deployed.metrics


def _data_source(cfg: DictConfig) -> dict[str, str]:
    """Where the task's data comes from, as the datasets' source: the data config's keys."""
    data = plain_dict(cfg.data)
    return {f"data.{key}": str(value) for key, value in data.items()}


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one trial described by a composed config; return its final metrics.

    Raises:
        ConfigError: bad input, before any training or tracking.
        TrainingDiverged: the loss became NaN/inf (the MLflow run is marked FAILED first).
    """
    plan = plan_trial(cfg)
    torch.use_deterministic_algorithms(True, warn_only=True)
    search = trial_context.current()  # the Optuna trial this job evaluates, if any
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg.threads))
    index, total = _trial_position()
    label = _run_label(plan.choices, cfg)
    if search is not None:  # named by the Optuna trial number; failed trials are replaced, so no total
        label = f"#{search.number} {label}"
    progress = TrialProgress(label, plan.strategy.epochs, index=None if search else index, total=total)
    epoch_hook = search.epoch_hook(progress.epoch) if search is not None else None
    tracker = None
    if cfg.tracking.enabled:
        config = plain_dict(cfg)
        uri, experiment = resolve_tracking_uri(cfg.tracking.uri), str(cfg.tracking.experiment)
        sweep_id = _sweep_id(cfg, search)
        tags = {
            **source_tags(),
            **plan.choices,
            "seed": str(plan.seed),
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
        elif sweep_id and cfg.get("resume", True):  # a study resumes itself; a grid re-run skips what finished
            previous = finished_trial(uri, experiment, sweep_id, tags["trial_key"])
            if previous is not None:
                progress.skipped(previous[0], previous[1].get("val_accuracy"))
                return previous[1]
        try:
            tracker = TrialRun(uri, experiment, run_name=label, tags=tags)
        except ConfigError:
            raise  # an unreachable or unwritable store: bad input, one line
        except Exception as exc:  # nothing is tracked yet: say it here, or the failure goes unseen
            progress.failed(f"{type(exc).__name__}: {exc} (creating its MLflow run at {uri})")
            raise
        if search is not None:
            search.attach_run(tracker.run_id)
    try:
        if tracker is None:
            metrics = execute(plan, None, progress, epoch_hook=epoch_hook)
        else:
            with tracker:
                tracker.log_params(flatten(config))
                metrics = execute(plan, tracker, progress, epoch_hook=epoch_hook)
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
