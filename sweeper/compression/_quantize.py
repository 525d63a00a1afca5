"""Post-training int8 quantization of any ``nn.Module`` of standard layers, on real CPU int8 kernels.

What becomes int8 (``torch.ao.quantization``, x86 engine, else fbgemm, else qnnpack):

* Convolutions: static int8. Activation ranges are calibrated on training batches;
  Conv+BatchNorm(+ReLU) are folded and fused, and the ops between quantized convolutions
  that the backend runs in int8 (residual add(+ReLU), pooling, flatten) stay int8.
* ``nn.Linear``: dynamic int8 (weights per output channel, activations quantized on the
  fly per batch): MLPs, classifier heads, attention projections and Transformer FFNs.
* ``nn.Embedding`` / ``nn.EmbeddingBag``: weight-only int8 tables, one float scale and
  zero point per row (``per_channel_affine_float_qparams``). torch's int8 bag kernel always
  sums, so bags in ``mean`` mode divide by the bag sizes (:class:`_EmbeddingBag`); bags in
  ``max`` mode or with a ``padding_idx``, and embeddings with ``max_norm``, stay float.
* Everything else (LayerNorm, GELU, GRU/LSTM, a user's custom layer) stays float.

BatchNorm channels whose input is constant (a channel pruning left without weights: running
variance ~0) are silenced first (``gamma = 0``, :func:`~sweeper.compression._targets.silence_dead_channels`):
such a norm multiplies the int8 rounding error of its input by hundreds, which took a pruned
ConvMixer from 42 % to chance; silenced, the same network reaches 66 % in int8.

Attention is made quantizable first (:mod:`sweeper.compression._attention`): every
``nn.MultiheadAttention`` becomes an equivalent module of four ``nn.Linear`` projections,
and Transformer encoder layers take their standard path instead of the fused fast path.

The static part (convolutions) is done by one of two flows; the one that ran is the
``quantization_flow`` tag and is stored in the artifact, so that the loader repeats it. The
weight-only part (Linear, embeddings) needs no graph and no calibration: one per-module pass
does it after either flow.

* ``fx`` (first choice): FX graph mode (``prepare_fx`` / ``convert_fx``) with the backend's
  default ``QConfigMapping``. The traced graph says which op feeds which, which is what
  Conv+BN folding and int8 residual adds need, on any module structure. Attention and
  Transformer layers, whose forward branches on shapes and masks, are leaves of the graph.
  A model without convolutions gets no static activations at all (they would only add
  quantize/dequantize pairs around float ops).
* ``eager`` (fallback, when FX cannot trace the model or its traced copy fails to run:
  data-dependent control flow, a branch on ``x.dim()``, many Hugging Face models): per
  module. Conv(+BN)(+ReLU) runs inside ``nn.Sequential`` containers are fused, and each
  convolution is wrapped in quant/dequant stubs with the static qconfig; residual adds,
  BatchNorms outside such runs and transposed convolutions stay float. Why FX failed is the
  ``quantization_fallback`` tag.

Why FX rather than PT2E (``prepare_pt2e`` / ``convert_pt2e``, the successor torch points
to): in torch 2.13 PT2E lives in torchao (``torch.ao.quantization.pt2e`` is gone) and its
x86 quantizer is torchao's ``X86InductorQuantizer``; ``convert_pt2e`` returns a graph of
reference quantize/dequantize ops around fp32 ops, which become int8 kernels only when
lowered by Inductor (``torch.compile``); and the result is an exported program, saved as
code (``torch.export.save``), not a state dict loadable into a model built from its spec.
FX convert gives modules that call fbgemm/onednn int8 kernels directly and a plain state
dict. ``torch.ao.quantization`` is deprecated in favour of torchao but still ships with
torch 2.13; its deprecation warnings are silenced around these calls only.

The artifact (``int8``) stores the quantized module's state dict: int8 weight codes (sparse
when most are zero, as after pruning), per-channel (per-row) scales, activation scales,
float biases and the float layers, plus the flow and the per-sample input shape and dtype.
The loader rebuilds the float model from its spec, applies the same attention swap and the
same flow on one example input of that shape, and loads the state dict into it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, NamedTuple

import torch
import torch.ao.nn.intrinsic as nni
import torch.ao.nn.quantized as nnq
from torch import Tensor, nn
from torch.ao import quantization as tq
from torch.ao.quantization import quantize_fx
from torch.ao.quantization.fx.custom_config import PrepareCustomConfig

from sweeper.artifact import ModelSpec, register_loader
from sweeper.compression._attention import ExplicitAttention, make_quantizable, unsupported_attention
from sweeper.compression._base import Compressed, CompressionContext, MethodFacts, UnsupportedLayer
from sweeper.compression._storage import decode_state, encode_state
from sweeper.compression._targets import silence_dead_channels

__all__ = ["FLOWS", "Int8Quantization", "Quantized", "quantize_int8"]

FLOWS = ("fx", "eager")
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_STATIC = (*_CONV, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)  # layers with static int8 kernels
_WEIGHT_ONLY = (nn.Linear, nn.Embedding, nn.EmbeddingBag)  # int8 without calibration, in both flows
_QUANTIZABLE = (*_STATIC, *_WEIGHT_ONLY, nn.MultiheadAttention)
_BATCH_NORM: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: nn.BatchNorm1d,
    nn.Conv2d: nn.BatchNorm2d,
    nn.Conv3d: nn.BatchNorm3d,
}
# Modules FX keeps as leaves: their forward branches on input shapes and masks.
_FX_LEAVES = (
    ExplicitAttention,
    nn.TransformerEncoder,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoder,
    nn.TransformerDecoderLayer,
    nn.Transformer,
)


class Quantized(NamedTuple):
    """An int8 model, the flow that made it, and why FX was not used (``""`` when it was)."""

    module: nn.Module
    flow: str
    fallback_reason: str = ""


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide torch.ao's deprecation and observer warnings around our own calls only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _backend() -> str:
    engines = torch.backends.quantized.supported_engines
    return "x86" if "x86" in engines else "fbgemm" if "fbgemm" in engines else "qnnpack"


class _EmbeddingBag(nnq.EmbeddingBag):
    """Int8 ``nn.EmbeddingBag`` that honours ``mode="mean"``: torch's int8 kernel always sums
    (``nnq.EmbeddingBag`` passes it no mode), so the sums are divided by the bag sizes here."""

    def forward(
        self,
        indices: Tensor,
        offsets: Tensor | None = None,
        per_sample_weights: Tensor | None = None,
        compressed_indices_mapping: Tensor | None = None,
    ) -> Tensor:
        """The bags' sums, or their means in ``mean`` mode (an empty bag gives zeros, as in float)."""
        sums = super().forward(indices, offsets, per_sample_weights, compressed_indices_mapping)
        if self.mode != "mean":
            return sums
        if indices.dim() == 2:
            return sums / indices.shape[1]
        assert offsets is not None  # a 1-D input needs offsets
        ends = offsets[1:] if self.include_last_offset else torch.cat([offsets[1:], offsets.new_tensor([len(indices)])])
        sizes = (ends - offsets[: len(ends)]).clamp(min=1)
        return sums / sizes.unsqueeze(1).to(sums.dtype)

    @classmethod
    def from_float(cls, mod: nn.EmbeddingBag, use_precomputed_fake_quant: bool = False) -> _EmbeddingBag:
        """The int8 copy of a float ``nn.EmbeddingBag`` (per-row float qparams)."""
        base = nnq.EmbeddingBag.from_float(mod, use_precomputed_fake_quant)
        options = {"mode": mod.mode, "include_last_offset": mod.include_last_offset, "dtype": base.dtype}
        module = cls(mod.num_embeddings, mod.embedding_dim, **options)
        module.set_weight(base.weight())
        return module


