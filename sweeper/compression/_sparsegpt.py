"""SparseGPT: one-shot pruning that reconstructs the kept weights of each row from the pruned ones.

Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot" (ICML 2023,
arXiv:2301.00774), Section 3 and Algorithm 1, checked against the authors' code (IST-DASLab/sparsegpt,
``sparsegpt.py``). It is GPTQ's column sweep (:mod:`._gptq`) with "set to zero" in place of "round":

* Section 3.2: zeroing weight ``j`` of every row leaves an error that the OBS update
  ``W[:, j+1:] -= err_j * Hinv[j, j+1:] / Hinv[j, j]`` moves onto the columns not yet visited, with the
  rows of the inverse Hessians read from the upper Cholesky factor of ``H^-1`` (lazy batch updates of
  ``block_size`` columns, and again in sub-blocks of 16 inside each block; dead inputs and damping as in
  GPTQ).
* Section 3.3 (adaptive mask selection): the mask of a block of ``block_size`` columns is chosen when the
  sweep reaches the block, on the current (already corrected) weights, by the OBS saliency
  ``w^2 / [U]_jj^2`` (``U`` the Cholesky factor), the smallest being pruned. The reference ranks the
  block's weights of all rows together; here each row prunes the same share of each block
  (``floor(amount * end) - floor(amount * start)`` of its columns), so every output row ends with exactly
  ``floor(amount * in_features)`` zeros, the per-output comparison that Wanda (Sun et al. 2023, Section 3)
  found better for language models and that :mod:`._wanda` uses too.
* Section 3.4 (semi-structured N:M): at the first column of every group of ``m`` the ``m - n`` weights of
  lowest saliency in that group are pruned (the reference's ``prunen``/``prunem`` count the *pruned*
  weights; the ``pattern=(n, m)`` here counts the *kept* ones, as 2:4 sparsity is usually written). The
  block size is rounded up to a multiple of ``m`` so that no group straddles two blocks.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from sweeper.compression._base import MethodFacts
from sweeper.compression._calibration import LinearStats
from sweeper.compression._gptq import SUB_BLOCK, inverse_hessian_factor, sub_blocks
from sweeper.compression._lowbit import prune_count, resolve_sparsity, work_dtype
from sweeper.compression._posttraining import PruneMethod

__all__ = ["SparseGPT", "sparsegpt"]


def sparsegpt(
    weight: Tensor,
    hessian: Tensor,
    *,
    amount: float | None,
    pattern: tuple[int, int] | None = None,
    damp: float = 0.01,
    block_size: int = 128,
) -> Tensor:
    """Prune a Linear weight with SparseGPT (Algorithm 1 of Frantar & Alistarh 2023).

    Args:
        weight: ``(out_features, in_features)`` (not modified).
        hessian: ``(in_features, in_features)``, ``2/n * sum x x^T`` of the calibration inputs.
        amount: share of each row to zero, in [0, 1); may be ``None`` when ``pattern`` is given.
        pattern: ``(n, m)``: keep ``n`` of every ``m`` consecutive input columns of each row (2:4, 4:8).
        damp: relative diagonal damping of ``H``.
        block_size: columns per lazy-update (and mask-selection) block.

    Returns:
        The pruned and reconstructed weight, in the dtype of ``weight``.

    Raises:
        ValueError: naming ``compression.amount`` / ``compression.pattern`` when out of range, or a bad Hessian.

    Example:
        >>> torch.manual_seed(0) and None
        >>> x = torch.randn(256, 16)
        >>> pruned = sparsegpt(torch.randn(4, 16), 2 * x.T @ x / 256, amount=None, pattern=(2, 4))
        >>> (pruned.reshape(4, 4, 4) != 0).sum(-1).max().item()
        2
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size={block_size!r}: must be a positive integer")
    cols = weight.shape[1]
    share, nm = resolve_sparsity(amount, pattern, cols)
    if nm is None and prune_count(share, cols) == 0:
        return weight.detach().clone()
    dtype = work_dtype(weight)
    w = weight.detach().to(dtype, copy=True)
    upper, dead = inverse_hessian_factor(hessian.detach().to(w.device), cols, damp)
    upper = upper.to(dtype)
    w[:, dead] = 0
    step = SUB_BLOCK
    if nm is not None:  # no N:M group may straddle two blocks or sub-blocks
        block_size = -(-block_size // nm[1]) * nm[1]
        step = -(-SUB_BLOCK // nm[1]) * nm[1]
    saliency_scale = upper.diagonal().square()

    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        u1 = upper[i1:i2, i1:i2]
        prune = torch.zeros_like(w1, dtype=torch.bool)
        if nm is None:
            k = prune_count(share, i2) - prune_count(share, i1)
            if k:
                saliency = w1.square() / saliency_scale[i1:i2]
                prune.scatter_(1, torch.topk(saliency, k, dim=1, largest=False).indices, True)
        for j1, j2 in sub_blocks(i1, i2, step=step):
            end = j2 - i1
            for i in range(j1 - i1, end):
                if nm is not None and i % nm[1] == 0:  # groups lie inside sub-blocks: w1 is up to date here
                    n, m = nm
                    saliency = w1[:, i : i + m].square() / saliency_scale[i1 + i : i1 + i + m]
                    prune[:, i : i + m].scatter_(1, torch.topk(saliency, m - n, dim=1, largest=False).indices, True)
                wc = w1[:, i]
                q = wc.masked_fill(prune[:, i], 0.0)
                e = (wc - q) / u1[i, i]
                w1[:, i] = q
                w1[:, i + 1 : end].addr_(e, u1[i, i + 1 : end], alpha=-1)
                err1[:, i] = e
            if j2 < i2:
                w1[:, end:].addmm_(err1[:, j1 - i1 : end], u1[j1 - i1 : end, end:], alpha=-1)
        w[:, i1:i2] = w1
        if i2 < cols:
            w[:, i2:].addmm_(err1, upper[i1:i2, i2:], alpha=-1)
    return w.to(weight.dtype)


class SparseGPT(PruneMethod):
    """``compression=sparsegpt``: one-shot pruning with the kept weights updated to reconstruct each layer's
    output on its calibration inputs (:func:`sparsegpt`; the OBS update by the inverse Hessian).

    Args:
        damp: diagonal damping of the Hessian, relative to its mean diagonal.
        **settings: :class:`~sweeper.compression._posttraining.PruneMethod`'s (amount or pattern, ...).
    """

    facts: ClassVar[MethodFacts] = MethodFacts("pruning", "post-training", calibration=True)
    name = "sparsegpt"

    def __init__(self, *, damp: float = 0.01, **settings: Any) -> None:
        super().__init__(**settings)
        self.damp = float(damp)

    def prune(self, weight: Tensor, stats: LinearStats | None) -> Tensor:
        assert stats is not None  # calibrated
        amount = None if self.pattern else self.amount
        return sparsegpt(weight, stats.hessian, amount=amount, pattern=self.pattern, damp=self.damp)
