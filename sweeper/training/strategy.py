"""Training-strategy settings: epochs, batch size, LR schedule, early stopping, noise, growth,
precision, gradient accumulation and clipping.

Each `strategy` preset in ``conf/strategy/`` sets these same fields, so any preset can be
combined with overrides of the others' fields (``strategy=cosine
strategy.early_stopping.enabled=true``). :meth:`Strategy.from_dict` checks every value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

__all__ = ["BatchGrowth", "EarlyStopping", "GradNoise", "LRSchedule", "Strategy", "build_scheduler"]

SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup_cosine", "plateau")
PRECISIONS = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast's dtype (None: plain fp32)


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"strategy.{key}={value!r}: must be {allowed}")


_BOUND = re.compile(r"(?P<op>>=|>) (?P<low>\S+)|in (?P<left>[(\[])(?P<lo>\S+), (?P<hi>\S+)(?P<right>[)\]])")


def _within(value: float, allowed: str) -> bool:
    """Whether ``value`` meets a bound written as the error message says it: ``>= 1``, ``in (0, 1]``."""
    match = _BOUND.fullmatch(allowed)
    if match is None:
        raise ValueError(f"unknown bound {allowed!r}")
    if match["op"]:
        return value >= float(match["low"]) if match["op"] == ">=" else value > float(match["low"])
    lo, hi = float(match["lo"]), float(match["hi"])
    above = value >= lo if match["left"] == "[" else value > lo
    below = value <= hi if match["right"] == "]" else value < hi
    return above and below


def _check_bounds(settings: object, section: str, **bounds: str) -> None:
    """Check each named field of ``settings`` against its bound (one-line error naming the key)."""
    for name, allowed in bounds.items():
        value = getattr(settings, name)
        _require(_within(value, allowed), f"{section}.{name}", value, allowed)


@dataclass(frozen=True)
class LRSchedule:
    """How the learning rate changes per epoch (a torch.optim.lr_scheduler underneath)."""

    name: str = "constant"
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1  # step: factor at each decay; exponential: factor per epoch
    min_lr: float = 0.0  # cosine / warmup_cosine: final learning rate
    warmup_epochs: int = 3  # warmup_cosine: linear warm-up length
    warmup_start_factor: float = 0.1  # warmup_cosine: first epoch's share of the base LR
    plateau_factor: float = 0.5  # plateau: factor when val_score stalls
    plateau_patience: int = 2  # plateau: epochs without improvement before a cut

    def __post_init__(self) -> None:
        _require(self.name in SCHEDULES, "lr_schedule.name", self.name, f"one of {', '.join(SCHEDULES)}")
        _check_bounds(
            self,
            "lr_schedule",
            step_size=">= 1",
            gamma="in (0, 1]",
            min_lr=">= 0",
            warmup_epochs=">= 0",
            warmup_start_factor="in (0, 1]",
            plateau_factor="in (0, 1)",
            plateau_patience=">= 0",
        )


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when val_score (the task's metric) has not improved by ``min_delta`` for ``patience`` epochs."""

    enabled: bool = False
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        _check_bounds(self, "early_stopping", patience=">= 1", min_delta=">= 0")


@dataclass(frozen=True)
class GradNoise:
    """Annealed Gaussian gradient noise (Neelakantan et al. 2015).

    Added to every gradient with variance ``eta / (1 + t)^gamma`` at optimizer step ``t``.
    """

    enabled: bool = False
    eta: float = 0.3
    gamma: float = 0.55

    def __post_init__(self) -> None:
        _check_bounds(self, "grad_noise", eta="> 0", gamma=">= 0")

    def std(self, step: int) -> float:
        """Standard deviation of the noise added at optimizer step ``step`` (0-based)."""
        return math.sqrt(self.eta / (1 + step) ** self.gamma)


@dataclass(frozen=True)
class BatchGrowth:
    """Multiply the batch size by ``factor`` every ``every_epochs`` (Smith et al. 2018)."""

    enabled: bool = False
    factor: int = 2
    every_epochs: int = 10

    def __post_init__(self) -> None:
        _require(
            isinstance(self.factor, int) and self.factor >= 2, "batch_growth.factor", self.factor, "an integer >= 2"
        )
        _check_bounds(self, "batch_growth", every_epochs=">= 1")


