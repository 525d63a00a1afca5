"""Unstructured pruning: magnitude, random (the control) and gradual (Zhu & Gupta, 2017).

All three share one core: choose which weights to zero (:func:`select_masks`) among the
weight matrices of any network (Linear and Conv layers, the projections inside
``nn.MultiheadAttention``, embedding tables when ``embeddings: true``; ``include`` / ``exclude``
name patterns keep parts dense, see :mod:`sweeper.compression._targets`), hold those zeros
fixed while fine-tuning (:func:`mask_hook`), and
store the result as a ``sparse`` artifact: a bitmask of the kept positions plus the kept
values (:mod:`sweeper.compression._storage`). The reloaded network runs the zeros on
dense kernels, so its latency is tagged ``simulated``: the saving is in bytes, not time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, cast

import torch
from torch import Tensor, nn

from sweeper.artifact import ModelSpec, load_state, register_loader
from sweeper.compression._base import (
    Compressed,
    CompressionContext,
    MethodFacts,
    TrainingHooks,
    check_epochs,
    check_fraction,
)
from sweeper.compression._storage import decode_state, encode_state
from sweeper.compression._targets import (
    WeightSelection,
    apply_masks,
    mask_hook,
    prunable_weights,
    silence_dead_channels,
    weight_refs,
)

__all__ = ["GradualPruning", "MagnitudePruning", "RandomPruning", "cubic_sparsity", "select_masks", "sparse_compressed"]

Scope = Literal["global", "layer"]


def _check_scope(scope: str) -> Scope:
    if scope in ("global", "layer"):
        return cast(Scope, scope)
    raise ValueError(f"compression.scope={scope!r}: allowed: global, layer")


def select_masks(
    weights: dict[str, Tensor], amount: float, *, scope: Scope = "global", scores: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Boolean keep-masks that zero exactly ``round(amount * n)`` of the lowest-scored weights.

    Args:
        weights: tensors by name.
        amount: the fraction to remove, in [0, 1).
        scope: ``global`` ranks all tensors together, ``layer`` each tensor on its own.
        scores: importance per weight (default: magnitude ``|w|``); random pruning passes noise.

    Example:
        >>> select_masks({"w": torch.tensor([0.1, -3.0, 0.5, 2.0])}, 0.5)["w"].tolist()
        [False, True, False, True]
    """
    scores = scores or {name: w.detach().abs() for name, w in weights.items()}
    groups = [list(weights)] if scope == "global" else [[name] for name in weights]
    masks: dict[str, Tensor] = {}
    for names in groups:
        flat = torch.cat([scores[n].flatten() for n in names])
        keep = torch.ones_like(flat, dtype=torch.bool)
        n_remove = round(amount * flat.numel())
        keep[torch.argsort(flat, stable=True)[:n_remove]] = False
        for name, part in zip(names, torch.split(keep, [weights[n].numel() for n in names]), strict=True):
            masks[name] = part.view_as(weights[name])
    return masks


def sparsity(model: nn.Module, selection: WeightSelection | None = None) -> float:
    """Fraction of zeros among the selected weights."""
    weights = list(prunable_weights(model, selection).values())
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / sum(w.numel() for w in weights)


def sparse_compressed(model: nn.Module, selection: WeightSelection | None = None) -> Compressed:
    """The ``sparse`` artifact of a pruned float model, tagged ``simulated`` (dense kernels).

    BatchNorm channels that pruning left without input are silenced first (:func:`silence_dead_channels`).
    """
    dead = silence_dead_channels(model)
    return Compressed(
        module=model,
        kind="sparse",
        payload=encode_state(model.state_dict()),
        latency_kind="simulated",
        metrics={"sparsity": sparsity(model, selection), "dead_channels": float(dead)},
    )