class _Embedding(nnq.Embedding):
    """Int8 ``nn.Embedding`` that takes any index tensor: torch's int8 kernel needs contiguous
    indices, where float tables take views too (``x[:, 0]`` of id pairs, a slice of position ids)."""

    def forward(self, indices: Tensor) -> Tensor:
        """The rows of ``indices``, dequantized (as float ``nn.Embedding``)."""
        return super().forward(indices.contiguous())

    @classmethod
    def from_float(cls, mod: nn.Embedding, use_precomputed_fake_quant: bool = False) -> _Embedding:
        """The int8 copy of a float ``nn.Embedding`` (per-row float qparams)."""
        base = nnq.Embedding.from_float(mod, use_precomputed_fake_quant)
        module = cls(mod.num_embeddings, mod.embedding_dim, padding_idx=mod.padding_idx, dtype=base.dtype)
        module.set_weight(base.weight())
        return module


def _weight_only_qconfig(module: nn.Module) -> tq.QConfig | None:
    """The qconfig of a layer whose int8 form needs no calibration, or ``None`` (it stays as it is).

    Exact types: a subclass may compute something else in its forward. Embeddings with
    ``max_norm``, and bags in ``max`` mode or with a ``padding_idx``, have no faithful int8 kernel.
    """
    kind = type(module)
    if kind in (nn.Linear, nni.LinearReLU):
        return tq.per_channel_dynamic_qconfig
    if kind is nn.Embedding and module.max_norm is None:
        return tq.float_qparams_weight_only_qconfig
    if kind is nn.EmbeddingBag and module.max_norm is None and module.mode != "max" and module.padding_idx is None:
        return tq.float_qparams_weight_only_qconfig
    return None


