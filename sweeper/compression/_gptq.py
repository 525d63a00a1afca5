"""GPTQ: one-shot weight quantization that corrects each rounding error on the columns not yet quantized.

Frantar, Ashkboos, Hoefler & Alistarh, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers" (ICLR 2023, arXiv:2210.17323), Section 4 and Algorithm 1, checked against the
authors' code (IST-DASLab/gptq, ``gptq.py``). For a Linear with calibration inputs ``X`` the layer-wise
objective is ``||X W^T - X Q^T||^2``, whose Hessian is ``H = 2 X^T X`` (:mod:`._calibration` accumulates it).
Each row is independent and shares ``H``, so all rows are quantized together, one input column at a time:

* Step 1 (arbitrary order): columns are quantized left to right; the error of column ``j`` is spread over
  the later columns by the OBS update ``W[:, j+1:] -= err_j * Hinv[j, j+1:] / Hinv[j, j]``.
* Step 2 (lazy batch updates): inside a block of ``block_size`` columns the updates are applied column by
  column; the rest of the matrix gets the block's accumulated errors in one matrix product. The same is
  done once more inside the block, in sub-blocks of 16 columns (:data:`SUB_BLOCK`), for speed on CPUs.
* Step 3 (Cholesky reformulation): the rows of the successive inverse Hessians that the updates need are
  the rows of the upper Cholesky factor of ``H^-1``, computed once (in float64 here, for robustness).
  ``H`` is dampened by ``damp * mean(diag(H))`` first; if the factorization still fails the damping is
  raised tenfold, up to five times (the reference would stop with an error).

Dead inputs (``H[j, j] == 0``: the input column is always 0) are handled as in the reference: ``H[j, j] = 1``
and ``W[:, j] = 0``, so they quantize to exactly 0 and cost nothing.

``act_order`` (the reference's ``--act-order``) processes columns by descending ``diag(H)``, the inputs
with the most energy first, while many columns remain to absorb their error. With groups there are two
variants in the reference, both here:

* default (``static_groups=False``, the reference's default): group parameters are fitted when the
  processing reaches each group's first column, on the current (already error-corrected) values of the
  next ``group_size`` columns *in processing order*. The groups are then groups of permuted columns, so the
  result stores its codes in that order with the permutation (:attr:`LowBitWeight.perm`); dequantizing
  puts the columns back. This is the more accurate variant. (The reference fits on the weight as of the
  block start, which equals the current values when groups and blocks are aligned, 128/128 by default;
  here the pending in-block updates are applied first, so any sizes work.)
* ``static_groups=True``: group parameters are fitted once, before any update, on groups of consecutive
  original columns; the permutation only changes the processing order, the codes are stored in the
  original order and no permutation is kept (what fixed-layout inference kernels need).

Per-channel quantization (``group_size=-1``) fits one grid per row on the initial weight, as the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

from sweeper.compression._base import MethodFacts
from sweeper.compression._calibration import LinearStats
from sweeper.compression._lowbit import LowBitWeight, check_bits, group_grid, quant_grid, resolve_group_size, work_dtype
from sweeper.compression._posttraining import LowBitMethod

__all__ = ["GPTQ", "gptq", "inverse_hessian_factor"]


def inverse_hessian_factor(hessian: Tensor, in_features: int, damp: float) -> tuple[Tensor, Tensor]:
    """Upper Cholesky factor of the dampened inverse Hessian, and the mask of dead inputs.

    Args:
        hessian: ``(in_features, in_features)``, symmetric positive semi-definite (not modified).
        in_features: its expected size.
        damp: relative damping, added as ``damp * mean(diag(H))`` to the diagonal.

    Returns:
        ``(U, dead)``: float64 ``U`` with ``U^T U = (H + lambda I)^-1`` (dead diagonal entries set to 1 first)
        and a boolean ``(in_features,)`` mask of the inputs whose ``H[j, j]`` is 0.

    Raises:
        ValueError: a Hessian of the wrong shape or with non-finite values, or a negative ``damp``.
    """
    if hessian.shape != (in_features, in_features):
        raise ValueError(f"the Hessian has shape {tuple(hessian.shape)}, expected ({in_features}, {in_features})")
    if not (isinstance(damp, (int, float)) and damp >= 0):
        raise ValueError(f"compression.damp={damp!r}: must be a number >= 0")
    h = hessian.detach().to(torch.float64, copy=True)
    if not bool(torch.isfinite(h).all()):
        raise ValueError("the Hessian has non-finite values (overflowing activations?)")
    diag = h.diagonal()
    dead = diag == 0
    diag[dead] = 1.0
    base = float(diag.mean())
    lam = damp * base
    for _ in range(6):
        h_damped = h.clone()
        h_damped.diagonal().add_(lam)
        chol, info = torch.linalg.cholesky_ex(h_damped)
        if int(info) == 0:
            break
        # Not positive definite at this damping (rank-deficient H from few tokens, or float error).
        lam = max(lam, 1e-8 * base) * 10
    else:
        raise ValueError("the Hessian is not positive definite even with strong damping")
    inverse = torch.cholesky_inverse(chol)
    upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
    if int(info) != 0:
        raise ValueError("the inverse Hessian could not be factorized; raise compression.damp")
    return upper, dead


def gptq(weight: Tensor, hessian: Tensor, **settings: Any) -> LowBitWeight:
    """Quantize a Linear weight with GPTQ (Algorithm 1 of Frantar et al. 2022).

    Args:
        weight: ``(out_features, in_features)`` (not modified).
        hessian: ``(in_features, in_features)``: ``2/n * sum x x^T`` over the calibration inputs
            (:attr:`._calibration.LinearStats.hessian`); any positive multiple gives the same result.
        settings: keyword-only, as :func:`_gptq` takes them:
        bits: 2..8.
        group_size: input columns per group, ``-1``/``None`` per channel.
        symmetric: centred codes instead of fitted zero points.
        act_order: process columns by descending ``diag(H)``.
        static_groups: with ``act_order`` and groups, fit the groups on the original columns before any
            update instead of in processing order (see the module docstring).
        damp: relative diagonal damping of ``H``.
        block_size: columns per lazy-update block.

    Returns:
        The :class:`LowBitWeight`; its :meth:`~LowBitWeight.dequantize` is exactly the weight GPTQ chose,
        in the original column order.

    Raises:
        ValueError: ``compression.bits`` / ``compression.group_size`` out of range, a bad Hessian.

    Example:
        >>> torch.manual_seed(0) and None
        >>> x = torch.randn(256, 16)
        >>> w = torch.randn(8, 16)
        >>> q = gptq(w, 2 * x.T @ x / 256, bits=4, group_size=-1, symmetric=False, act_order=True)
        >>> q.codes.shape, q.perm is None
        (torch.Size([8, 16]), True)
    """
    return _gptq(weight, hessian, **settings)[0]


def _gptq(
    weight: Tensor,
    hessian: Tensor,
    *,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    act_order: bool,
    static_groups: bool = False,
    damp: float = 0.01,
    block_size: int = 128,
    keep_weight: bool = False,
) -> tuple[LowBitWeight, Tensor | None]:
    """:func:`gptq`, also returning (``keep_weight``) the quantized weight as the loop computed it."""
    check_bits(bits)
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size={block_size!r}: must be a positive integer")
    rows, cols = weight.shape
    gs = resolve_group_size(group_size, cols)
    dtype = work_dtype(weight)
    maxq = 2**bits - 1

    if hessian.shape != (cols, cols):
        raise ValueError(f"the Hessian has shape {tuple(hessian.shape)}, expected ({cols}, {cols})")
    w = weight.detach().to(dtype, copy=True)
    hessian = hessian.detach().to(w.device)
    diag = hessian.detach().diagonal().to(torch.float64).clone()
    dead = diag == 0
    w[:, dead] = 0
    perm: Tensor | None = None
    if act_order:
        diag[dead] = 1.0  # as the reference, which sorts after setting dead diagonals to 1
        perm = torch.argsort(diag, descending=True, stable=True)
    upper = inverse_hessian_factor(_permuted(hessian, perm), cols, damp)[0].to(w.device, dtype)

    fixed_grid = gs == cols or static_groups  # the grid is known before the loop
    if fixed_grid:
        scales, zeros = quant_grid(w, bits=bits, group_size=gs, symmetric=symmetric)
        col_group = torch.arange(cols, device=w.device) // gs
        if perm is not None:
            col_group = col_group[perm]
        # Per processing column, one contiguous row each: (cols, rows).
        col_scales = scales[:, col_group].T.contiguous()
        col_zeros = zeros[:, col_group].T.to(dtype).contiguous()
    else:
        scales = torch.empty((rows, cols // gs), dtype=dtype, device=w.device)
        zeros = torch.empty((rows, cols // gs), dtype=torch.uint8, device=w.device)
    if perm is not None:
        w = w[:, perm]

    codes = torch.empty((rows, cols), dtype=torch.uint8, device=w.device)
    chosen = torch.empty_like(w) if keep_weight else None
    s = z = w.new_empty(0)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        u1 = upper[i1:i2, i1:i2]
        for j1, j2 in sub_blocks(i1, i2, None if fixed_grid else gs):
            end = j2 - i1
            for col in range(j1, j2):
                i = col - i1
                if fixed_grid:
                    s, z = col_scales[col], col_zeros[col]
                elif col % gs == 0:  # a sub-block start: w1 is up to date
                    s, z = _fit_group(w, w1, err1, upper, i1, i2, i, gs, bits, symmetric)
                    scales[:, col // gs] = s
                    zeros[:, col // gs] = z.to(torch.uint8)
                wc = w1[:, i]
                c = torch.clamp(torch.round(wc / s) + z, 0, maxq)
                q = s * (c - z)
                codes[:, col] = c.to(torch.uint8)
                if chosen is not None:
                    chosen[:, col] = q
                e = (wc - q) / u1[i, i]
                w1[:, i + 1 : end].addr_(e, u1[i, i + 1 : end], alpha=-1)
                err1[:, i] = e
            if j2 < i2:
                w1[:, end:].addmm_(err1[:, j1 - i1 : end], u1[j1 - i1 : end, end:], alpha=-1)
        if i2 < cols:
            w[:, i2:].addmm_(err1, upper[i1:i2, i2:], alpha=-1)

    stored_perm: Tensor | None = None
    if perm is not None:
        if fixed_grid:
            # Groups are in the original column order: store the codes in it too.
            unpermuted = torch.empty_like(codes)
            unpermuted[:, perm] = codes
            codes = unpermuted
        else:
            stored_perm = perm
    if chosen is not None and perm is not None:
        unpermuted_w = torch.empty_like(chosen)
        unpermuted_w[:, perm] = chosen
        chosen = unpermuted_w
    result = LowBitWeight(codes, scales, zeros, bits, -1 if gs == cols else gs, symmetric, stored_perm)
    return result, chosen


SUB_BLOCK = 16
"""Columns updated one by one inside a block; their errors reach the rest of the block in one product. This
second level of lazy updates keeps each per-column rank-1 update small (rows x 16 instead of rows x 128,
below the size at which torch splits an op over threads): about 25 % faster on one thread on the 135M Llama's
layers, and the same numbers up to float rounding."""


def sub_blocks(start: int, stop: int, align: int | None = None, step: int = SUB_BLOCK) -> Iterator[tuple[int, int]]:
    """Split the columns ``start .. stop - 1`` into runs of at most ``step``, also cut at multiples of ``align``.

    Example:
        >>> list(sub_blocks(0, 40, align=24))
        [(0, 16), (16, 24), (24, 40)]
    """
    j = start
    while j < stop:
        end = min(j + step, stop)
        if align:
            end = min(end, (j // align + 1) * align)
        yield j, end
        j = end


def _permuted(hessian: Tensor, perm: Tensor | None) -> Tensor:
    h = hessian.detach()
    return h if perm is None else h[perm][:, perm]


def _fit_group(
    w: Tensor, w1: Tensor, err1: Tensor, upper: Tensor, i1: int, i2: int, i: int, gs: int, bits: int, symmetric: bool
) -> tuple[Tensor, Tensor]:
    """Grid of the group starting at processing column ``i1 + i``, fitted on the columns' current values.

    Columns inside the block are up to date in ``w1``; those past the block still miss the updates of the
    block's first ``i`` columns, applied here to a copy.
    """
    col = i1 + i
    end = min(col + gs, w.shape[1])
    current = w1[:, i : min(end, i2) - i1]
    if end > i2:
        rest = w[:, i2:end] - err1[:, :i] @ upper[i1:col, i2:end]
        current = torch.cat([current, rest], dim=1)
    return group_grid(current, bits, symmetric)


class GPTQ(LowBitMethod):
    """``compression=gptq``: each layer quantized column by column, the error of each column spread over the
    columns not yet quantized by the inverse Hessian of its calibration inputs (:func:`gptq`).

    Args:
        act_order: quantize the columns of largest Hessian diagonal first.
        damp: diagonal damping of the Hessian, relative to its mean diagonal.
        **settings: :class:`~sweeper.compression._posttraining.LowBitMethod`'s (bits, group size, ...).
    """

    facts: ClassVar[MethodFacts] = MethodFacts("quantization", "post-training", final=True, calibration=True)
    name = "gptq"

    def __init__(self, *, act_order: bool = True, damp: float = 0.01, **settings: Any) -> None:
        super().__init__(**settings)
        if not (isinstance(damp, int | float) and not isinstance(damp, bool) and 0 < damp < 1):
            raise ValueError(f"compression.damp={damp!r}: must be in (0, 1)")
        self.act_order, self.damp = bool(act_order), float(damp)

    def quantize(self, weight: Tensor, stats: LinearStats | None) -> tuple[LowBitWeight, Tensor | None]:
        assert stats is not None  # calibrated
        return gptq(weight, stats.hessian, act_order=self.act_order, damp=self.damp, **self.grid), None