@register_loader("sparse")
def _load_sparse(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    model = spec.build()
    return load_state(model, decode_state(payload))


class _UnstructuredPruning:
    """The shared core: select masks on the trained model, fine-tune with the masks fixed."""

    facts: ClassVar[MethodFacts] = MethodFacts("pruning", "fine-tunes")

    def __init__(
        self,
        *,
        amount: float = 0.8,
        scope: Scope = "global",
        finetune_epochs: int = 5,
        embeddings: bool = False,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> None:
        self.amount = check_fraction(amount)
        self.scope = _check_scope(scope)
        self.finetune_epochs = check_epochs(finetune_epochs)
        self.selection = WeightSelection(embeddings=embeddings, include=include, exclude=exclude)

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Fail before training when the patterns match no module or leave nothing to prune."""
        weight_refs(model, self.selection)

    def scores(self, weights: dict[str, Tensor], ctx: CompressionContext) -> dict[str, Tensor] | None:
        """Importance per weight; ``None`` means magnitude."""
        return None

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Prune ``model`` to ``amount`` sparsity, fine-tune with the mask fixed, store it sparse."""
        weights = prunable_weights(model, self.selection)
        masks = select_masks(weights, self.amount, scope=self.scope, scores=self.scores(weights, ctx))
        apply_masks(model, masks)
        if self.finetune_epochs:
            ctx.finetune(model, self.finetune_epochs, step_hook=mask_hook(masks))
        return sparse_compressed(model.cpu().eval(), self.selection)


class MagnitudePruning(_UnstructuredPruning):
    """``compression=prune``: remove the ``amount`` smallest-magnitude weights, then fine-tune.

    Args:
        amount: target sparsity of the selected weights, in [0, 1) (biases and norms are kept).
        scope: ``global`` (one threshold over all layers) or ``layer`` (each tensor to ``amount``).
        finetune_epochs: epochs of fine-tuning with the mask held fixed.
        embeddings: prune embedding tables too.
        include: module-name patterns to prune (empty: every Linear, Conv and attention matrix).
        exclude: module-name patterns kept dense, e.g. ``[head]`` for the classifier.
    """


class RandomPruning(_UnstructuredPruning):
    """``compression=prune_random``: the same, but the removed weights are chosen at random (the control)."""

    def scores(self, weights: dict[str, Tensor], ctx: CompressionContext) -> dict[str, Tensor] | None:
        generator = torch.Generator().manual_seed(ctx.seed + 7)
        return {name: torch.rand(w.shape, generator=generator) for name, w in weights.items()}


def cubic_sparsity(
    step: int, *, initial: float, final: float, begin_step: int, frequency: int, num_updates: int
) -> float:
    """Sparsity at ``step`` on the schedule of Zhu & Gupta (2017).

    ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3`` for ``t0 <= t <= t0 + n*dt``,
    evaluated at the last mask update (every ``dt`` steps); ``s_i`` before, ``s_f`` after.

    Example:
        >>> [round(cubic_sparsity(t, initial=0.0, final=0.8, begin_step=0, frequency=10, num_updates=2), 3)
        ...  for t in (0, 9, 10, 25)]
        [0.0, 0.0, 0.7, 0.8]
    """
    if step < begin_step:
        return initial
    updates = min((step - begin_step) // frequency, num_updates)
    progress = updates / num_updates
    return final + (initial - final) * (1 - progress) ** 3


def _total_steps(ctx: CompressionContext) -> int:
    n_train = ctx.task.train_size
    return sum(math.ceil(n_train / ctx.strategy.batch_size_at(e, n_train)) for e in range(ctx.strategy.epochs))


class GradualPruning(_UnstructuredPruning):
    """``compression=prune_gradual``: sparsity raised during training on the cubic schedule.

    Masks are recomputed by magnitude every ``frequency`` steps, from ``begin`` to ``end``
    (fractions of the main training's steps), and held fixed in between and afterwards.

    Args:
        amount: the final sparsity ``s_f``, in [0, 1).
        initial_sparsity: ``s_i``, in [0, amount].
        scope: ``global`` or ``layer``.
        begin: where pruning starts, as a fraction of the training steps, in [0, 1).
        end: where the final sparsity is reached, in (begin, 1].
        frequency: ``dt``, steps between mask updates (>= 1).
        finetune_epochs: extra epochs with the final mask fixed, after training.
        embeddings, include, exclude: which weights, as for ``prune``.

    After training, the weights are pruned to ``amount`` by magnitude once more: a no-op when
    the schedule ran to its end, the remainder when early stopping ended training first.
    """

    facts: ClassVar[MethodFacts] = MethodFacts("pruning", "in-training")

    def __init__(
        self,
        *,
        amount: float = 0.8,
        initial_sparsity: float = 0.0,
        scope: Scope = "global",
        begin: float = 0.0,
        end: float = 0.7,
        frequency: int = 10,
        finetune_epochs: int = 0,
        embeddings: bool = False,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> None:
        super().__init__(
            amount=amount,
            scope=scope,
            finetune_epochs=finetune_epochs,
            embeddings=embeddings,
            include=include,
            exclude=exclude,
        )
        self.initial_sparsity = check_fraction(initial_sparsity, "initial_sparsity")
        if self.initial_sparsity > self.amount:
            raise ValueError(f"compression.initial_sparsity={initial_sparsity}: must be <= amount ({amount})")
        if not 0 <= begin < end <= 1:
            raise ValueError(f"compression.begin={begin}, compression.end={end}: need 0 <= begin < end <= 1")
        if not (isinstance(frequency, int) and frequency >= 1):
            raise ValueError(f"compression.frequency={frequency}: must be an integer >= 1")
        self.begin, self.end, self.frequency = begin, end, frequency
        self.history: list[tuple[int, float]] = []  # (step, sparsity) at each mask update

    def schedule(self, total_steps: int) -> dict[str, Any]:
        """The schedule's ``begin_step``, ``frequency`` and ``num_updates`` for a run of ``total_steps``."""
        begin_step = round(self.begin * total_steps)
        num_updates = max(1, (round(self.end * total_steps) - begin_step) // self.frequency)
        return {"begin_step": begin_step, "frequency": self.frequency, "num_updates": num_updates}

    def training_hooks(self, ctx: CompressionContext) -> TrainingHooks:
        """A step hook that updates the masks every ``frequency`` steps and applies them after every step."""
        schedule = self.schedule(_total_steps(ctx))
        masks: dict[str, Tensor] = {}
        self.history = []

        def hook(model: nn.Module, step: int) -> None:
            offset = step - schedule["begin_step"]
            due = offset >= 0 and offset % self.frequency == 0 and offset // self.frequency <= schedule["num_updates"]
            if due:
                target = cubic_sparsity(step, initial=self.initial_sparsity, final=self.amount, **schedule)
                masks.update(select_masks(prunable_weights(model, self.selection), target, scope=self.scope))
                self.history.append((step, target))
            if masks:
                apply_masks(model, masks)

        return TrainingHooks(step_hook=hook)