def _quantize_weights(model: nn.Module) -> nn.Module:
    """Swap every float Linear (fused with its ReLU or not) and embedding of ``model`` for its int8
    module, in place: dynamic Linear with per-channel weights, embedding tables per row."""
    qconfigs = {name: qconfig for name, m in model.named_modules() if (qconfig := _weight_only_qconfig(m)) is not None}
    mapping = {
        **tq.get_default_dynamic_quant_module_mappings(),
        nn.Embedding: _Embedding,
        nn.EmbeddingBag: _EmbeddingBag,
    }
    return tq.quantize_dynamic(model, qconfigs, mapping=mapping, inplace=True)


# --- the FX flow -------------------------------------------------------------------------------------


def _fx_qconfig_mapping(model: nn.Module, backend: str) -> tq.QConfigMapping:
    """The backend's default mapping (static int8) where the model has convolutions, none elsewhere.

    Linear and embedding modules are left to :func:`_quantize_weights` (``None`` by module
    name: an object-type entry for ``nn.Linear`` would clash with the ReLU of a fused
    Linear+ReLU); functional ``F.linear`` calls are quantized dynamically here.
    """
    has_static = any(isinstance(m, _STATIC) for m in model.modules())
    mapping = tq.get_default_qconfig_mapping(backend) if has_static else tq.QConfigMapping()
    mapping.set_object_type(nn.functional.linear, tq.per_channel_dynamic_qconfig)
    for name, module in model.named_modules():
        if isinstance(module, _WEIGHT_ONLY) and name:
            mapping.set_module_name(name, None)
    return mapping


def _prepare_fx(model: nn.Module, example: Tensor, backend: str) -> nn.Module:
    leaves = PrepareCustomConfig().set_non_traceable_module_classes(list(_FX_LEAVES))
    return quantize_fx.prepare_fx(model, _fx_qconfig_mapping(model, backend), (example,), prepare_custom_config=leaves)


def _convert_fx(prepared: nn.Module) -> nn.Module:
    assert isinstance(prepared, torch.fx.GraphModule)  # what prepare_fx returns
    return quantize_fx.convert_fx(prepared)


