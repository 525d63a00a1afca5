"""Low-rank factorization of a Linear weight by truncated SVD (Eckart-Young: the best rank-r approximation).

``W ≈ A @ B`` with ``A = U_r diag(sqrt(S_r))`` (``out x r``) and ``B = diag(sqrt(S_r)) Vh_r`` (``r x in``):
the singular values are split evenly between the factors, which keeps both on the same scale when they
are fine-tuned or quantized afterwards. The SVD runs in float64. A rank-``r`` layer stores
``r * (out + in)`` weights instead of ``out * in``: it saves parameters only when
``r < out * in / (out + in)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sweeper.artifact import ModelSpec, load_state, register_loader
from sweeper.compression._base import Compressed, CompressionContext, MethodFacts
from sweeper.compression._calibration import LinearStats
from sweeper.compression._posttraining import LinearMethod
from sweeper.compression._storage import decode_state, encode_state

__all__ = ["LowRank", "LowRankLinear", "lowrank"]


def lowrank(weight: Tensor, *, rank: int | None = None, energy: float | None = None) -> tuple[Tensor, Tensor]:
    """Factor a weight as ``A @ B`` by truncated SVD, at a given rank or the least rank keeping an energy share.

    Args:
        weight: ``(out_features, in_features)``.
        rank: the rank ``r``, ``1 <= r <= min(out_features, in_features)``.
        energy: instead of ``rank``: the smallest ``r`` whose singular values keep at least this share, in
            (0, 1], of ``sum(S^2)`` (the squared Frobenius norm).

    Returns:
        ``(A, B)``: ``(out_features, r)`` and ``(r, in_features)``, in the weight's float type.

    Raises:
        ValueError: naming ``compression.rank`` / ``compression.energy`` when out of range, or when neither or
            both are given.

    Example:
        >>> a, b = lowrank(torch.outer(torch.arange(1.0, 4.0), torch.ones(5)), energy=0.99)
        >>> a.shape, b.shape, torch.allclose(a @ b, torch.outer(torch.arange(1.0, 4.0), torch.ones(5)))
        (torch.Size([3, 1]), torch.Size([1, 5]), True)
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of compression.rank and compression.energy")
    full = min(weight.shape)
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= full):
        raise ValueError(f"compression.rank={rank!r}: must be an integer in 1..{full} (min(out_features, in_features))")
    if energy is not None and (isinstance(energy, bool) or not isinstance(energy, (int, float)) or not 0 < energy <= 1):
        raise ValueError(f"compression.energy={energy!r}: must be in (0, 1]")
    u, s, vh = torch.linalg.svd(weight.detach().to(torch.float64), full_matrices=False)
    if rank is None:
        assert energy is not None
        power = s.square()
        total = float(power.sum())
        if total == 0:
            rank = 1
        else:
            kept = torch.cumsum(power, 0) / total
            # Smallest r with kept[r - 1] >= energy; the tolerance absorbs rounding of the cumulative sum.
            rank = min(int((kept < energy - 1e-12).sum()) + 1, full)
    root = s[:rank].sqrt()
    dtype = weight.dtype if weight.is_floating_point() else torch.float32
    return (u[:, :rank] * root).to(dtype), (root[:, None] * vh[:rank]).to(dtype)


