"""Wanda and per-row magnitude pruning: zero the lowest-scored weights of each output row, no weight update.

Sun, Liu, Bair & Kolter, "A Simple and Effective Pruning Approach for Large Language Models" (ICLR 2024,
arXiv:2306.11695), Section 3, checked against the authors' code (locuslab/wanda, ``lib/prune.py``):

* Pruning metric: ``S_ij = |W_ij| * ||X_j||_2``, the weight magnitude times the L2 norm of its input
  feature over all calibration tokens (:attr:`._calibration.LinearStats.input_norm`). Any positive
  multiple of the norms (the reference divides the squared norms by the number of samples) ranks the
  same.
* Comparison group: per output row. Each row loses exactly ``floor(amount * in_features)`` weights, its
  lowest-scored ones (a stable sort, so ties go to the lower column index, as the reference's).
* N:M: the ``m - n`` lowest scores of every ``m`` consecutive input columns of each row are pruned
  (``pattern=(n, m)`` counts the kept weights; the reference's ``prune_n`` counts the pruned ones).

:func:`magnitude` is the same with ``S_ij = |W_ij|``: calibration-free, and the baseline Wanda is compared to
(with per-row rather than per-layer ranking, so the two differ only in the score).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from sweeper.compression._base import MethodFacts
from sweeper.compression._calibration import LinearStats
from sweeper.compression._lowbit import nm_mask, prune_count, resolve_sparsity
from sweeper.compression._posttraining import PruneMethod

__all__ = ["Magnitude", "Wanda", "magnitude", "prune_by_score", "wanda"]


def prune_by_score(
    weight: Tensor, scores: Tensor, *, amount: float | None, pattern: tuple[int, int] | None = None
) -> Tensor:
    """Zero the lowest ``scores`` of each row of ``weight`` (a share ``amount``, or all but ``n`` of every ``m``).

    Args:
        weight: ``(out_features, in_features)`` (not modified).
        scores: same shape; higher is kept.
        amount: share of each row to zero, in [0, 1); ``None`` with a ``pattern``.
        pattern: ``(n, m)``, ``n`` kept in every ``m`` consecutive input columns.

    Returns:
        The pruned copy of ``weight``.

    Raises:
        ValueError: naming ``compression.amount`` / ``compression.pattern`` when out of range.
    """
    if weight.dim() != 2 or scores.shape != weight.shape:
        raise ValueError(f"weight {tuple(weight.shape)} and scores {tuple(scores.shape)} must be the same 2-D shape")
    share, nm = resolve_sparsity(amount, pattern, weight.shape[1])
    if nm is not None:
        keep = nm_mask(scores, *nm)
    else:
        keep = torch.ones_like(weight, dtype=torch.bool)
        k = prune_count(share, weight.shape[1])
        if k:
            order = torch.sort(scores.detach(), dim=1, stable=True).indices[:, :k]
            keep.scatter_(1, order, False)
    return weight.detach().masked_fill(~keep, 0.0)


def wanda(
    weight: Tensor, input_norm: Tensor, *, amount: float | None, pattern: tuple[int, int] | None = None
) -> Tensor:
    """Prune with Wanda's score ``|W_ij| * ||X_j||_2``, compared within each output row.

    ``input_norm``: ``(in_features,)``, the L2 norm of each input feature over the calibration tokens; the
    other arguments, the result and the errors as :func:`prune_by_score`'s (and a norm vector of the wrong size).

    Example:
        >>> w = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
        >>> wanda(w, torch.tensor([10.0, 1.0, 1.0, 1.0]), amount=0.5).tolist()
        [[1.0, 0.0, 3.0, 0.0]]
    """
    if input_norm.shape != (weight.shape[-1],):
        raise ValueError(f"input_norm has shape {tuple(input_norm.shape)}, expected ({weight.shape[-1]},)")
    if bool((input_norm < 0).any()):
        raise ValueError("input_norm must be non-negative (the L2 norms of the input features)")
    scores = weight.detach().abs().to(torch.float32) * input_norm.detach().to(weight.device, torch.float32)
    return prune_by_score(weight, scores, amount=amount, pattern=pattern)


def magnitude(weight: Tensor, *, amount: float | None, pattern: tuple[int, int] | None = None) -> Tensor:
    """Prune the smallest ``|W_ij|`` of each output row (calibration-free; Wanda without the input norms).
    Arguments, result and errors as :func:`prune_by_score`'s.

    Example:
        >>> magnitude(torch.tensor([[1.0, -2.0, 3.0, 0.5]]), amount=None, pattern=(2, 4)).tolist()
        [[0.0, -2.0, 3.0, 0.0]]
    """
    return prune_by_score(weight, weight.detach().abs(), amount=amount, pattern=pattern)


class Wanda(PruneMethod):
    """``compression=wanda``: prune by ``|W_ij| * ||X_j||``, the weight times its input's norm over the
    calibration inputs, compared within each output row; no weight update (:func:`wanda`)."""

    facts: ClassVar[MethodFacts] = MethodFacts("pruning", "post-training", calibration=True)
    name = "wanda"
    needs_hessian = False

    def prune(self, weight: Tensor, stats: LinearStats | None) -> Tensor:
        assert stats is not None  # calibrated
        return wanda(weight, stats.input_norm, amount=None if self.pattern else self.amount, pattern=self.pattern)


class Magnitude(PruneMethod):
    """``compression=magnitude``: prune the smallest ``|W_ij|`` of each output row, with Wanda's and SparseGPT's
    layers, knobs and patterns but no calibration data: the comparison that isolates what the data adds."""

    facts: ClassVar[MethodFacts] = MethodFacts("pruning", "post-training")
    name = "magnitude"
    needs_calibration = False

    def prune(self, weight: Tensor, stats: LinearStats | None) -> Tensor:
        return magnitude(weight, amount=None if self.pattern else self.amount, pattern=self.pattern)
