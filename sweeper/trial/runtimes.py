"""Deployment runtimes besides PyTorch: the artifact exported to ONNX and run by ONNX Runtime.

``measure.runtimes: [torch, onnxruntime]`` adds, for every trial, an ONNX export of what was
deployed, measured like the PyTorch artifact: the task's score re-checked on the test split, the
file's size, latency at batch 1 and per sample at the larger batch (one thread). Each runtime's
numbers carry its name: ``latency_ms_onnxruntime``, ``latency_ms_batch_onnxruntime``,
``test_score_onnxruntime``, ``size_bytes_onnxruntime``; ``latency_ms`` stays PyTorch's.

What is exported (tag ``onnxruntime_model``):

* float networks (``none``, pruning, ``qat`` / ``mixed`` dequantized, distilled students): the
  reloaded artifact itself, float32 (``float32``);
* ``quantize`` (torch int8 kernels have no ONNX form): the float network before quantization,
  quantized by ONNX Runtime's own quantizer, static QDQ per channel calibrated on training inputs
  when it has convolutions (``int8 static``), dynamic otherwise (``int8 dynamic``), which is why its
  score is measured again.

A network that cannot be exported gets the tag ``onnxruntime_unavailable`` with the reason and no
such metrics; the report shows that as a labelled absence.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from sweeper.errors import ConfigError

if TYPE_CHECKING:
    from sweeper.data import Task

__all__ = ["ONNX_FILE", "RUNTIMES", "CannotExport", "OnnxModule", "check_runtimes", "export_onnx", "measure_onnx"]

RUNTIMES = ("torch", "onnxruntime")
ONNX_FILE = "model.onnx"
INSTALL = 'pip install -e ".[onnx]"  (onnxruntime, onnx)'


class CannotExport(Exception):
    """The network has no ONNX form here; the message says why."""


def check_runtimes(values: Sequence[str]) -> list[str]:
    """``measure.runtimes`` as a list, checked: known names, ``torch`` first, ONNX Runtime installed when asked."""
    runtimes = [str(v) for v in values]
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown or not runtimes or runtimes[0] != "torch":
        raise ConfigError(
            f"measure.runtimes={runtimes}: allowed: {', '.join(RUNTIMES)}, torch first (latency_ms is PyTorch's), "
            "e.g. [torch, onnxruntime]"
        )
    if "onnxruntime" in runtimes and not all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx")):
        raise ConfigError(f"measure.runtimes=[..., onnxruntime]: ONNX Runtime is not installed; {INSTALL}")
    return runtimes


class OnnxModule(nn.Module):
    """An ONNX Runtime session on one thread behind the ``module(x) -> Tensor`` call the timers use."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # as PyTorch is timed
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: x.cpu().numpy()})[0])


def _export_float(model: nn.Module, example: Tensor, path: Path) -> None:
    with (
        warnings.catch_warnings()
    ):  # the TorchScript exporter is deprecated; it needs no onnxscript and handles HF models
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.cpu().eval(),
            (example[:2].cpu(),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=17,
        )


class _Calibration:
    """ONNX Runtime's calibration reader over training inputs, a batch at a time."""

    def __init__(self, inputs: Tensor, batch: int = 64) -> None:
        self.batches = iter([{"x": inputs[i : i + batch].numpy()} for i in range(0, len(inputs), batch)])

    def get_next(self) -> dict[str, Any] | None:
        return next(self.batches, None)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice on the root logger for every model; keep it off the console."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def export_onnx(
    model: nn.Module, example: Tensor, path: Path, *, int8: bool = False, calibration: Tensor | None = None
) -> str:
    """Write ``model`` to ``path`` as ONNX (``int8``: quantized by ONNX Runtime); return what was written.

    Raises:
        CannotExport: the exporter or the quantizer refused the network (the reason, one line).
    """
    try:
        if not int8:
            _export_float(model, example, path)
            return "float32"
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

        with tempfile.TemporaryDirectory() as scratch, _quiet_quantizer():
            source = Path(scratch) / "float.onnx"
            _export_float(model, example, source)
            if any(isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) for m in model.modules()):
                reader = _Calibration((calibration if calibration is not None else example).cpu())
                quantize_static(
                    str(source), str(path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                )  # fmt: skip
                return "int8 static"
            quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, per_channel=True)
            return "int8 dynamic"
    except Exception as exc:  # the exporters raise many types; the trial goes on without this runtime
        raise CannotExport(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc


def measure_onnx(
    module: nn.Module,
    task: Task,
    path: Path,
    *,
    int8_from: nn.Module | None,
    latency_seconds: float,
    latency_batch: int,
    time_latency: bool = True,
) -> tuple[dict[str, float], dict[str, str]]:
    """Export and measure one deployed network in ONNX Runtime: its ``*_onnxruntime`` metrics and tags.

    ``int8_from``: the float network a torch int8 artifact was made from (it is quantized by ONNX
    Runtime instead); ``None`` exports ``module`` itself. ``time_latency=False``: the latencies are
    NaN (the report's round times the export beside the PyTorch artifact).
    """
    from sweeper.trial.measure import measure_latency

    examples = task.inputs("test")
    try:
        source = int8_from if int8_from is not None else module
        kind = export_onnx(source, examples, path, int8=int8_from is not None, calibration=task.inputs("train")[:512])
        session = OnnxModule(path)
        scores = task.evaluate(session, "test")
    except CannotExport as exc:
        return {}, {"onnxruntime_unavailable": str(exc)}
    except Exception as exc:  # the session refused the file: also a labelled absence
        return {}, {"onnxruntime_unavailable": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    batch = min(latency_batch, len(examples))

    def latency(x: Tensor) -> float:
        return measure_latency(session, x, min_run_time=latency_seconds).median_ms if time_latency else math.nan

    metrics = {
        "test_score_onnxruntime": scores[task.score_metric],
        "size_bytes_onnxruntime": float(path.stat().st_size),
        "latency_ms_onnxruntime": latency(examples[:1]),
        "latency_ms_batch_onnxruntime": latency(examples[:batch]),
    }
    return metrics, {"onnxruntime_model": kind}