class LowRankLinear(nn.Module):
    """``y = x B^T A^T + bias``: a Linear whose weight is the product ``A @ B``, as two Linear layers.

    ``down`` (``in_features -> rank``, no bias) holds ``B`` and ``up`` (``rank -> out_features``) holds ``A``
    and the bias, so other methods (quantization, pruning) see two ordinary ``nn.Linear``.

    Args:
        a: ``(out_features, rank)``.
        b: ``(rank, in_features)``.
        bias: ``(out_features,)`` or ``None``.

    Example:
        >>> layer = LowRankLinear.from_linear(nn.Linear(6, 4), rank=2)
        >>> layer(torch.randn(3, 6)).shape, layer.rank
        (torch.Size([3, 4]), 2)
    """

    def __init__(self, a: Tensor, b: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"A {tuple(a.shape)} and B {tuple(b.shape)} must be (out, r) and (r, in)")
        if bias is not None and bias.shape != (a.shape[0],):
            raise ValueError(f"bias has shape {tuple(bias.shape)}, expected ({a.shape[0]},)")
        factory = {"device": a.device, "dtype": a.dtype}
        self.down = nn.Linear(b.shape[1], b.shape[0], bias=False, **factory)
        self.up = nn.Linear(a.shape[1], a.shape[0], bias=bias is not None, **factory)
        with torch.no_grad():
            self.down.weight.copy_(b)
            self.up.weight.copy_(a)
            if bias is not None:
                assert self.up.bias is not None
                self.up.bias.copy_(bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, rank: int | None = None, energy: float | None = None) -> LowRankLinear:
        """The low-rank replacement of ``linear`` (:func:`lowrank` of its weight, its bias kept).

        Args:
            linear: the layer to factor.
            rank: the rank, or
            energy: the share of the squared singular values to keep.

        Returns:
            The new module (``linear`` is unchanged).
        """
        a, b = lowrank(linear.weight, rank=rank, energy=energy)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(a, b, bias)

    @property
    def in_features(self) -> int:
        """Input width."""
        return self.down.in_features

    @property
    def out_features(self) -> int:
        """Output width."""
        return self.up.out_features

    @property
    def rank(self) -> int:
        """The factorization's rank."""
        return self.down.out_features

    def forward(self, x: Tensor) -> Tensor:
        """``x @ B.T @ A.T + bias``."""
        return self.up(self.down(x))


class LowRank(LinearMethod):
    """``compression=lowrank``: every target Linear replaced by its two SVD factors (:class:`LowRankLinear`):
    fewer weights and two smaller matrix products that really run (``latency_kind=real``).

    Args:
        rank: the rank of every layer (capped at ``min(out_features, in_features)`` of each), or
        energy: per layer, the least rank keeping this share of the squared singular values.
        **common: :class:`~sweeper.compression._posttraining.LinearMethod`'s (include, exclude, keep_output).
    """

    facts: ClassVar[MethodFacts] = MethodFacts("low-rank", "post-training")
    name = "lowrank"
    needs_calibration = False

    def __init__(self, *, rank: int | None = None, energy: float | None = 0.9, **common: Any) -> None:
        super().__init__(**common)
        if rank is not None:
            energy = None  # a rank, when given, decides
        lowrank(torch.ones(1, 1), rank=1 if rank is not None else None, energy=energy)  # the energy's range
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"compression.rank={rank!r}: must be an integer >= 1 (or null, with an energy)")
        self.rank, self.energy = rank, energy

    def process(self, name: str, linear: nn.Linear, stats: LinearStats | None) -> None:
        raise NotImplementedError  # compress() replaces the modules themselves

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Factor every target layer; write the ``lowrank`` artifact."""
        model = model.cpu().eval()
        # nn.MultiheadAttention reads its out_proj's weight directly: that one stays a Linear
        inside_attention = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
        targets = {n: m for n, m in self.targets(model, ctx).items() if id(m) not in inside_attention}
        ranks: dict[str, int] = {}
        before = sum(layer.weight.numel() for layer in targets.values())
        for name, layer in targets.items():
            rank = None if self.rank is None else min(self.rank, *layer.weight.shape)
            factored = LowRankLinear.from_linear(layer, rank=rank, energy=self.energy)
            _replace(model, name, factored)
            ranks[name] = factored.rank
        after = sum(r * (targets[n].in_features + targets[n].out_features) for n, r in ranks.items())
        payload = {"state": encode_state(model.state_dict()), "ranks": ranks}
        metrics = {"mean_rank": sum(ranks.values()) / len(ranks), "factored_share": after / before}
        return Compressed(
            model, "lowrank", payload, metrics=metrics, params={f"layers.{n}.rank": r for n, r in ranks.items()}
        )


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


@register_loader("lowrank")
def _load_lowrank(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    model = spec.build()
    for name, rank in payload["ranks"].items():
        layer = model.get_submodule(name)
        assert isinstance(layer, nn.Linear)
        a, b = torch.zeros(layer.out_features, rank), torch.zeros(rank, layer.in_features)
        _replace(model, name, LowRankLinear(a, b, None if layer.bias is None else torch.zeros(layer.out_features)))
    return load_state(model, decode_state(payload["state"]))
