"""Knowledge distillation (Hinton et al., 2015): a wider teacher teaches the trial's model.

The teacher is trained once and cached on disk under a key that hashes everything that
determines it: the training and validation tensors, the seed, the teacher's builder and
arguments, and its training settings. Every later trial with the same key loads it
(``weights_only=True``, key checked) instead of training it again. The student is
``cfg.model``, trained by the main training run on

    (1 - alpha) * CE(student, y) + alpha * T**2 * KL(softmax(teacher / T) || softmax(student / T))

and saved as an ordinary dense artifact: its size and latency are simply the student's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sweeper.artifact import ModelSpec, dense_payload
from sweeper.cache import compute_once
from sweeper.compression._base import Compressed, CompressionContext, MethodFacts, TrainingHooks
from sweeper.data import Task, stream_fingerprint
from sweeper.training import Strategy, train
from sweeper.training.loop import LossFn

__all__ = ["Distillation", "distillation_loss"]

_CACHE_FORMAT = "sweeper-teacher/1"


def distillation_loss(student: Tensor, teacher: Tensor, targets: Tensor, *, temperature: float, alpha: float) -> Tensor:
    """``(1 - alpha) * CE + alpha * T**2 * KL(teacher_T || student_T)``, batch mean.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0]])
        >>> float(distillation_loss(logits, logits, torch.tensor([0]), temperature=2.0, alpha=1.0))
        0.0
    """
    hard = F.cross_entropy(student, targets)
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1),
        F.log_softmax(teacher / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    return (1 - alpha) * hard + alpha * temperature**2 * soft


def _task_digest(task: Task) -> str:
    digest = hashlib.sha256()
    for tensor in (task.x_train, task.y_train, task.x_val, task.y_val):
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    if task.train_stream is not None:  # x_train is then its sample: the stream itself tells training sets apart
        digest.update(stream_fingerprint(task.train_stream).encode())
    return digest.hexdigest()


class Distillation:
    """``compression=distill``: train the student against a cached teacher's softened outputs.

    Args:
        teacher_model: the teacher's builder, a partial (``_partial_: true``) of a model plug-in;
            it receives ``input_shape`` and ``num_classes`` like ``cfg.model``.
        teacher_epochs: epochs of the teacher's training (>= 1).
        teacher_lr: the teacher's Adam learning rate (> 0).
        teacher_batch_size: the teacher's batch size (>= 1).
        temperature: ``T`` (> 0) softening both distributions.
        alpha: weight of the distillation term, in [0, 1].
        cache_dir: where trained teachers are kept, relative to the working directory.
    """

    facts: ClassVar[MethodFacts] = MethodFacts("distillation", "in-training")

    def __init__(
        self,
        *,
        teacher_model: Callable[..., nn.Module],
        teacher_epochs: int = 30,
        teacher_lr: float = 3e-3,
        teacher_batch_size: int = 64,
        temperature: float = 4.0,
        alpha: float = 0.7,
        cache_dir: str = ".sweeper_cache/teachers",
    ) -> None:
        if not isinstance(teacher_model, functools.partial):
            raise ValueError("compression.teacher_model: must be a model config with _partial_: true")
        if not (isinstance(teacher_epochs, int) and teacher_epochs >= 1):
            raise ValueError(f"compression.teacher_epochs={teacher_epochs}: must be an integer >= 1")
        if not (isinstance(teacher_lr, int | float) and teacher_lr > 0):
            raise ValueError(f"compression.teacher_lr={teacher_lr}: must be a number > 0")
        if not (isinstance(teacher_batch_size, int) and teacher_batch_size >= 1):
            raise ValueError(f"compression.teacher_batch_size={teacher_batch_size}: must be an integer >= 1")
        if not (isinstance(temperature, int | float) and temperature > 0):
            raise ValueError(f"compression.temperature={temperature}: must be a number > 0")
        if not (isinstance(alpha, int | float) and 0 <= alpha <= 1):
            raise ValueError(f"compression.alpha={alpha}: must be in [0, 1]")
        self.teacher_model = teacher_model
        self.teacher_epochs, self.teacher_lr, self.teacher_batch_size = (
            teacher_epochs,
            float(teacher_lr),
            teacher_batch_size,
        )
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.cache_dir = Path(cache_dir)

    def teacher_spec(self, task: Task) -> ModelSpec:
        """How to rebuild the teacher: its builder's path and arguments, sized for ``task``."""
        func = self.teacher_model.func
        kwargs = {"input_shape": list(task.input_shape), "num_classes": task.num_classes, **self.teacher_model.keywords}
        return ModelSpec(target=f"{func.__module__}.{func.__qualname__}", kwargs=kwargs)

    def cache_key(self, ctx: CompressionContext) -> str:
        """Hash of everything that determines the trained teacher."""
        spec = self.teacher_spec(ctx.task)
        determinants = {
            "format": _CACHE_FORMAT,
            "data": _task_digest(ctx.task),
            "seed": ctx.seed,
            "teacher": {"target": spec.target, "kwargs": spec.kwargs},
            "training": {"epochs": self.teacher_epochs, "lr": self.teacher_lr, "batch_size": self.teacher_batch_size},
        }
        return hashlib.sha256(json.dumps(determinants, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Fail before training when the teacher cannot be built or predicts another number of classes."""
        teacher = self._build_teacher(ctx)
        try:
            with torch.no_grad():
                classes = teacher(ctx.task.x_train[:2]).shape[-1]
        except Exception as exc:  # e.g. a CNN teacher on token ids: the user must choose another teacher
            raise ValueError(
                f"compression.teacher_model: the teacher {self.teacher_spec(ctx.task).target} cannot run on "
                f"this task's inputs ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
                "allowed: a model config that accepts them"
            ) from exc
        if classes != ctx.task.num_classes:
            raise ValueError(
                f"compression.teacher_model: the teacher outputs {classes} classes, the student "
                f"{ctx.task.num_classes}; allowed: a teacher with num_classes={ctx.task.num_classes}"
            )

    def _build_teacher(self, ctx: CompressionContext) -> nn.Module:
        torch.manual_seed(ctx.seed)
        try:
            return self.teacher_spec(ctx.task).build()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"compression.teacher_model: {' '.join(str(exc).split())}") from exc

    def teacher(self, ctx: CompressionContext) -> tuple[nn.Module, dict[str, float]]:
        """The trained teacher (loaded from the cache, or trained and cached) and its metrics.

        ``compute_once`` makes concurrent trials (other processes, other workers sharing the
        cache directory) wait for the one that trains it, instead of training it twice.
        """
        start = time.perf_counter()
        key = self.cache_key(ctx)
        path = self.cache_dir / f"{key}.pt"
        teacher = self._build_teacher(ctx)
        trained_here = False

        def train_teacher(scratch: Path) -> None:
            nonlocal trained_here
            strategy = Strategy(epochs=self.teacher_epochs, batch_size=self.teacher_batch_size)
            optimizer = functools.partial(torch.optim.Adam, lr=self.teacher_lr)
            train(teacher, ctx.task, optimizer, strategy, seed=ctx.seed, device=ctx.device)
            torch.save({"format": _CACHE_FORMAT, "key": key, **dense_payload(teacher.cpu())}, scratch)
            trained_here = True

        cached = torch.load(compute_once(path, train_teacher), map_location="cpu", weights_only=True)
        if cached.get("format") != _CACHE_FORMAT or cached.get("key") != key:  # not ours: retrain it
            path.unlink(missing_ok=True)
            cached = torch.load(compute_once(path, train_teacher), map_location="cpu", weights_only=True)
        teacher.load_state_dict(cached["state_dict"])
        teacher = teacher.cpu().eval()
        metrics = {
            "teacher_cached": 0.0 if trained_here else 1.0,
            "teacher_test_score": ctx.task.evaluate(teacher, "test")[ctx.task.score_metric],
            "teacher_params": float(sum(p.numel() for p in teacher.parameters())),
            "teacher_epochs": float(self.teacher_epochs),
            "teacher_seconds": time.perf_counter() - start,  # training it here, or loading it
        }
        return teacher.to(ctx.device), metrics

    def loss(self, teacher: nn.Module) -> LossFn:
        """The distillation loss against ``teacher``, as a training-loop ``loss_fn``."""
        teacher.eval().requires_grad_(False)

        def loss_fn(logits: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
            with torch.no_grad():
                teacher_logits = teacher(inputs)
            return distillation_loss(logits, teacher_logits, targets, temperature=self.temperature, alpha=self.alpha)

        return loss_fn

    def training_hooks(self, ctx: CompressionContext) -> TrainingHooks:
        """The main training run trains the student on the distillation loss."""
        teacher, metrics = self.teacher(ctx)
        return TrainingHooks(loss_fn=self.loss(teacher), metrics=metrics)

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """The distilled student, saved dense (the teacher's metrics come with the training hooks)."""
        model = model.cpu().eval()
        return Compressed(module=model, kind="dense", payload=dense_payload(model))