# --- the eager flow ----------------------------------------------------------------------------------


def _fusable_run(layers: list[nn.Module], start: int) -> int:
    """How many layers from ``start`` fuse into one: Conv[+BN][+ReLU] or Linear+ReLU (1 when none)."""
    first = layers[start]
    length = 1
    if type(first) in _BATCH_NORM:
        if start + 1 < len(layers) and type(layers[start + 1]) is _BATCH_NORM[type(first)]:
            length = 2
    elif type(first) is not nn.Linear:
        return 1
    if start + length < len(layers) and type(layers[start + length]) is nn.ReLU:
        length += 1
    return length


def _fuse_sequential_runs(model: nn.Module) -> None:
    """Fuse Conv+BN(+ReLU), Conv+ReLU and Linear+ReLU runs of every ``nn.Sequential``, in place (eval mode)."""
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        names, layers = list(module._modules), list(module.children())
        groups, i = [], 0
        while i < len(layers):
            length = _fusable_run(layers, i)
            if length > 1:
                groups.append(names[i : i + length])
            i += length
        if groups:
            tq.fuse_modules(module, groups, inplace=True)


def _prepare_eager(model: nn.Module, example: Tensor, backend: str) -> nn.Module:
    """Each convolution (fused or not) in quant/dequant stubs with the static qconfig, observed."""
    del example  # eager mode needs no example to prepare; the signature matches the FX flow's
    _fuse_sequential_runs(model)
    convs = (*_CONV, nni.ConvReLU1d, nni.ConvReLU2d, nni.ConvReLU3d)
    if isinstance(model, convs):  # a bare convolution as the whole model
        model = tq.QuantWrapper(model)
        model.qconfig = tq.get_default_qconfig(backend)
        return tq.prepare(model, inplace=True)
    wrapped: list[str] = []
    for name, module in list(model.named_modules()):  # parents come before their children
        inside = any(name.startswith(f"{w}.") for w in wrapped)  # the conv of a wrapped ConvReLU
        if isinstance(module, convs) and not inside:
            wrapper = tq.QuantWrapper(module)
            wrapper.qconfig = tq.get_default_qconfig(backend)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, wrapper)
            wrapped.append(name)
    return tq.prepare(model, inplace=True)


def _convert_eager(prepared: nn.Module) -> nn.Module:
    return tq.convert(prepared, inplace=True)


_PREPARE: dict[str, Callable[[nn.Module, Tensor, str], nn.Module]] = {"fx": _prepare_fx, "eager": _prepare_eager}
_CONVERT: dict[str, Callable[[nn.Module], nn.Module]] = {"fx": _convert_fx, "eager": _convert_eager}


# --- both ----------------------------------------------------------------------------------------------


def _run_flow(flow: str, model: nn.Module, calibration: Tensor, batch_size: int) -> nn.Module:
    """An int8 copy of ``model`` made by ``flow``, its static ranges calibrated on ``calibration``."""
    backend = _backend()
    torch.backends.quantized.engine = backend
    float_model = make_quantizable(copy.deepcopy(model).cpu().eval())
    calibration = calibration.cpu()
    with _quiet():
        prepared = _PREPARE[flow](float_model, calibration[:1], backend)
        with torch.no_grad():
            for batch in calibration.split(batch_size):
                prepared(batch)
        return _quantize_weights(_CONVERT[flow](prepared)).eval()


