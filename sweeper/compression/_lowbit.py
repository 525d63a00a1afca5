"""Grouped integer weight quantization and N:M sparsity storage: the primitives the post-training methods share.

Quantization grid (the one of GPTQ's reference code, ``quant.py``, Frantar et al. 2022): each output row
of a weight is cut into groups of ``group_size`` consecutive input columns (``-1``: one group per row),
and each group gets a scale ``s`` and an integer zero point ``z`` so that a value ``w`` is stored as the
code ``c = clamp(round(w / s) + z, 0, 2**bits - 1)`` and read back as ``s * (c - z)``.

* Asymmetric: the range ``[min(w, 0), max(w, 0)]`` maps onto the codes (0 is always exactly representable,
  which keeps pruned or dead weights at exactly 0); ``z = round(-min / s)``.
* Symmetric: ``s = 2 * max|w| / (2**bits - 1)`` and ``z = 2**(bits - 1)`` (codes centred on the middle
  code). The reference leaves the range one-sided when a group has no negative value (then the largest
  value is clipped to about half); here the range is always ``[-max|w|, max|w|]``.
* An all-zero group gets the range ``[-1, 1]`` (any scale works; this one avoids dividing by 0).

Storage: codes are ``uint8`` tensors, one per value; :func:`pack_codes` packs them densely at ``bits`` bits
each (two 4-bit codes a byte, eight 3-bit codes in three bytes) and :func:`unpack_codes` restores them.
Scales are kept in float32 so that :meth:`LowBitWeight.dequantize` reproduces bit for bit the weight an
algorithm (RTN, GPTQ) computed with them.

N:M sparsity (``(n, m)``: at most ``n`` non-zero weights in every ``m`` consecutive input columns of a row,
the Ampere "2:4" format): :func:`nm_mask` chooses the kept positions from scores, :func:`pack_nm` stores
the ``n`` kept values of each group and their in-group positions at ``ceil(log2(m))`` bits each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sweeper.compression._storage import pack_groups, unpack_groups

__all__ = [
    "LowBitWeight",
    "dequantize_codes",
    "nm_mask",
    "pack_codes",
    "pack_nm",
    "quant_grid",
    "quantize_codes",
    "rtn",
    "unpack_codes",
    "unpack_nm",
]


def check_bits(bits: int) -> int:
    """The bit width, checked: an integer in 2..8 (``compression.bits``)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"compression.bits={bits!r}: must be an integer in 2..8")
    return bits


def resolve_group_size(group_size: int | None, in_features: int) -> int:
    """The group size as a column count: ``-1``/``None`` (per channel) becomes ``in_features``.

    Raises:
        ValueError: naming ``compression.group_size`` when it is neither -1 nor a positive divisor of
            ``in_features``.
    """
    if group_size is None or group_size == -1:
        return in_features
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size <= 0:
        raise ValueError(f"compression.group_size={group_size!r}: must be -1 (per channel) or a positive integer")
    if in_features % group_size:
        raise ValueError(
            f"compression.group_size={group_size}: must divide the layer's in_features ({in_features}), or be -1"
        )
    return group_size


