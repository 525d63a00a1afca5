"""Planning a trial: every component built and checked from the composed config, nothing trained.

:func:`plan_trial` instantiates the data, the model, the optimizer and the compression method
and checks what each can check before training (a grid's check, :mod:`sweeper.sweep.preflight`, plans
every job this way), so bad input fails in a second with a one-line
:class:`~sweeper.errors.ConfigError`. :func:`group_choices` names the option of each group.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sweeper.artifact import ModelSpec
from sweeper.compression import (
    ChecksModel,
    CompressionContext,
    CompressionMethod,
    MethodFacts,
    TrainsWithHooks,
    UnsupportedLayer,
    facts_of,
)
from sweeper.configs import plain_dict
from sweeper.data import Task
from sweeper.errors import ConfigError
from sweeper.metrics import GROUPS
from sweeper.training import Strategy, build_optimizers
from sweeper.training.optimizers import OptimizerFactory
from sweeper.trial.checkpoint import load_checkpoint
from sweeper.trial.knobs import apply_option_knobs
from sweeper.trial.measure import TRIAL_LATENCY
from sweeper.trial.runtimes import check_runtimes

__all__ = ["TrialPlan", "compression_options", "finetune_epochs", "group_choices", "plan_trial"]

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
    checkpoint: str | None = None  # model.checkpoint: the weights the network starts from
    nproc: int = 1  # processes training the network data-parallel (sweeper.trial.parallel)

    def context(self) -> CompressionContext:
        """What the compression method may use (no training hooks yet)."""
        return CompressionContext(self.task, self.spec, self.optimizer_factory, self.strategy, self.seed, self.device)


def group_choices(cfg: DictConfig, choices: Mapping[str, str] | None = None) -> dict[str, str]:
    """The option chosen in each config group, as the trial's tags, labels and report name it.

    The option's name (``model=cnn``, or a user's own ``model=my_cnn`` from their config dir);
    the ``_target_`` only where a built-in option's target was replaced on the command line
    (``model._target_=my_plugins.make_cnn``), since the option's name would then be wrong.
    ``choices`` are Hydra's runtime choices of the job (:attr:`sweeper.trial.context.JobContext.choices`).
    """
    chosen = dict(choices or {})
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


def compression_options(config_dir: str | Path | None = None) -> dict[str, MethodFacts]:
    """Every ``compression`` option, the package's and those of a user's ``config_dir``, with the facts its
    method declares (read from the option's ``_target_``; nothing is built).

    Example:
        >>> options = compression_options()
        >>> options["none"].family, options["prune"].family, options["prune_gradual"].training
        ('baseline', 'pruning', 'in-training')
    """
    from importlib.resources import files

    import yaml
    from hydra.utils import get_class

    folders: list[Any] = [files("sweeper.conf") / "compression"]
    if config_dir is not None and (Path(config_dir) / "compression").is_dir():
        folders.append(Path(config_dir) / "compression")
    found: dict[str, MethodFacts] = {}
    for folder in folders:
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if path.name.endswith(".yaml"):
                target = (yaml.safe_load(path.read_text()) or {}).get("_target_")
                found[path.name.removesuffix(".yaml")] = facts_of(get_class(target)) if target else facts_of(None)
    return dict(sorted(found.items()))


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


def _check_precision(strategy: Strategy, device: torch.device) -> None:
    """Mixed precision only where autocast runs it (bf16 on a CUDA device that has it)."""
    dtype, precision = strategy.autocast_dtype, strategy.precision
    if dtype is None:
        return
    if not torch.amp.is_autocast_available(device.type):
        raise ConfigError(f"strategy.precision={precision}: autocast does not run on {device}; allowed: 32")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"strategy.precision=bf16: {torch.cuda.get_device_name(device)} has no bf16; allowed: 32, fp16"
        )


def _probe_autocast(model: nn.Module, task: Task, strategy: Strategy, device: torch.device) -> None:
    """Mixed precision: the model's forward on two training samples under autocast, before any training (some
    kernels have no such variant on some devices: an LSTM in bf16 on a CPU without bf16 instructions)."""
    dtype = strategy.autocast_dtype
    if dtype is None or strategy.epochs == 0:
        return
    was_training = model.training
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype):
            model.eval().to(device)(task.x_train[:2].to(device))
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"strategy.precision={strategy.precision}: the model's forward fails under autocast on {device} "
            f"({reason}); allowed here: 32"
        ) from exc
    finally:
        model.train(was_training)


def _check_nproc(nproc: Any, device: torch.device) -> int:
    """Data-parallel processes: at most one per GPU, or per CPU core this process may use."""
    import os

    available = torch.cuda.device_count() if device.type == "cuda" else len(os.sched_getaffinity(0))
    unit = "CUDA devices" if device.type == "cuda" else "CPU cores"
    if not (isinstance(nproc, int) and not isinstance(nproc, bool) and 1 <= nproc <= available):
        raise ConfigError(f"nproc={nproc!r}: must be an integer in [1, {available}] ({available} {unit} here)")
    return nproc


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


def _takes_checkpoint(target: str) -> bool:
    """Whether the model's builder loads ``checkpoint`` itself (a Hugging Face directory: its architecture too)."""
    from hydra.utils import get_object

    try:
        return "checkpoint" in inspect.signature(get_object(target)).parameters
    except (ImportError, AttributeError, TypeError, ValueError):  # reported when it is instantiated
        return False


