"""The training loop: one visible loop over epochs, optimizer steps and micro-batches.

Order inside an epoch: batch size -> per step: micro-batches' forward (under autocast) and backward ->
unscale -> gradient noise -> clipping -> step -> hooks; after it: divergence check -> validation -> log ->
LR schedule -> early-stopping check. The loss is synchronised to the host once per epoch, not once per batch.

Data parallel: inside a process group (:mod:`sweeper.trial.parallel` starts one), the model is wrapped in
``DistributedDataParallel`` and every process takes its share of each step's examples, drawn from the same
seeded permutation, weighted so that the averaged gradient is the one of the whole step's batch: N processes
at a global batch B take the steps one process takes at B.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch import distributed as dist
from torch.optim import Optimizer
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


@dataclass(frozen=True)
class _Step:
    """One optimizer step's share of this process: its micro-batches (index tensors) and the step's global size."""

    chunks: list[Tensor]
    size: int  # examples in the step, over every process


def _plan_steps(order: Tensor, step_size: int, accumulate: int, rank: int, world: int) -> list[_Step]:
    """An epoch's steps: ``order`` cut into steps of ``step_size``, each step's examples shared among the
    ``world`` processes, and this process's share cut into at most ``accumulate`` micro-batches."""
    steps = []
    for begin in range(0, len(order), step_size):
        batch = order[begin : begin + step_size]
        mine = batch.tensor_split(world)[rank]
        chunks = [c for c in mine.tensor_split(min(accumulate, max(len(mine), 1))) if len(c)]
        steps.append(_Step(chunks, len(batch)))
    return steps


class _Batches:
    """The examples of the training split by index: in-memory tensors, or a streamed dataset read by a DataLoader."""

    def __init__(self, task: Task, device: torch.device) -> None:
        self.task, self.device = task, device
        self.stream = task.train_stream
        if self.stream is None:
            self.x, self.y = task.x_train.to(device), task.y_train.to(device)  # once, not every step

    def __len__(self) -> int:
        return self.task.train_size

    def epoch(self, steps: list[_Step]) -> Iterator[tuple[Tensor, Tensor]]:
        """Each micro-batch of ``steps`` in order, as ``(inputs, targets)`` on the device."""
        chunks = [chunk for step in steps for chunk in step.chunks]
        if self.stream is None:
            for chunk in chunks:
                index = chunk.to(self.device)
                yield self.x[index], self.y[index]
            return
        from torch.utils.data import DataLoader

        from sweeper.data import collate_items

        workers = self.task.stream_workers
        loader = DataLoader(
            self.stream,
            batch_sampler=_ChunkSampler(chunks),
            num_workers=workers,
            collate_fn=collate_items,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for inputs, targets in loader:
            yield inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)


class _ChunkSampler:
    """The micro-batches' indices, listed one batch at a time (not millions of Python ints held up front)."""

    def __init__(self, chunks: list[Tensor]) -> None:
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[list[int]]:
        return (chunk.tolist() for chunk in self.chunks)


def _world() -> tuple[int, int]:
    """(rank, world size) of the process group this process is in; (0, 1) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
    """Train ``model`` in place on ``task``'s training split, validating on ``task.val`` every epoch.

    Args:
        model: the network; it is moved to ``device``.
        task: the data; the test split is never touched here.
        optimizer_factory: called with the trainable parameters (see `build_optimizers`).
        strategy: epochs, batch size, LR schedule, early stopping, noise, batch growth, precision,
            gradient accumulation and clipping.
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
    x_val, y_val = task.x_val.to(device), task.y_val.to(device)  # once, not every epoch

    def validate() -> dict[str, float]:
        return evaluate_scores(model, x_val, y_val, task.metrics, input_ndim=len(task.input_shape))

    if n_epochs == 0:  # nothing to train: the network as it is (a loaded checkpoint), scored once on validation
        return TrainResult(best_val_score=validate()[task.score_metric])
    rank, world = _world()
    data = _Batches(task, device)
    n_train = len(data)
    optimizers = build_optimizers(optimizer_factory, model)
    schedulers = [build_scheduler(opt, strategy.lr_schedule, n_epochs) for opt in optimizers]
    forward = _parallel(model, device) if world > 1 else model
    dtype = strategy.autocast_dtype
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
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
        micro = strategy.batch_size_at(epoch, n_train)
        step_size = n_train if strategy.batch_size == "full" else min(micro * strategy.accumulate_steps, n_train)
        lr = current_lr(optimizers[0])
        order = torch.randperm(n_train, generator=shuffle_gen)
        steps = _plan_steps(order, step_size, strategy.accumulate_steps, rank, world)
        batches = data.epoch(steps)
        model.train()
        loss_sum = torch.zeros((), device=device)
        for step in steps:
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            if not step.chunks:  # fewer examples in this step than processes: a weightless one keeps them in step
                step = _Step([order[:1]], step.size)
                weights = [0.0]
            else:
                weights = [len(chunk) * world / step.size for chunk in step.chunks]
            for i, weight in enumerate(weights):
                inputs, targets = next(batches) if weight else _example(data, order[:1], device)
                last = i == len(weights) - 1
                with _no_sync(forward, not last), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = loss_fn(forward(inputs), inputs, targets)
                scaled = loss * weight
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                loss_sum += loss.detach().float() * len(inputs) * bool(weight)
            _finish_step(model, optimizers, scaler, strategy, result.steps, noise_gen)
            if step_hook is not None:
                step_hook(model, result.steps)
            result.steps += 1

        if world > 1:
            dist.all_reduce(loss_sum)
        train_loss = (loss_sum / n_train).item()  # the one host sync of the epoch
        if not torch.isfinite(torch.tensor(train_loss)):
            raise TrainingDiverged(epoch, train_loss)
        val = validate()
        val_score = val[task.score_metric]
        metrics = {"train_loss": train_loss, "val_score": val_score, **{f"val_{k}": v for k, v in val.items()}}
        metrics |= {"lr": lr, "batch_size": step_size}
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


def _example(data: _Batches, index: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """One example by index (a weightless stand-in for a process with no share of a step)."""
    if data.stream is None:
        return data.x[index.to(device)], data.y[index.to(device)]
    x, y = data.stream[int(index[0])]
    return x.unsqueeze(0).to(device), torch.as_tensor(y).unsqueeze(0).to(device)


def _parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped for data-parallel training in the current process group."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _no_sync(forward: nn.Module, skip: bool) -> contextlib.AbstractContextManager[object]:
    """Data parallel: no gradient all-reduce on an accumulation step's micro-batches but its last."""
    from torch.nn.parallel import DistributedDataParallel

    if skip and isinstance(forward, DistributedDataParallel):
        return forward.no_sync()
    return contextlib.nullcontext()


def _finish_step(
    model: nn.Module,
    optimizers: list[Optimizer],
    scaler: torch.amp.GradScaler | None,
    strategy: Strategy,
    step: int,
    noise_gen: torch.Generator,
) -> None:
    """The optimizer step on the accumulated gradients: unscaled, noised, clipped as the strategy says."""
    if scaler is not None:
        for opt in optimizers:
            scaler.unscale_(opt)
    if strategy.grad_noise.enabled:
        _add_gradient_noise(model, strategy.grad_noise.std(step), noise_gen)
    if strategy.clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), strategy.clip_grad_norm)
    for opt in optimizers:
        if scaler is not None:
            scaler.step(opt)
        else:
            opt.step()
    if scaler is not None:
        scaler.update()