def work_dtype(t: Tensor) -> torch.dtype:
    """The float type computations run in: float64 stays float64, anything else becomes float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_matrix(weight: Tensor, what: str = "weight") -> None:
    if weight.dim() != 2:
        raise ValueError(f"{what} must be a 2-D (out_features, in_features) matrix, got shape {tuple(weight.shape)}")


def group_grid(x: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Scale and zero point of each row of ``x`` (one group a row), as float tensors of shape ``(rows,)``.

    The arithmetic of GPTQ's ``Quantizer.find_params`` (see the module docstring for the symmetric case).
    """
    maxq = 2**bits - 1
    zero = x.new_zeros(())
    xmin = torch.minimum(x.amin(dim=-1), zero)
    xmax = torch.maximum(x.amax(dim=-1), zero)
    if symmetric:
        xmax = torch.maximum(-xmin, xmax)
        xmin = -xmax
    empty = (xmin == 0) & (xmax == 0)
    xmin = torch.where(empty, -1.0, xmin)
    xmax = torch.where(empty, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    if symmetric:
        zeros = torch.full_like(scale, float((maxq + 1) // 2))
    else:
        zeros = torch.clamp(torch.round(-xmin / scale), 0, maxq)
    return scale, zeros


def quant_grid(weight: Tensor, *, bits: int, group_size: int | None, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Per-group scales and zero points of a weight matrix, for round-to-nearest quantization.

    Args:
        weight: ``(out_features, in_features)``.
        bits: the code width, 2..8.
        group_size: input columns per group; ``-1`` or ``None`` for one group per row (per channel).
        symmetric: centred codes (zero point ``2**(bits-1)``) instead of a fitted zero point.

    Returns:
        ``(scales, zeros)``, both ``(out_features, in_features // group_size)``: float32 scales (float64
        for a float64 weight) and ``uint8`` zero points.

    Raises:
        ValueError: ``compression.bits`` outside 2..8, or ``compression.group_size`` not dividing
            ``in_features``.

    Example:
        >>> scales, zeros = quant_grid(torch.tensor([[-1.0, 0.0, 2.0, 3.0]]), bits=2, group_size=2, symmetric=False)
        >>> scales.tolist(), zeros.tolist()
        ([[0.3333333432674408, 1.0]], [[3, 0]])
    """
    check_bits(bits)
    _check_matrix(weight)
    out_features, in_features = weight.shape
    gs = resolve_group_size(group_size, in_features)
    w = weight.detach().to(work_dtype(weight)).reshape(out_features, in_features // gs, gs)
    scales, zeros = group_grid(w, bits, symmetric)
    return scales, zeros.to(torch.uint8)


def _expand(t: Tensor, in_features: int) -> Tensor:
    """A per-group ``(out, n_groups)`` tensor repeated over each group's columns: ``(out, in_features)``."""
    return t.repeat_interleave(in_features // t.shape[1], dim=1)


def quantize_codes(weight: Tensor, scales: Tensor, zeros: Tensor, bits: int) -> Tensor:
    """Integer codes of ``weight`` on a given grid (the group size is ``in_features // scales.shape[1]``).

    Args:
        weight: ``(out_features, in_features)``.
        scales: ``(out_features, n_groups)``, from :func:`quant_grid`.
        zeros: ``(out_features, n_groups)`` zero points.
        bits: the code width.

    Returns:
        ``uint8`` codes, ``(out_features, in_features)``.

    Example:
        >>> w = torch.tensor([[-1.0, 0.0, 2.0, 3.0]])
        >>> s, z = quant_grid(w, bits=2, group_size=2, symmetric=False)
        >>> quantize_codes(w, s, z, 2).tolist()
        [[0, 3, 2, 3]]
    """
    check_bits(bits)
    _check_matrix(weight)
    if scales.shape != zeros.shape or scales.dim() != 2 or weight.shape[1] % scales.shape[1]:
        raise ValueError(
            f"scales {tuple(scales.shape)} / zeros {tuple(zeros.shape)} do not fit a weight {tuple(weight.shape)}"
        )
    w = weight.detach().to(scales.dtype)
    s = _expand(scales, w.shape[1])
    z = _expand(zeros, w.shape[1]).to(scales.dtype)
    return torch.clamp(torch.round(w / s) + z, 0, 2**bits - 1).to(torch.uint8)


def dequantize_codes(codes: Tensor, scales: Tensor, zeros: Tensor, group_size: int | None) -> Tensor:
    """The float weight ``scale * (code - zero)`` that codes stand for (in the scales' float type).

    Args:
        codes: ``(out_features, in_features)`` integer codes.
        scales: ``(out_features, n_groups)``.
        zeros: ``(out_features, n_groups)``.
        group_size: input columns per group (``-1``/``None``: per channel).

    Returns:
        The ``(out_features, in_features)`` weight.
    """
    _check_matrix(codes, "codes")
    gs = resolve_group_size(group_size, codes.shape[1])
    if scales.shape != (codes.shape[0], codes.shape[1] // gs) or zeros.shape != scales.shape:
        raise ValueError(
            f"scales {tuple(scales.shape)} / zeros {tuple(zeros.shape)} do not fit codes {tuple(codes.shape)}"
        )
    s = _expand(scales, codes.shape[1])
    return s * (codes.to(scales.dtype) - _expand(zeros, codes.shape[1]).to(scales.dtype))


@dataclass
class LowBitWeight:
    """A weight stored as grouped integer codes.

    Attributes:
        codes: ``uint8`` codes, ``(out_features, in_features)``; in the column order ``perm`` when it is set.
        scales: ``(out_features, n_groups)`` float scales; group ``g`` covers stored columns
            ``g * group_size ... (g + 1) * group_size - 1``.
        zeros: ``(out_features, n_groups)`` ``uint8`` zero points.
        bits: code width.
        group_size: columns per group, ``-1`` for per channel.
        symmetric: whether the zero points are the fixed middle code (then they need no storage).
        perm: ``None`` when codes are in the weight's column order; else stored column ``k`` is the weight's
            column ``perm[k]`` (GPTQ with ``act_order`` and groups formed in that order).
    """

    codes: Tensor
    scales: Tensor
    zeros: Tensor
    bits: int
    group_size: int
    symmetric: bool
    perm: Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(out_features, in_features)`` of the weight."""
        return (int(self.codes.shape[0]), int(self.codes.shape[1]))

    def dequantize(self) -> Tensor:
        """The float weight the codes stand for, in the weight's column order.

        Returns:
            ``(out_features, in_features)`` in the scales' float type.
        """
        w = dequantize_codes(self.codes, self.scales, self.zeros, self.group_size)
        if self.perm is None:
            return w
        out = torch.empty_like(w)
        out[:, self.perm] = w
        return out

    def nbytes(self) -> int:
        """Bytes of the packed form: codes at ``bits`` bits, scales, zero points (asymmetric only, at
        ``bits`` bits) and the permutation (int16 or int32 a column) when there is one."""
        total = math.ceil(self.codes.numel() * self.bits / 8) + self.scales.numel() * self.scales.element_size()
        if not self.symmetric:
            total += math.ceil(self.zeros.numel() * self.bits / 8)
        if self.perm is not None:
            total += self.perm.numel() * (2 if self.perm.numel() <= 2**15 else 4)
        return total


def rtn(weight: Tensor, *, bits: int, group_size: int | None, symmetric: bool) -> LowBitWeight:
    """Round-to-nearest quantization of a weight on its own grid (:func:`quant_grid`).

    Args:
        weight: ``(out_features, in_features)``.
        bits: 2..8.
        group_size: input columns per group, ``-1``/``None`` per channel.
        symmetric: centred codes.

    Returns:
        The :class:`LowBitWeight`.

    Example:
        >>> q = rtn(torch.tensor([[0.1, -0.5, 0.25, 1.0]]), bits=8, group_size=-1, symmetric=True)
        >>> torch.allclose(q.dequantize(), torch.tensor([[0.1, -0.5, 0.25, 1.0]]), atol=4e-3)
        True
    """
    scales, zeros = quant_grid(weight, bits=bits, group_size=group_size, symmetric=symmetric)
    codes = quantize_codes(weight, scales, zeros, bits)
    gs = -1 if group_size is None or group_size == -1 or group_size == weight.shape[1] else group_size
    return LowBitWeight(codes, scales, zeros, bits, gs, symmetric)


def _check_pack_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits={bits!r}: packing takes 1..8 bits a value")


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Pack integer codes densely at ``bits`` bits each, little-endian (the first code in the lowest bits).

    Args:
        codes: integer codes in ``0 .. 2**bits - 1``, any shape (read flattened).
        bits: 1..8.

    Returns:
        A 1-D ``uint8`` tensor of ``ceil(codes.numel() * bits / 8)`` bytes.

    Raises:
        ValueError: a code outside ``0 .. 2**bits - 1``.

    Example:
        >>> pack_codes(torch.tensor([1, 2, 15, 0]), 4).tolist()
        [33, 15]
    """
    _check_pack_bits(bits)
    flat = codes.detach().reshape(-1)
    if flat.is_floating_point() or flat.is_complex():
        raise ValueError(f"codes must be integers, got {flat.dtype}")
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 2**bits):
        raise ValueError(f"codes must lie in 0..{2**bits - 1} to pack at {bits} bits")
    flat = flat.to(torch.uint8)
    if bits == 8:
        return flat.clone()
    return pack_groups(flat, bits)


def unpack_codes(packed: Tensor, bits: int, count: int) -> Tensor:
    """Inverse of :func:`pack_codes`: the first ``count`` codes, as a 1-D ``uint8`` tensor.

    Args:
        packed: the bytes from :func:`pack_codes`.
        bits: the width they were packed at.
        count: how many codes were packed.

    Returns:
        ``uint8`` codes, shape ``(count,)``.

    Example:
        >>> unpack_codes(torch.tensor([33, 15], dtype=torch.uint8), 4, 4).tolist()
        [1, 2, 15, 0]
    """
    _check_pack_bits(bits)
    packed = packed.detach().reshape(-1).to(torch.uint8)
    if packed.numel() * 8 < count * bits:
        raise ValueError(f"{packed.numel()} bytes hold fewer than {count} codes of {bits} bits")
    if bits == 8:
        return packed[:count].clone()
    return unpack_groups(packed, bits, count)


def check_nm(n: int, m: int, in_features: int | None = None) -> None:
    """Check an N:M pattern (``compression.pattern``): ``1 <= n <= m <= 256``, ``m`` dividing ``in_features``."""
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, m)) and 1 <= n <= m <= 256
    if not ok:
        raise ValueError(f"compression.pattern=({n!r}, {m!r}): needs integers 1 <= n <= m <= 256 (n kept in every m)")
    if in_features is not None and in_features % m:
        raise ValueError(f"compression.pattern=({n}, {m}): m must divide the layer's in_features ({in_features})")


def nm_mask(scores: Tensor, n: int, m: int) -> Tensor:
    """Keep-mask of the ``n`` highest scores in each group of ``m`` consecutive input columns of each row.

    Args:
        scores: ``(out_features, in_features)``, ``in_features`` a multiple of ``m``.
        n: kept per group.
        m: group length.

    Returns:
        A boolean mask, ``True`` where kept.

    Example:
        >>> nm_mask(torch.tensor([[0.1, 3.0, -2.0, 0.5]]), 2, 4).tolist()
        [[False, True, False, True]]
    """
    _check_matrix(scores, "scores")
    check_nm(n, m, scores.shape[1])
    groups = scores.detach().reshape(-1, m)
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=scores.device)
    keep.scatter_(1, torch.topk(groups, n, dim=1).indices, True)
    return keep.reshape(scores.shape)


def _index_bits(m: int) -> int:
    return max(1, math.ceil(math.log2(m)))


def pack_nm(weight: Tensor, n: int, m: int) -> tuple[Tensor, Tensor]:
    """Store an N:M-sparse weight as its kept values and their packed in-group positions.

    Args:
        weight: ``(out_features, in_features)`` with at most ``n`` non-zeros in each group of ``m`` columns.
        n: values stored per group.
        m: group length.

    Returns:
        ``(values, indices)``: ``values`` is ``(out_features, in_features // m * n)`` (a group with fewer
        than ``n`` non-zeros stores zeros for the rest), ``indices`` the positions in ``0..m-1``, ascending in
        each group, packed at ``ceil(log2(m))`` bits by :func:`pack_codes`.

    Raises:
        ValueError: a group has more than ``n`` non-zeros (storing it would lose values).

    Example:
        >>> values, indices = pack_nm(torch.tensor([[0.0, 3.0, 0.0, 0.5]]), 2, 4)
        >>> values.tolist(), indices.numel()
        ([[3.0, 0.5]], 1)
    """
    _check_matrix(weight)
    check_nm(n, m, weight.shape[1])
    groups = weight.detach().reshape(-1, m)
    if bool(((groups != 0).sum(dim=1) > n).any()):
        raise ValueError(f"the weight has more than {n} non-zeros in some group of {m}: prune it to {n}:{m} first")
    # Non-zeros first, then zeros, each by position: a canonical choice that keeps every non-zero.
    order = torch.sort((groups == 0).to(torch.uint8), dim=1, stable=True).indices[:, :n]
    idx = torch.sort(order, dim=1).values
    values = torch.gather(groups, 1, idx).reshape(weight.shape[0], -1)
    return values, pack_codes(idx, _index_bits(m))


def unpack_nm(values: Tensor, indices: Tensor, n: int, m: int) -> Tensor:
    """Inverse of :func:`pack_nm`: the dense ``(out_features, in_features)`` weight.

    Args:
        values: ``(out_features, in_features // m * n)`` kept values.
        indices: the packed positions from :func:`pack_nm`.
        n: values per group.
        m: group length.

    Returns:
        The dense weight, zeros where nothing was stored.
    """
    _check_matrix(values, "values")
    check_nm(n, m)
    if values.shape[1] % n:
        raise ValueError(f"values have {values.shape[1]} columns, not a multiple of n={n}")
    idx = unpack_codes(indices, _index_bits(m), values.numel()).reshape(-1, n).long()
    if bool((idx >= m).any()):
        raise ValueError(f"an index is outside 0..{m - 1}")
    dense = torch.zeros((idx.shape[0], m), dtype=values.dtype, device=values.device)
    dense.scatter_(1, idx.to(values.device), values.reshape(-1, n))
    return dense.reshape(values.shape[0], values.shape[1] // n * m)


def prune_count(amount: float, columns: int) -> int:
    """How many of ``columns`` weights a share ``amount`` removes (rounded down, robust to float error)."""
    return math.floor(amount * columns + 1e-9)


def resolve_sparsity(
    amount: float | None, pattern: tuple[int, int] | None, in_features: int
) -> tuple[float, tuple[int, int] | None]:
    """Check a pruning request: a per-row share ``amount`` in [0, 1), or an N:M ``pattern`` (n kept of m).

    With both, they must agree (``amount == 1 - n / m``).

    Returns:
        ``(amount, pattern)``, the amount filled in from the pattern when only the pattern is given.

    Raises:
        ValueError: naming ``compression.amount`` / ``compression.pattern``.
    """
    if pattern is not None:
        if not isinstance(pattern, (tuple, list)) or len(pattern) != 2:
            raise ValueError(f"compression.pattern={pattern!r}: must be (n, m), n kept in every m input columns")
        n, m = int(pattern[0]), int(pattern[1])
        check_nm(n, m, in_features)
        if amount is not None and abs(amount - (1 - n / m)) > 1e-9:
            raise ValueError(
                f"compression.amount={amount!r} disagrees with compression.pattern=({n}, {m}) ({1 - n / m:g})"
            )
        return 1 - n / m, (n, m)
    if amount is None:
        raise ValueError("give compression.amount (share of each row to zero) or compression.pattern (n, m)")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount < 1:
        raise ValueError(f"compression.amount={amount!r}: must be in [0, 1)")
    return float(amount), None
