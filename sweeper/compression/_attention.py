"""Attention written with plain ``nn.Linear`` projections, so that int8 quantization reaches it.

``nn.MultiheadAttention`` keeps its query/key/value projections as one raw parameter
(``in_proj_weight``) and its output projection as a ``NonDynamicallyQuantizableLinear``:
no standard quantization flow touches either. :class:`ExplicitAttention` has the same
forward signature and math (the same masks, dropout, returned weights) with four
``nn.Linear`` layers, ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj``, that the
flows quantize like any other Linear.

:func:`make_quantizable` swaps every ``nn.MultiheadAttention`` of a model for one,
weights copied, and sends ``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder`` to
their standard path (their fast path hands the raw attention and FFN weights to one fused
kernel, which neither quantized Linear layers nor this module fit). The swap only depends
on the model's structure, so a loader repeats it on a freshly built model before loading
a state dict.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ExplicitAttention", "make_quantizable", "unsupported_attention"]


def unsupported_attention(attention: nn.MultiheadAttention) -> str | None:
    """Why :class:`ExplicitAttention` cannot stand in for ``attention``, or ``None`` when it can."""
    if attention.bias_k is not None:
        return "add_bias_kv=True is not supported"
    if attention.add_zero_attn:
        return "add_zero_attn=True is not supported"
    return None


def _additive(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A boolean mask (True = not allowed) as the additive float mask it stands for."""
    if mask is None or mask.is_floating_point():
        return mask if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


class ExplicitAttention(nn.Module):
    """Multi-head attention as in ``nn.MultiheadAttention``, with separate ``nn.Linear`` projections.

    Args:
        embed_dim: model width (query features and output features).
        num_heads: heads; ``embed_dim`` must be divisible by it.
        dropout: dropout on the attention weights, in training mode only.
        bias: biases on the four projections.
        kdim: key features (default ``embed_dim``).
        vdim: value features (default ``embed_dim``).
        batch_first: inputs are ``(batch, seq, feature)`` rather than ``(seq, batch, feature)``.

    Example:
        >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
        >>> x = torch.randn(3, 5, 8)
        >>> torch.allclose(ExplicitAttention.from_float(mha)(x, x, x)[0], mha(x, x, x)[0], atol=1e-6)
        True
    """

    # The fast-path checks of nn.TransformerEncoderLayer / nn.TransformerEncoder read these
    # attributes of their ``self_attn``: there is no packed in-projection, so ``in_proj_bias``
    # is None, which sends the layer to its standard path (that calls this module).
    in_proj_weight: None = None
    in_proj_bias: None = None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout, self.batch_first = dropout, batch_first
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @classmethod
    def from_float(cls, attention: nn.MultiheadAttention) -> ExplicitAttention:
        """The equivalent module, ``attention``'s weights copied (in its mode, device and dtype)."""
        reason = unsupported_attention(attention)
        if reason:
            raise ValueError(f"cannot make {type(attention).__name__} explicit: {reason}")
        weight = attention.out_proj.weight
        module = cls(
            attention.embed_dim,
            attention.num_heads,
            dropout=attention.dropout,
            bias=attention.out_proj.bias is not None,
            kdim=attention.kdim,
            vdim=attention.vdim,
            batch_first=attention.batch_first,
        ).to(device=weight.device, dtype=weight.dtype)
        projections = (module.q_proj, module.k_proj, module.v_proj)
        with torch.no_grad():
            if attention._qkv_same_embed_dim:
                weights = attention.in_proj_weight.chunk(3)
            else:
                weights = (attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight)
            biases = attention.in_proj_bias.chunk(3) if attention.in_proj_bias is not None else (None,) * 3
            for projection, w, b in zip(projections, weights, biases, strict=True):
                projection.weight.copy_(w)
                if b is not None:
                    projection.bias.copy_(b)
            module.out_proj.load_state_dict(attention.out_proj.state_dict())
        return module.train(attention.training)

    def _heads(self, x: Tensor) -> Tensor:
        """(batch, seq, embed) -> (batch, heads, seq, head_dim)."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def _mask(self, attn_mask: Tensor | None, key_padding_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
        """One additive mask broadcastable to (batch, heads, target, source), as MultiheadAttention merges them."""
        mask = _additive(attn_mask, dtype)
        if mask is not None and mask.dim() == 3:  # (batch * heads, target, source)
            mask = mask.unflatten(0, (-1, self.num_heads))
        padding = _additive(key_padding_mask, dtype)
        if padding is not None:
            padding = padding[:, None, None, :]
            mask = padding if mask is None else mask + padding
        return mask

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``nn.MultiheadAttention.forward``: the attention output and, if ``need_weights``, its weights.

        ``is_causal`` is a hint that ``attn_mask`` is the causal mask, as there: the mask is applied.
        """
        if is_causal and attn_mask is None:
            raise RuntimeError("need attn_mask if specifying the is_causal hint")
        batched = query.dim() == 3
        if not batched:  # (seq, feature): a batch of one
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            key_padding_mask = key_padding_mask.unsqueeze(0) if key_padding_mask is not None else None
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        mask = self._mask(attn_mask, key_padding_mask, q.dtype)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)
            weights = F.dropout(torch.softmax(scores if mask is None else scores + mask, dim=-1), p=dropout)
            out = weights @ v
            weights = weights.mean(dim=1) if average_attn_weights else weights
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = self.out_proj(out.transpose(1, 2).flatten(2))
        if not batched:
            return out.squeeze(0), weights.squeeze(0) if weights is not None else None
        return (out if self.batch_first else out.transpose(0, 1)), weights


def make_quantizable(model: nn.Module) -> nn.Module:
    """Swap every ``nn.MultiheadAttention`` for an :class:`ExplicitAttention`, in place; send
    Transformer encoder layers to their standard path. Returns ``model``.

    Deterministic in the model's structure: applied to a freshly built model it yields the
    same module names, so the state dict of a quantized copy loads into it.
    """
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.MultiheadAttention) and name:  # the model itself is never an attention layer
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, ExplicitAttention.from_float(module))
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoder):
            module.use_nested_tensor = False  # nested tensors are made for the fused kernel only
        if isinstance(module, nn.TransformerEncoderLayer):
            module.activation_relu_or_gelu = 0  # read by the fast-path check only (the standard path uses .activation)
    return model
