"""Post-training int8 quantization on real CPU kernels (``torch.ao.quantization``, eager mode).

* Convolutions: static quantization. Each run of consecutive Conv / ReLU / MaxPool layers
  of the ``nn.Sequential`` is wrapped in quant/dequant stubs, Conv+ReLU pairs are fused,
  and activation ranges are calibrated on training batches; the quantized convolutions
  run fbgemm/qnnpack int8 kernels.
* Linear layers: dynamic quantization (int8 weights, activations quantized on the fly).

Why ``torch.ao.quantization`` rather than torchao: it ships with torch (no extra
dependency), its eager mode gives real int8 convolution kernels on the CPU, and its
modules rebuild from a plain state dict; torchao's CPU path covers int8 Linear but its
static convolution flow goes through graph export. The deprecation warnings it emits are
silenced around these calls only.

The artifact (``int8``) stores int8 weight codes with their per-channel scales (sparse
when most codes are zero, as after pruning), activation scales and float biases; the
loader rebuilds the same quantized structure from the model spec and loads them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.ao import quantization as tq

from sweeper.artifact import ModelSpec, register_loader
from sweeper.compression._base import CompressionContext, Compressed
from sweeper.compression._storage import decode_state, encode_state

__all__ = ["Int8Quantization", "quantize_int8"]

_CONV = (nn.Conv1d, nn.Conv2d)
_STATIC_RUN = (*_CONV, nn.ReLU, nn.MaxPool1d, nn.MaxPool2d)  # layers the int8 conv section keeps int8
_SUPPORTED = (*_STATIC_RUN, nn.Linear, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Identity)


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide torch.ao's deprecation and observer warnings around our own calls only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _backend() -> str:
    engines = torch.backends.quantized.supported_engines
    return "x86" if "x86" in engines else "fbgemm" if "fbgemm" in engines else "qnnpack"


def check_quantizable(model: nn.Module) -> None:
    """Raise ``ValueError`` when ``model`` is not a stack this method can quantize."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"compression=quantize: needs an nn.Sequential model, got {type(model).__name__}")
    for layer in model:
        if not isinstance(layer, _SUPPORTED):
            allowed = ", ".join(t.__name__ for t in _SUPPORTED)
            raise ValueError(f"compression=quantize: cannot quantize {type(layer).__name__}; supported layers: {allowed}")


def _static_sections(model: nn.Sequential) -> nn.Sequential:
    """Wrap each run of Conv/ReLU/MaxPool containing a Conv in quant/dequant stubs, Conv+ReLU fused."""
    layers, out, run = list(model), [], []

    def flush() -> None:
        if any(isinstance(m, _CONV) for m in run):
            section = nn.Sequential(*run)
            pairs = [
                [str(i), str(i + 1)]
                for i in range(len(run) - 1)
                if isinstance(run[i], _CONV) and isinstance(run[i + 1], nn.ReLU)
            ]
            if pairs:
                section = tq.fuse_modules(section, pairs)
            wrapped = tq.QuantWrapper(section)
            wrapped.qconfig = tq.get_default_qconfig(_backend())
            out.append(wrapped)
        else:
            out.extend(run)
        run.clear()

    for layer in layers:
        if isinstance(layer, _STATIC_RUN):
            run.append(layer)
        else:
            flush()
            out.append(layer)
    flush()
    return nn.Sequential(*out)


def _prepare(model: nn.Module) -> nn.Module:
    """The float model restructured and with observers, ready to calibrate."""
    check_quantizable(model)
    torch.backends.quantized.engine = _backend()
    with _quiet():
        return tq.prepare(_static_sections(model.cpu().eval()), inplace=False)


def _convert(prepared: nn.Module) -> nn.Module:
    with _quiet():
        static = tq.convert(prepared, inplace=False)
        return tq.quantize_dynamic(static, {nn.Linear}, dtype=torch.qint8, inplace=False)


def quantize_int8(model: nn.Module, calibration: torch.Tensor, *, batch_size: int = 256) -> nn.Module:
    """Int8 copy of ``model``: static int8 convolutions calibrated on ``calibration``, dynamic int8 Linear.

    Args:
        model: a trained float ``nn.Sequential``.
        calibration: inputs whose activation ranges set the static scales.
        batch_size: calibration batch size.
    """
    prepared = _prepare(model)
    with torch.inference_mode(), _quiet():
        for start in range(0, len(calibration), batch_size):
            prepared(calibration[start : start + batch_size])
    return _convert(prepared).eval()


class Int8Quantization:
    """``compression=quantize``: post-training int8 (static for convolutions, dynamic for Linear).

    Args:
        calibration_samples: training inputs used to calibrate activation ranges (>= 1).
    """

    def __init__(self, *, calibration_samples: int = 1024) -> None:
        if not (isinstance(calibration_samples, int) and calibration_samples >= 1):
            raise ValueError(f"compression.calibration_samples={calibration_samples}: must be an integer >= 1")
        self.calibration_samples = calibration_samples

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Fail before training when the model has a layer this method cannot quantize."""
        check_quantizable(model)

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Quantize the trained model and store its int8 state."""
        quantized = quantize_int8(model, ctx.task.x_train[: self.calibration_samples])
        return Compressed(
            module=quantized,
            kind="int8",
            payload=encode_state(quantized.state_dict()),
            latency_kind="real",
            metrics={"bits": 8.0},
        )


@register_loader("int8")
def _load_int8(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    skeleton = _convert(_prepare(spec.build()))  # same structure; its uncalibrated values are replaced
    with _quiet():
        skeleton.load_state_dict(decode_state(payload))
    return skeleton
