"""The contract between the trial and a compression method."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from sweeper.artifact import ModelSpec
from sweeper.data import Task
from sweeper.training import EarlyStopping, LRSchedule, Strategy, TrainResult, train
from sweeper.training.loop import EpochHook, LossFn, StepHook
from sweeper.training.optimizers import OptimizerFactory

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FAMILIES",
    "ChecksModel",
    "Compressed",
    "CompressionContext",
    "CompressionMethod",
    "MethodFacts",
    "Training",
    "TrainingHooks",
    "TrainsWithHooks",
    "UnsupportedLayer",
    "check_epochs",
    "check_fraction",
    "facts_of",
]

# The families the report groups methods by; a method of another kind says so in its own words.
FAMILIES = ("baseline", "pruning", "quantization", "distillation", "low-rank", "pipeline")
Training = Literal["post-training", "fine-tunes", "in-training"]


@dataclass(frozen=True)
class MethodFacts:
    """What a compression method states about itself, where it is defined (the attribute ``facts``).

    The trial, the pipeline, the ONNX export, the report, the help and the tests read these facts; no
    list of method names elsewhere repeats them. A method of a user's declares them the same way.

    Attributes:
        family: what the report groups it under (``pruning``, ``quantization``, ``distillation``,
            ``low-rank``, ``pipeline``, ``baseline`` for ``none``, or a word of the method's own).
        training: its relation to the main training run: ``post-training`` (works on the trained
            network, trains nothing), ``fine-tunes`` (works on the trained network, then trains it
            more), ``in-training`` (changes the main training run itself: its hooks).
        final: its output is no longer a float network (int8 modules, fixed codes): nothing may
            follow it in a pipeline.
        float_source: its artifact has no ONNX form of its own; ONNX Runtime quantizes the float
            network it started from (torch's int8 modules).
        calibration: it reads training inputs to calibrate (activation ranges, Hessians).

    Example:
        >>> MethodFacts("pruning", "fine-tunes").final
        False
    """

    family: str
    training: Training
    final: bool = False
    float_source: bool = False
    calibration: bool = False

    def __post_init__(self) -> None:
        if self.training not in ("post-training", "fine-tunes", "in-training"):
            raise ValueError(f"MethodFacts.training={self.training!r}: allowed: post-training, fine-tunes, in-training")
        if not (isinstance(self.family, str) and self.family):
            raise ValueError(
                f"MethodFacts.family={self.family!r}: must be a non-empty word, e.g. {', '.join(FAMILIES)}"
            )


@dataclass
class TrainingHooks:
    """Changes a method makes to the main training run, and what it measured while setting them up."""

    loss_fn: LossFn | None = None  # also the loss of later fine-tuning (a pipeline after distill)
    step_hook: StepHook | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. the teacher's accuracy


@dataclass
class CompressionContext:
    """What a method may use: the data, how the trial trains, and how to rebuild the model."""

    task: Task
    spec: ModelSpec
    optimizer_factory: OptimizerFactory
    strategy: Strategy
    seed: int
    device: torch.device
    hooks: TrainingHooks | None = None  # what training_hooks returned for the main training run, if any

    @property
    def loss_fn(self) -> LossFn | None:
        """The default loss of fine-tuning: the main run's (after distillation, the KD loss)."""
        return self.hooks.loss_fn if self.hooks is not None else None

    def finetune(
        self,
        model: nn.Module,
        epochs: int,
        *,
        optimizer_factory: OptimizerFactory | None = None,
        loss_fn: LossFn | None = None,
        step_hook: StepHook | None = None,
        epoch_hook: EpochHook | None = None,
    ) -> TrainResult:
        """Train ``model`` for ``epochs`` with the trial's optimizer at a constant LR, no early stop.

        The loss is ``loss_fn``, else the context's ``loss_fn``, else cross-entropy.
        """
        strategy = replace(self.strategy, lr_schedule=LRSchedule(), early_stopping=EarlyStopping())
        return train(
            model,
            self.task,
            optimizer_factory or self.optimizer_factory,
            strategy,
            seed=self.seed,
            device=self.device,
            loss_fn=loss_fn or self.loss_fn,
            step_hook=step_hook,
            epoch_hook=epoch_hook,
            epochs=epochs,
        )


@dataclass
class Compressed:
    """The result of a method: what runs, what is written, and what it reports."""

    module: nn.Module
    kind: str
    payload: dict[str, Any]
    latency_kind: Literal["real", "simulated"] = "real"
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. sparsity, bits
    tags: dict[str, str] = field(default_factory=dict)  # e.g. which quantization flow ran
    spec: ModelSpec | None = None  # the architecture when the method changed it (structured pruning)
    params: dict[str, Any] = field(default_factory=dict)  # what it chose, e.g. layers.<name>.bits (MLflow params)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # what it measured on the way, as data: each
    # is kept beside the artifact as <name>.csv (an MLflow artifact of the run); the report draws them


@runtime_checkable
class CompressionMethod(Protocol):
    """One method of the `compression` group; it should also declare ``facts: ClassVar[MethodFacts]``."""

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed: ...


@runtime_checkable
class ChecksModel(Protocol):
    """Optional: a method that checks the untrained model before any training.

    ``check`` raises ``ValueError`` for a bad setting (the sweep stops: fix the input) and
    :class:`UnsupportedLayer` for a layer it cannot handle (this trial fails, the sweep goes on).
    """

    def check(self, model: nn.Module, ctx: CompressionContext) -> None: ...


@runtime_checkable
class TrainsWithHooks(Protocol):
    """Optional: a method that changes the main training run (gradual pruning, distillation).

    The hooks it returns are handed back to ``compress`` in ``ctx.hooks``: a method keeps no
    state between the two calls.
    """

    def training_hooks(self, ctx: CompressionContext) -> TrainingHooks: ...


def facts_of(method: object) -> MethodFacts:
    """The facts ``method`` declares (its ``facts`` attribute); a method that declares none is of family
    ``other``, ``in-training`` when it has training hooks and ``post-training`` otherwise.

    Example:
        >>> facts_of(object()).family
        'other'
    """
    facts = getattr(method, "facts", None)
    if isinstance(facts, MethodFacts):
        return facts
    return MethodFacts("other", "in-training" if isinstance(method, TrainsWithHooks) else "post-training")


def check_fraction(value: float, key: str = "amount") -> float:
    """``value`` as a float in [0, 1), else ``ValueError`` naming ``compression.<key>``."""
    if not (isinstance(value, int | float) and 0 <= value < 1):
        raise ValueError(f"compression.{key}={value}: must be in [0, 1)")
    return float(value)


def check_epochs(epochs: int, key: str = "finetune_epochs") -> int:
    """``epochs`` as an integer >= 0, else ``ValueError`` naming ``compression.<key>``."""
    if not (isinstance(epochs, int) and epochs >= 0):
        raise ValueError(f"compression.{key}={epochs}: must be an integer >= 0")
    return epochs


class UnsupportedLayer(Exception):
    """A method cannot handle one layer of the model: the trial FAILS, the sweep goes on.

    Not a configuration error (those stop a sweep before training): the same method may fit
    the sweep's other models. The message names the method, the layer's qualified name and type.

    Example:
        >>> str(UnsupportedLayer("quantize", "encoder.attn", nn.Bilinear(2, 2, 2), "no int8 kernel"))
        'compression=quantize: cannot handle layer encoder.attn (Bilinear): no int8 kernel'
    """

    def __init__(self, method: str, layer: str, module: nn.Module | type, reason: str) -> None:
        kind = module.__name__ if isinstance(module, type) else type(module).__name__
        super().__init__(f"compression={method}: cannot handle layer {layer or '<model>'} ({kind}): {reason}")
        self.method, self.layer, self.kind, self.reason = method, layer, kind, reason
