"""The training loop: one visible loop over epochs and mini-batches of in-memory tensors.

Order inside an epoch: batch size -> forward/backward -> gradient noise -> step -> hooks;
after it: divergence check -> validation -> log -> LR schedule -> early-stopping check.
The loss is synchronised to the host once per epoch, not once per batch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from sweeper.data import Task
from sweeper.scoring import evaluate_scores
from sweeper.training.optimizers import OptimizerFactory, build_optimizers
from sweeper.training.strategy import Strategy, build_scheduler, current_lr

__all__ = ["TrainResult", "TrainingDiverged", "train"]

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (logits, inputs, targets) -> scalar loss
StepHook = Callable[[nn.Module, int], None]  # (model, global step) after each optimizer step
EpochHook = Callable[[int, dict[str, float]], None]  # (epoch, that epoch's metrics) after validation


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"training diverged: train_loss={value} at epoch {epoch}")
        self.epoch = epoch
        self.value = value


@dataclass
class TrainResult:
    """What a training run produced besides the trained weights."""

    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    best_val_score: float = 0.0  # the task's primary metric on validation, at its best epoch
    best_epoch: int = 0
    epochs_run: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False


def _cross_entropy(logits: Tensor, _inputs: Tensor, targets: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits, targets)


def _add_gradient_noise(model: nn.Module, std: float, generator: torch.Generator) -> None:
    for p in model.parameters():
        if p.grad is not None:
            noise = torch.randn(p.grad.shape, generator=generator, dtype=p.grad.dtype)
            p.grad.add_(noise.to(p.grad.device), alpha=std)


def train(
    model: nn.Module,
    task: Task,
    optimizer_factory: OptimizerFactory,
    strategy: Strategy,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    loss_fn: LossFn | None = None,
    step_hook: StepHook | None = None,
    epoch_hook: EpochHook | None = None,
    epochs: int | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``task.train``, validating on ``task.val`` every epoch.

    Args:
        model: the network; it is moved to ``device``.
        task: the data; the test split is never touched here.
        optimizer_factory: called with the trainable parameters (see `build_optimizers`).
        strategy: epochs, batch size, LR schedule, early stopping, noise, batch growth.
        seed: seeds shuffling and gradient noise (initialisation is seeded by the caller).
        device: where to train.
        loss_fn: ``(logits, inputs, targets) -> loss``; cross-entropy by default.
        step_hook: called after every optimizer step (e.g. gradual pruning masks).
        epoch_hook: called after every validation; may raise to stop (e.g. a search pruner).
        epochs: overrides ``strategy.epochs`` (fine-tuning).

    Returns:
        The per-epoch history and summary numbers.

    Raises:
        TrainingDiverged: the epoch's mean training loss is NaN or infinite.
    """
    device = torch.device(device)
    model.to(device)
    loss_fn = loss_fn or task.loss or _cross_entropy
    n_epochs = strategy.epochs if epochs is None else epochs
    x_train, y_train = task.x_train.to(device), task.y_train.to(device)
    x_val, y_val = task.x_val.to(device), task.y_val.to(device)  # once, not every epoch
    n_train = len(x_train)

    if n_epochs == 0:  # nothing to train: the network as it is (a loaded checkpoint), scored once on validation
        scores = evaluate_scores(model, x_val, y_val, task.metrics, input_ndim=len(task.input_shape))
        return TrainResult(best_val_score=scores[task.score_metric])
    optimizers = build_optimizers(optimizer_factory, model)
    schedulers = [build_scheduler(opt, strategy.lr_schedule, n_epochs) for opt in optimizers]
    sign = 1.0 if task.higher_is_better else -1.0  # comparisons on sign * score: a perplexity improves downwards
    shuffle_gen = torch.Generator().manual_seed(seed + 1)
    noise_gen = torch.Generator().manual_seed(seed + 2)
    early = strategy.early_stopping
    result = TrainResult(best_val_score=-math.inf * sign)
    best_oriented = -math.inf
    best_state: dict[str, Tensor] | None = None
    epochs_since_best, patience_reference = 0, 0.0
    start = time.perf_counter()

    for epoch in range(n_epochs):
        batch_size = strategy.batch_size_at(epoch, n_train)
        lr = current_lr(optimizers[0])
        order = torch.randperm(n_train, generator=shuffle_gen).to(device)
        model.train()
        loss_sum = torch.zeros((), device=device)
        for begin in range(0, n_train, batch_size):
            idx = order[begin : begin + batch_size]
            inputs, targets = x_train[idx], y_train[idx]
            loss = loss_fn(model(inputs), inputs, targets)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if strategy.grad_noise.enabled:
                _add_gradient_noise(model, strategy.grad_noise.std(result.steps), noise_gen)
            for opt in optimizers:
                opt.step()
            if step_hook is not None:
                step_hook(model, result.steps)
            result.steps += 1
            loss_sum += loss.detach() * len(idx)

        train_loss = (loss_sum / n_train).item()  # the one host sync of the epoch
        if not torch.isfinite(torch.tensor(train_loss)):
            raise TrainingDiverged(epoch, train_loss)
        val = evaluate_scores(model, x_val, y_val, task.metrics, input_ndim=len(task.input_shape))
        val_score = val[task.score_metric]
        metrics = {"train_loss": train_loss, "val_score": val_score, **{f"val_{k}": v for k, v in val.items()}}
        metrics |= {"lr": lr, "batch_size": batch_size}
        result.history.append(metrics)
        result.epochs_run = epoch + 1

        oriented = sign * val_score
        for scheduler in schedulers:
            if isinstance(scheduler, ReduceLROnPlateau):
                scheduler.step(oriented)  # mode "max" on the oriented score
            elif scheduler is not None:
                scheduler.step()

        if oriented > best_oriented:
            best_oriented, result.best_val_score, result.best_epoch = oriented, val_score, epoch
            if early.enabled and early.restore_best:
                best_state = copy.deepcopy(model.state_dict())
        if epoch == 0 or oriented > patience_reference + early.min_delta:
            patience_reference, epochs_since_best = oriented, 0
        else:
            epochs_since_best += 1
        if epoch_hook is not None:
            epoch_hook(epoch, metrics)
        if early.enabled and epochs_since_best >= early.patience:
            result.stopped_early = True
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    if not math.isfinite(result.best_val_score):  # no epoch gave a comparable score
        result.best_val_score = math.nan
    result.train_seconds = time.perf_counter() - start
    return result
