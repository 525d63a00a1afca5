"""Per-input-channel scaling before quantization: AWQ's searched scales and SmoothQuant's closed form.

Both rewrite a Linear ``y = x W^T`` as ``y = (x / s) (W diag(s))^T``: the product is unchanged in exact
arithmetic, but the quantization error moves between weights and activations.

* AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration",
  MLSys 2024, arXiv:2306.00978, Section 3.2, Eq. 4-5; mit-han-lab/llm-awq, ``awq/quantize/auto_scale.py``):
  scaling up the weights of salient input channels (those with large activations) before weight-only
  quantization shrinks their relative rounding error. ``s = mean|x|^alpha``, normalised to
  ``s / sqrt(max(s) * min(s))``, with ``alpha`` searched on a grid over [0, 1) to minimise the output error
  ``||x W^T - (x / s) Q(W diag(s))^T||^2`` of all the Linear layers fed the same input (q, k, v; gate, up).
  The reference measures the error on the output of the enclosing module (the attention block for q, k,
  v); here it is the sum over the Linear outputs, which needs no model. ``alpha = 0`` gives ``s = 1``
  (plain RTN), so the chosen scales are never worse than RTN on the sample. AWQ's second step, the
  clipping-range search (``auto_clip``), is not included.
* SmoothQuant (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large
  Language Models", ICML 2023, arXiv:2211.10438, Section 4, Eq. 4; mit-han-lab/smoothquant,
  ``smoothquant/smooth.py``): for W8A8, ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` moves activation
  outliers into the weights (``max|W_j|`` over all the Linear layers sharing the input).

Folding: ``1 / s`` must be applied to the input. When the input comes from a LayerNorm/RMSNorm, divide
the norm's weight (and bias) by ``s``, which costs nothing at inference (the references do this for
q/k/v and gate/up); when it is the output of another Linear (v_proj before o_proj without grouped-query
attention, up_proj before down_proj in a gated MLP) divide that Linear's output rows (weight rows and
bias) by ``s``; otherwise keep ``1 / s`` as an explicit per-channel multiplier in front of the Linear.
:func:`apply_input_scales` does the weight side and returns the ``1 / s`` to fold; folding it into a model
is the caller's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sweeper.compression._base import MethodFacts
from sweeper.compression._calibration import LinearStats
from sweeper.compression._lowbit import LowBitWeight, check_bits, rtn
from sweeper.compression._posttraining import LowBitMethod, check_positive

__all__ = ["AWQ", "apply_input_scales", "awq_scales", "smoothquant_scales"]


def _weights(weight_list: Sequence[Tensor | nn.Linear]) -> list[Tensor]:
    weights = [(w.weight if isinstance(w, nn.Linear) else w).detach() for w in weight_list]
    if not weights:
        raise ValueError("give at least one weight")
    in_features = weights[0].shape[-1]
    for w in weights:
        if w.dim() != 2 or w.shape[1] != in_features:
            raise ValueError(
                f"the weights must be 2-D with the same in_features, got {[tuple(v.shape) for v in weights]}"
            )
    return weights


def awq_scales(
    weight_list: Sequence[Tensor | nn.Linear],
    inputs_sample: Tensor,
    *,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    grid: int = 20,
) -> Tensor:
    """AWQ's activation-aware scales for Linear layers that share one input.

    Args:
        weight_list: the layers' weights (``(out_i, in_features)`` tensors or the ``nn.Linear`` modules).
        inputs_sample: rows of their common input, ``(..., in_features)``
            (:attr:`._calibration.LinearStats.sample`).
        bits: weight bits of the RTN quantizer the scales are tuned for, 2..8.
        group_size: its group size (``-1``/``None`` per channel).
        symmetric: its code layout.
        grid: how many ``alpha = k / grid`` values, ``k = 0 .. grid - 1``, to try.

    Returns:
        Float32 scales ``s``, shape ``(in_features,)``: multiply the weight columns by ``s`` and the input by
        ``1 / s`` (:func:`apply_input_scales`).

    Raises:
        ValueError: an empty sample, mismatched shapes, a bad ``grid`` or quantizer setting.

    Example:
        >>> torch.manual_seed(0) and None
        >>> s = awq_scales([torch.randn(8, 16)], torch.randn(64, 16), bits=4, group_size=-1, symmetric=False)
        >>> s.shape
        torch.Size([16])
    """
    check_bits(bits)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid={grid!r}: must be a positive integer")
    weights = [w.to(torch.float32) for w in _weights(weight_list)]
    in_features = weights[0].shape[1]
    if inputs_sample.shape[-1] != in_features or inputs_sample.numel() == 0:
        raise ValueError(f"inputs_sample {tuple(inputs_sample.shape)} must be non-empty rows of {in_features} features")
    x = inputs_sample.detach().reshape(-1, in_features).to(weights[0].device, torch.float32)
    x_mean = x.abs().mean(dim=0)
    reference = [x @ w.T for w in weights]
    total = sum(r.numel() for r in reference)

    best_loss = float("inf")
    best = torch.ones(in_features, dtype=torch.float32, device=x.device)
    for k in range(grid):
        s = x_mean.pow(k / grid).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        loss = 0.0
        for w, ref in zip(weights, reference, strict=True):
            w_hat = rtn(w * s, bits=bits, group_size=group_size, symmetric=symmetric).dequantize() / s
            loss += float((x @ w_hat.T - ref).square().sum())
        loss /= total
        if loss < best_loss:  # strict: ties keep the smaller alpha (alpha = 0 is plain RTN)
            best_loss, best = loss, s
    return best


def smoothquant_scales(act_absmax: Tensor, weight_list: Sequence[Tensor | nn.Linear], alpha: float = 0.5) -> Tensor:
    """SmoothQuant's migration scales ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` (Eq. 4).

    Args:
        act_absmax: ``(in_features,)`` per-channel max of ``|x|`` over the calibration tokens
            (:attr:`._calibration.LinearStats.absmax`).
        weight_list: the weights (or ``nn.Linear`` modules) that share this input; ``max|W_j|`` is over all.
        alpha: migration strength in [0, 1] (0.5 in the paper for most models).

    Returns:
        Float32 scales ``(in_features,)``, clamped to at least 1e-5 as the reference.

    Raises:
        ValueError: naming ``compression.alpha`` outside [0, 1], or mismatched shapes.

    Example:
        >>> smoothquant_scales(torch.tensor([4.0, 1.0]), [torch.tensor([[1.0, 4.0]])]).tolist()
        [2.0, 0.5]
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"compression.alpha={alpha!r}: must be in [0, 1]")
    weights = _weights(weight_list)
    if act_absmax.shape != (weights[0].shape[1],):
        raise ValueError(f"act_absmax has shape {tuple(act_absmax.shape)}, expected ({weights[0].shape[1]},)")
    w_max = torch.stack([w.abs().amax(dim=0).to(torch.float32) for w in weights]).amax(dim=0).clamp(min=1e-5)
    a_max = act_absmax.detach().to(w_max.device, torch.float32)
    return (a_max.pow(alpha) / w_max.pow(1 - alpha)).clamp(min=1e-5)