def _build_model(cfg: DictConfig, task: Task, option: str) -> tuple[nn.Module, ModelSpec, str | None]:
    """The network of ``model`` sized for the task, with ``model.checkpoint``'s weights; the spec that rebuilds
    it from its artifact; the checkpoint."""
    kwargs = plain_dict(cfg.model)
    checkpoint = kwargs.pop("checkpoint", None)
    target = str(kwargs.get("_target_", ""))
    if checkpoint is not None and _takes_checkpoint(target):
        kwargs["checkpoint"] = checkpoint  # the builder loads it (and rebuilds from it when the artifact loads)
    runtime = {"input_shape": list(task.input_shape), "num_classes": task.num_classes}
    model = _instantiate("model", OmegaConf.create(kwargs), **runtime)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model._target_={target}: returned {type(model).__name__}, expected a torch.nn.Module")
    if checkpoint is not None and "checkpoint" not in kwargs:
        load_checkpoint(model, checkpoint, option=f"model={option}")
    _check_outputs(model, task, target)
    kwargs.pop("_target_")
    return model, ModelSpec(target=target, kwargs={**kwargs, **runtime}), checkpoint


def _check_outputs(model: nn.Module, task: Task, target: str) -> None:
    """Logits of shape ``(batch, num_classes)``; token ids within the model's embeddings (the sample holding
    the largest id is run too: a checkpoint's vocabulary must be the data's)."""
    rows = [0, 1]
    x = task.x_train
    if not x.is_floating_point():
        rows.append(int(x.reshape(len(x), -1).max(dim=1).values.argmax()))
    was_training = model.training
    try:
        with torch.no_grad():  # in eval mode: a forward in training mode would move BatchNorm's running statistics
            out = model.eval()(x[rows])
    except IndexError as exc:
        raise ConfigError(
            f"model._target_={target}: the data's token ids reach {int(x.max())}, outside the model's "
            f"embedding ({exc}); the model's vocabulary (or the checkpoint's tokenizer) must be the data's"
        ) from exc
    finally:
        model.train(was_training)
    expected = (len(rows), *task.input_shape, task.num_classes) if task.sequence else (len(rows), task.num_classes)
    if tuple(out.shape) != expected:
        raise ConfigError(
            f"model._target_={target}: output shape {tuple(out.shape)} for a batch of {len(rows)}; expected {expected}"
        )


_BASELINE_TARGET = "sweeper.compression.NoCompression"