def quantize_int8(
    model: nn.Module, calibration: Tensor, *, flow: str | None = None, batch_size: int = 256
) -> Quantized:
    """Int8 copy of ``model``: static int8 convolutions calibrated on ``calibration``, dynamic int8
    Linear, int8 embedding tables; ``model`` itself is left as it is.

    Args:
        model: a trained float model (any ``nn.Module`` mapping one input tensor to outputs).
        calibration: inputs whose activation ranges set the static scales (a batch of them).
        flow: ``"fx"`` or ``"eager"``; ``None`` tries FX and falls back to eager when FX cannot
            trace the model (or its traced copy does not run on the calibration inputs).
        batch_size: calibration batch size.
    """
    if flow is not None:
        if flow not in FLOWS:
            raise ValueError(f"flow={flow!r}: allowed: {', '.join(FLOWS)}")
        return Quantized(_run_flow(flow, model, calibration, batch_size), flow)
    try:
        quantized = _run_flow("fx", model, calibration, batch_size)
        with torch.no_grad(), _quiet():
            quantized(calibration[:2])
        return Quantized(quantized, "fx")
    except Exception as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return Quantized(_run_flow("eager", model, calibration, batch_size), "eager", reason)


class Int8Quantization:
    """``compression=quantize``: post-training int8 (static for convolutions, dynamic for Linear,
    weight-only for embeddings) on any model of standard layers.

    Args:
        calibration_samples: training inputs used to calibrate activation ranges (>= 1).
        flow: ``auto`` (FX, else eager when FX cannot trace the model), ``fx`` or ``eager``.
    """

    facts: ClassVar[MethodFacts] = MethodFacts(
        "quantization", "post-training", final=True, float_source=True, calibration=True
    )

    def __init__(self, *, calibration_samples: int = 1024, flow: str = "auto") -> None:
        if not (isinstance(calibration_samples, int) and calibration_samples >= 1):
            raise ValueError(f"compression.calibration_samples={calibration_samples}: must be an integer >= 1")
        if flow != "auto" and flow not in FLOWS:
            raise ValueError(f"compression.flow={flow!r}: allowed: auto, {', '.join(FLOWS)}")
        self.calibration_samples = calibration_samples
        self.flow = None if flow == "auto" else flow

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Fail before training when nothing can be quantized or an attention variant cannot be swapped.

        Raises:
            UnsupportedLayer: an ``nn.MultiheadAttention`` with ``add_bias_kv`` or
                ``add_zero_attn``, or a model without any Linear, convolution or embedding layer.
        """
        for name, module in model.named_modules():
            if isinstance(module, nn.MultiheadAttention) and (reason := unsupported_attention(module)):
                raise UnsupportedLayer("quantize", name, module, reason)
        if not any(isinstance(m, _QUANTIZABLE) for m in model.modules()):
            raise UnsupportedLayer("quantize", "", model, "no Linear, convolution or embedding layer to quantize")

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Quantize the trained model and store its int8 state with the flow and input that rebuild it."""
        calibration = ctx.task.x_train[: self.calibration_samples]
        dead = silence_dead_channels(model.cpu().eval())  # a dead channel's BatchNorm would amplify int8 error
        result = quantize_int8(model, calibration, flow=self.flow)
        tags = {"quantization_flow": result.flow}
        if result.fallback_reason:
            tags["quantization_fallback"] = result.fallback_reason
        payload = {
            "flow": result.flow,
            "input": {"shape": list(calibration.shape[1:]), "dtype": str(calibration.dtype).removeprefix("torch.")},
            "state": encode_state(result.module.state_dict()),
        }
        return Compressed(
            module=result.module,
            kind="int8",
            payload=payload,
            latency_kind="real",
            metrics={"bits": 8.0, "dead_channels": float(dead)},
            tags=tags,
        )


@register_loader("int8")
def _load_int8(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    if "flow" not in payload:
        raise ValueError(
            "int8 artifact in the format before graph-mode quantization (nn.Sequential only): rerun the trial"
        )
    example = torch.zeros((1, *payload["input"]["shape"]), dtype=getattr(torch, payload["input"]["dtype"]))
    # Same swap and flow on the freshly built model: the same quantized structure, whose
    # placeholder values (calibrated on the example) the stored state replaces.
    skeleton = quantize_int8(spec.build(), example, flow=payload["flow"]).module
    with _quiet():
        skeleton.load_state_dict(decode_state(payload["state"]))
    return skeleton
