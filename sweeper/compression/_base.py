"""The contract between the trial and a compression method."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from sweeper.artifact import ModelSpec
from sweeper.data import Task
from sweeper.training import EarlyStopping, LRSchedule, Strategy, TrainResult, train
from sweeper.training.loop import EpochHook, LossFn, StepHook
from sweeper.training.optimizers import OptimizerFactory

__all__ = ["CompressionContext", "CompressionMethod", "Compressed", "TrainingHooks"]


@dataclass
class CompressionContext:
    """What a method may use: the data, how the trial trains, and how to rebuild the model."""

    task: Task
    spec: ModelSpec
    optimizer_factory: OptimizerFactory
    strategy: Strategy
    seed: int
    device: torch.device
    loss_fn: LossFn | None = None  # the default loss of fine-tuning (a pipeline after distill: the KD loss)

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
class TrainingHooks:
    """Changes a method makes to the main training run."""

    loss_fn: LossFn | None = None
    step_hook: StepHook | None = None


@dataclass
class Compressed:
    """The result of a method: what runs, what is written, and what it reports."""

    module: nn.Module
    kind: str
    payload: dict[str, Any]
    latency_kind: Literal["real", "simulated"] = "real"
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. sparsity, bits


@runtime_checkable
class CompressionMethod(Protocol):
    """One method of the `compression` group."""

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed: ...


# Optional members a method may add (looked up with ``hasattr``):
#   check(model, ctx) -> None                  raise ValueError before training (e.g. a layer would vanish)
#   training_hooks(ctx) -> TrainingHooks       change the main training run (gradual pruning, distillation)