def _equal_budget(cfg: DictConfig, strategy: Strategy, grid_extra: int | None) -> Strategy:
    """``compare.equal_budget=true``: the uncompressed baseline trains ``compare.extra_epochs`` epochs more.

    Compressed configurations fine-tune after training; the baseline then gets as many epochs
    in all, so a difference is the method's, not the extra training's. ``extra_epochs: auto``
    takes the most fine-tuning epochs among the compressed jobs of the grid, which the grid's
    check (:mod:`sweeper.sweep.preflight`) hands over (``grid_extra``). Other trials are unchanged.

    Raises:
        ConfigError: ``compare.equal_budget=true`` without a usable ``compare.extra_epochs``.
    """
    compare = cfg.get("compare")
    if compare is None or compare.get("equal_budget") is not True:
        return strategy
    extra = compare.get("extra_epochs", "auto")
    if extra == "auto":
        if grid_extra is None:
            raise ConfigError(
                "compare.extra_epochs=auto: known only in a grid multirun with compressed jobs "
                "(e.g. -m compression=none,prune); elsewhere set compare.extra_epochs=N"
            )
        extra = grid_extra
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


def plan_trial(
    cfg: DictConfig, *, choices: Mapping[str, str] | None = None, extra_epochs: int | None = None
) -> TrialPlan:
    """Build and check every component of the trial described by ``cfg``; train nothing.

    ``choices`` are Hydra's runtime choices of the job's groups; ``extra_epochs`` the grid's
    ``compare.extra_epochs=auto`` (both from :class:`sweeper.trial.context.JobContext`). A
    compression method that cannot handle the model leaves ``unsupported`` set (the trial
    will fail; a sweep goes on).

    Raises:
        ConfigError: a value, key or plug-in is wrong (the message names it).
    """
    apply_option_knobs(cfg, dict(choices or {}), GROUPS)  # +options.<group>.<option>.<key>=value
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r}: must be an integer >= 0")
    seed = int(cfg.seed)
    if not cfg.measure.latency_seconds > 0 or not int(cfg.measure.latency_batch) >= 1:
        raise ConfigError(
            f"measure.latency_seconds={cfg.measure.latency_seconds}, measure.latency_batch="
            f"{cfg.measure.latency_batch}: need seconds > 0 and batch >= 1"
        )
    check_runtimes(cfg.measure.get("runtimes", ["torch"]))
    trial_latency = cfg.measure.get("trial_latency", "auto")
    if trial_latency not in TRIAL_LATENCY:
        raise ConfigError(f"measure.trial_latency={trial_latency!r}: allowed: {', '.join(TRIAL_LATENCY)}")
    device = _resolve_device(str(cfg.device))
    threads = cfg.get("threads")
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"threads={threads!r}: must be an integer >= 1 or null (torch's default)")
    try:
        strategy = Strategy.from_dict(plain_dict(cfg.strategy))
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from exc
    strategy = _equal_budget(cfg, strategy, extra_epochs)
    _check_precision(strategy, device)
    nproc = _check_nproc(cfg.get("nproc", 1), device)
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
    model, spec, checkpoint = _build_model(cfg, task, str(group_choices(cfg, choices)["model"]))
    _probe_autocast(model, task, strategy, device)
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
    plan.checkpoint, plan.nproc = checkpoint, nproc
    if nproc > 1 and (facts_of(compressor).training == "in-training" or isinstance(compressor, TrainsWithHooks)):
        raise ConfigError(
            f"nproc={nproc}: compression={plan.choices['compression']} changes the training itself, and "
            "data-parallel workers run the plain loop; allowed with it: nproc=1"
        )
    if isinstance(compressor, ChecksModel):  # checks that need the model (layer widths, class counts), before training
        try:
            compressor.check(model, plan.context())
        except UnsupportedLayer as exc:  # this model, not the input, is the problem: the trial fails, a sweep goes on
            plan.unsupported = exc
        except ValueError as exc:
            raise ConfigError(" ".join(str(exc).split())) from exc
    return plan