@dataclass(frozen=True)
class Strategy:
    """Everything about how a network is trained, apart from the optimizer."""

    epochs: int = 20  # 0: no training (a loaded checkpoint is the trained network)
    batch_size: int | str = 64  # an integer or "full" (the whole training set per step)
    lr_schedule: LRSchedule = field(default_factory=LRSchedule)
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    grad_noise: GradNoise = field(default_factory=GradNoise)
    batch_growth: BatchGrowth = field(default_factory=BatchGrowth)
    precision: str = "32"  # 32 | bf16 | fp16: the forward and loss under autocast in that dtype (fp16: loss scaling)
    accumulate_steps: int = 1  # micro-batches of batch_size per optimizer step (effective batch = their product)
    clip_grad_norm: float | None = None  # the gradients' total L2 norm clipped to this before each step

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", str(self.precision))  # Hydra reads `32` as an integer
        _require(self.precision in PRECISIONS, "precision", self.precision, f"one of {', '.join(PRECISIONS)}")
        _require(
            isinstance(self.accumulate_steps, int) and self.accumulate_steps >= 1,
            "accumulate_steps",
            self.accumulate_steps,
            "an integer >= 1",
        )
        _require(
            self.clip_grad_norm is None or self.clip_grad_norm > 0,
            "clip_grad_norm",
            self.clip_grad_norm,
            "> 0, or null (no clipping)",
        )
        _require(
            isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 0,
            "epochs",
            self.epochs,
            "an integer >= 0 (0: no training, e.g. with model.checkpoint)",
        )
        full = self.batch_size == "full"
        _require(
            full or (isinstance(self.batch_size, int) and self.batch_size >= 1),
            "batch_size",
            self.batch_size,
            "an integer >= 1 or 'full'",
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Strategy:
        """Build from the plain dict of a `strategy` config; unknown keys are errors."""
        nested = {
            "lr_schedule": LRSchedule,
            "early_stopping": EarlyStopping,
            "grad_noise": GradNoise,
            "batch_growth": BatchGrowth,
        }
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"strategy.{key}: unknown key; allowed: {', '.join(sorted(known))}")
            if key in nested:
                sub_known = {f.name for f in fields(nested[key])}
                for sub in value:
                    if sub not in sub_known:
                        raise ValueError(f"strategy.{key}.{sub}: unknown key; allowed: {', '.join(sorted(sub_known))}")
                value = nested[key](**value)
            kwargs[key] = value
        return cls(**kwargs)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype the forward pass runs in under autocast (None: fp32, no autocast)."""
        return PRECISIONS[self.precision]

    def batch_size_at(self, epoch: int, n_train: int) -> int:
        """Batch size used in ``epoch`` (0-based): full, fixed, or grown, capped at ``n_train``."""
        if self.batch_size == "full":
            return n_train
        size = int(self.batch_size)
        if self.batch_growth.enabled:
            size *= self.batch_growth.factor ** (epoch // self.batch_growth.every_epochs)
        return min(size, n_train)


def build_scheduler(optimizer: Optimizer, schedule: LRSchedule, epochs: int) -> LRScheduler | ReduceLROnPlateau | None:
    """The torch scheduler for ``schedule``, stepped once per epoch (``None`` for constant)."""
    name = schedule.name
    if name == "constant":
        return None
    if name == "step":
        return StepLR(optimizer, step_size=schedule.step_size, gamma=schedule.gamma)
    if name == "exponential":
        return ExponentialLR(optimizer, gamma=schedule.gamma)
    if name == "cosine":
        return CosineAnnealingLR(optimizer, T_max=epochs, eta_min=schedule.min_lr)
    if name == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode="max", factor=schedule.plateau_factor, patience=schedule.plateau_patience
        )
    warmup = min(schedule.warmup_epochs, epochs - 1)
    cosine = CosineAnnealingLR(optimizer, T_max=max(epochs - warmup, 1), eta_min=schedule.min_lr)
    if warmup == 0:
        return cosine
    ramp = LinearLR(optimizer, start_factor=schedule.warmup_start_factor, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])


def current_lr(optimizer: Optimizer) -> float:
    """Learning rate of the optimizer's first parameter group."""
    lr = optimizer.param_groups[0]["lr"]
    return float(lr.item() if isinstance(lr, torch.Tensor) else lr)
