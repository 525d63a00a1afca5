"""Quantization-aware training at 2..8 bits, exported with the weights really packed at that width.

During fine-tuning every selected weight (Linear, Conv and attention matrices, and embedding
tables unless ``embeddings: false``; see :mod:`sweeper.compression._targets`) goes through a
fake quantizer (a parametrization: symmetric, per output channel / per embedding row, ``2**(bits-1) - 1`` steps each side of zero, straight-through
gradient), so the network learns weights that survive rounding. The ``packed`` artifact
stores each weight as its integer codes packed at ``bits`` bits per value (a bitmask plus
the non-zero codes when that is smaller) and one float32 scale per output channel.

There are no sub-byte kernels on the CPU: the loader dequantizes the codes into float
weights that run on float kernels, so latency is tagged ``simulated``. Activations stay
in float.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from sweeper.artifact import ModelSpec, register_loader
from sweeper.compression._base import Compressed, CompressionContext, MethodFacts, check_epochs
from sweeper.compression._storage import decode_tensor, encode_tensor, pack_tree, unpack_tree
from sweeper.compression._targets import WeightRef, WeightSelection, weight_refs

__all__ = ["QuantizationAwareTraining", "dequantize", "finetune_and_pack", "quantize_weight"]


def quantize_weight(weight: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """Symmetric per-output-channel quantization: ``(codes, scales)`` with ``weight ~ codes * scales``.

    Codes lie in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``; a channel of zeros gets scale 1.

    Example:
        >>> codes, scales = quantize_weight(torch.tensor([[2.0, -1.6, 0.4]]), 2)
        >>> codes.tolist(), scales.tolist()
        ([[1.0, -1.0, 0.0]], [2.0])
    """
    qmax = 2 ** (bits - 1) - 1
    flat = weight.detach().flatten(1)
    scales = flat.abs().amax(dim=1) / qmax
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.clamp(torch.round(flat / scales[:, None]), -qmax, qmax)
    return codes.view_as(weight), scales


def dequantize(codes: Tensor, scales: Tensor) -> Tensor:
    """Float weights from integer codes and per-output-channel scales."""
    return codes.to(torch.float32) * scales.view(-1, *([1] * (codes.dim() - 1)))


class _FakeQuantize(nn.Module):
    """Weight parametrization: quantize-dequantize forward, identity gradient (straight-through)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, weight: Tensor) -> Tensor:
        codes, scales = quantize_weight(weight, self.bits)
        return weight + (dequantize(codes, scales) - weight).detach()


class QuantizationAwareTraining:
    """``compression=qat``: fine-tune with fake-quantized weights, export them packed at ``bits``.

    Args:
        bits: weight bit width, 2..8.
        finetune_epochs: epochs of quantization-aware fine-tuning of the trained model (>= 0).
        embeddings: quantize embedding tables too (per row).
        include: module-name patterns to quantize (empty: every supported layer).
        exclude: module-name patterns kept in float, e.g. ``[head]``.
    """

    facts: ClassVar[MethodFacts] = MethodFacts("quantization", "fine-tunes", final=True)

    def __init__(
        self,
        *,
        bits: int = 4,
        finetune_epochs: int = 5,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        embeddings: bool = True,
    ) -> None:
        if not (isinstance(bits, int) and 2 <= bits <= 8):
            raise ValueError(f"compression.bits={bits}: allowed: integers 2..8")
        self.bits = bits
        self.finetune_epochs = check_epochs(finetune_epochs)
        self.selection = WeightSelection(embeddings=embeddings, include=include, exclude=exclude)

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Fail before training when the patterns match no module or leave nothing to quantize."""
        weight_refs(model, self.selection, method="qat")

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Fine-tune with fake quantization (zeros from earlier pruning stay zero), then pack the codes."""
        refs = weight_refs(model, self.selection, method="qat")
        payload = finetune_and_pack(model, ctx, {ref.name: (ref, self.bits) for ref in refs}, self.finetune_epochs)
        return Compressed(
            module=model, kind="packed", payload=payload, latency_kind="simulated", metrics={"bits": float(self.bits)}
        )


def finetune_and_pack(
    model: nn.Module,
    ctx: CompressionContext | None,
    plan: dict[str, tuple[WeightRef, int | None]],
    epochs: int,
    *,
    fixed_masks: bool = False,
) -> dict[str, Any]:
    """Fine-tune ``model`` with each planned weight fake-quantized at its bit width, then pack it.

    ``plan`` maps a weight's name to its reference and bit width (``None``: kept in float32);
    ``ctx`` trains (it may be ``None`` with ``epochs=0``: packing only, e.g. to size an artifact).
    Zeros present now (earlier pruning, a mixed plan's masks) stay zero during fine-tuning.
    The model ends on the CPU, in eval mode, running exactly the weights the loader rebuilds.
    ``fixed_masks``: a sparse planned weight stores exactly the positions kept now, so the
    artifact's size does not depend on what fine-tuning does to the values (a size budget).

    Returns:
        The ``packed`` payload: per-weight codes at their own width, everything else stored
        densely or sparsely, whichever is smaller.
    """
    kept = {name: ref.tensor.detach() != 0 for name, (ref, _) in plan.items()}
    quantized = {name: (ref, bits) for name, (ref, bits) in plan.items() if bits is not None}
    for ref, bits in quantized.values():
        parametrize.register_parametrization(ref.module, ref.attr, _FakeQuantize(bits))

    def keep_zeros(_model: nn.Module, _step: int) -> None:
        with torch.no_grad():
            for name, (ref, bits) in plan.items():
                weight = getattr(ref.module.parametrizations, ref.attr).original if bits is not None else ref.tensor
                weight.mul_(kept[name].to(weight.device))

    if epochs:
        if ctx is None:
            raise ValueError("finetune_and_pack: fine-tuning needs a compression context")
        ctx.finetune(model, epochs, step_hook=keep_zeros)
    model = model.cpu().eval()
    for ref, _ in quantized.values():
        parametrize.remove_parametrizations(ref.module, ref.attr, leave_parametrized=False)
    codes = {name: quantize_weight(ref.tensor, bits) for name, (ref, bits) in quantized.items()}
    with torch.no_grad():  # the in-memory model runs exactly what the loader will rebuild
        for name, (ref, _) in quantized.items():
            ref.tensor.copy_(dequantize(*codes[name]))
    masks = kept if fixed_masks else {}
    others = {k: encode_tensor(v, keep=masks.get(k)) for k, v in model.state_dict().items() if k not in codes}
    widths = {bits for _, bits in quantized.values()}
    return pack_tree(
        {
            "bits": widths.pop() if len(widths) == 1 else None,  # None: each weight has its own width
            "weights": {
                name: {"codes": encode_tensor(c, bits=quantized[name][1], keep=masks.get(name)), "scales": s}
                for name, (c, s) in codes.items()
            },
            "others": others,
        }
    )


@register_loader("packed")
def _load_packed(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    tree = unpack_tree(payload)
    state = {k: decode_tensor(v) for k, v in tree["others"].items()}
    for name, stored in tree["weights"].items():
        state[name] = dequantize(decode_tensor(stored["codes"]), stored["scales"])
    model = spec.build()
    model.load_state_dict(state)
    return model