@torch.no_grad()
def apply_input_scales(linear: nn.Linear, scales: Tensor) -> Tensor:
    """Multiply the weight columns of ``linear`` by ``scales`` in place; return the ``1 / s`` its input needs.

    Args:
        linear: the layer (its weight is changed in place).
        scales: ``(in_features,)`` positive scales.

    Returns:
        ``1 / scales`` (float32): multiply the layer's input by it, or fold it into the op that produces
        the input (see the module docstring). The bias is unchanged.

    Raises:
        ValueError: scales of the wrong shape, or not all positive and finite.

    Example:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[1.0, 1.0]]))
        >>> apply_input_scales(lin, torch.tensor([2.0, 4.0])).tolist(), lin.weight.tolist()
        ([0.5, 0.25], [[2.0, 4.0]])
    """
    if scales.shape != (linear.in_features,):
        raise ValueError(f"scales have shape {tuple(scales.shape)}, expected ({linear.in_features},)")
    if not bool(torch.isfinite(scales).all() and (scales > 0).all()):
        raise ValueError("scales must be positive and finite")
    s = scales.detach().to(linear.weight.device)
    linear.weight.mul_(s.to(linear.weight.dtype))
    return 1.0 / s.to(torch.float32)


class AWQ(LowBitMethod):
    """``compression=awq``: activation-aware weight quantization. Per layer, the input channels that carry large
    activations get their weight columns scaled up before round-to-nearest (the scale searched on calibration
    inputs, :func:`awq_scales`); the input is divided by the same scales, kept with the layer as a per-channel
    multiplier (so it works on any model, with or without a norm layer to fold it into).

    Args:
        grid: how many exponents ``alpha`` of the scale search to try.
        **settings: :class:`~sweeper.compression._posttraining.LowBitMethod`'s (bits, group size, ...).
    """

    facts: ClassVar[MethodFacts] = MethodFacts("quantization", "post-training", final=True, calibration=True)
    name = "awq"
    needs_hessian = False

    def __init__(self, *, grid: int = 20, **settings: Any) -> None:
        super().__init__(**settings)
        self.search_grid = check_positive(grid, "grid")

    def quantize(self, weight: Tensor, stats: LinearStats | None) -> tuple[LowBitWeight, Tensor | None]:
        assert stats is not None  # calibrated
        scales = awq_scales([weight], stats.sample, grid=self.search_grid, **self.grid).to(weight.dtype)
        return rtn(weight * scales[None, :], **self.grid), scales
