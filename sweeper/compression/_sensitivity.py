"""Per-layer sensitivity: each layer alone at each bit width and sparsity, scored on the validation split.

For a trained model, every selected weight tensor (see :mod:`sweeper.compression._targets`) is, on
its own, pruned by magnitude to each candidate sparsity and/or quantized to each candidate bit
width the way ``compression=qat`` exports it (symmetric, per output channel); the model is scored
on the validation split and the weight restored. Nothing trains: the cost is one validation pass
per (layer, setting). The table gives, for each row, the validation score, its drop from the
unmodified model and the bytes the layer takes in a ``packed`` artifact at that setting, which
is what ``compression=mixed`` allocates a size budget with.

Tables are cached per trained model (a digest of its weights, the validation split and the
settings) under ``.sweeper_cache/sensitivity/``, so the trials of a search over budgets measure a
model once.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from sweeper.cache import compute_once
from sweeper.compression._prune import select_masks
from sweeper.compression._qat import dequantize, quantize_weight
from sweeper.compression._targets import WeightRef
from sweeper.data import Task
from sweeper.scoring import METRICS, model_outputs

__all__ = ["COLUMNS", "FLOAT_BITS", "layer_bytes", "layer_sensitivity", "quantized", "settings", "sparsified"]

FLOAT_BITS = 32  # the bit width of a weight kept in float32
COLUMNS = ["layer", "params", "bits", "sparsity", "bytes", "val_score", "drop", "divergence"]


def settings(bits: Sequence[int], sparsities: Sequence[float]) -> list[tuple[int, float]]:
    """Every (bits, sparsity) a layer can take: the widths plus float32, times the sparsities plus 0."""
    widths = sorted({int(b) for b in bits} | {FLOAT_BITS})
    fractions = sorted({float(s) for s in sparsities} | {0.0})
    return [(b, s) for b in widths for s in fractions]


def layer_bytes(shape: Sequence[int], bits: int, sparsity: float) -> int:
    """Bytes a weight of ``shape`` takes in a ``packed`` artifact at ``bits`` and ``sparsity``.

    The codes (``bits`` each, or 4 bytes in float32) stored densely or as a bitmask plus the
    kept values, whichever is smaller (as :func:`~sweeper.compression._storage.encode_tensor`
    chooses), plus one float32 scale per output channel when quantized. An upper bound: weights
    that round to zero only make the stored tensor smaller.

    Example:
        >>> layer_bytes([8, 16], 4, 0.0), layer_bytes([8, 16], 32, 0.9), layer_bytes([8, 16], 4, 0.9)
        (96, 68, 55)
    """
    numel = math.prod(shape)
    kept = numel - round(sparsity * numel)

    def values(count: int) -> int:
        return math.ceil(count * bits / 8) if bits < FLOAT_BITS else 4 * count

    scales = 4 * int(shape[0]) if bits < FLOAT_BITS else 0
    return min(values(numel), math.ceil(numel / 8) + values(kept)) + scales


def sparsified(weight: Tensor, sparsity: float) -> Tensor:
    """``weight`` with its ``sparsity`` smallest-magnitude entries set to zero (this tensor alone)."""
    if sparsity == 0:
        return weight
    return weight * select_masks({"w": weight}, sparsity, scope="layer")["w"]


def quantized(weight: Tensor, bits: int) -> Tensor:
    """``weight`` rounded as ``compression=qat`` exports it at ``bits`` (float32: unchanged)."""
    return weight if bits >= FLOAT_BITS else dequantize(*quantize_weight(weight, bits))


def _digest(model: nn.Module, task: Task, names: Sequence[str], grid: Sequence[tuple[int, float]]) -> str:
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    for tensor in (task.x_val, task.y_val):
        digest.update(tensor.cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    digest.update(repr((task.score_metric, list(names), list(grid))).encode())
    return digest.hexdigest()[:24]


def _divergence(outputs: Tensor, base: Tensor) -> float:
    """Mean KL divergence (nats) of the outputs' softmax from the unmodified model's, over the last dimension."""
    log_p = torch.log_softmax(base.reshape(-1, base.shape[-1]).double(), dim=-1)
    log_q = torch.log_softmax(outputs.reshape(-1, outputs.shape[-1]).double(), dim=-1)
    return float(torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="batchmean").clamp(min=0))


def _measure(
    model: nn.Module, task: Task, refs: Sequence[WeightRef], grid: Sequence[tuple[int, float]]
) -> pd.DataFrame:
    model = model.cpu().eval()
    metric = METRICS[task.score_metric]

    def outputs() -> Tensor:
        return model_outputs(model, task.x_val, len(task.input_shape))

    base_outputs = outputs()
    base = metric.compute(base_outputs, task.y_val)
    rows = []
    with torch.no_grad():
        for ref in refs:
            weight = ref.tensor
            original = weight.detach().clone()
            for bits, sparsity in grid:
                score, divergence = base, 0.0
                if (bits, sparsity) != (FLOAT_BITS, 0.0):
                    weight.copy_(quantized(sparsified(original, sparsity), bits))
                    changed = outputs()
                    weight.copy_(original)
                    score, divergence = metric.compute(changed, task.y_val), _divergence(changed, base_outputs)
                size = layer_bytes(list(original.shape), bits, sparsity)
                rows.append([ref.name, original.numel(), bits, sparsity, size, score, base - score, divergence])
    return pd.DataFrame(rows, columns=COLUMNS)


def layer_sensitivity(
    model: nn.Module,
    task: Task,
    refs: Sequence[WeightRef],
    bits: Sequence[int],
    sparsities: Sequence[float],
    *,
    cache_dir: str | Path | None = ".sweeper_cache/sensitivity",
) -> pd.DataFrame:
    """The sensitivity table of ``model``: one row per (layer, bits, sparsity), columns :data:`COLUMNS`.

    ``drop`` is the validation score of the unmodified model minus the row's (positive: worse);
    ``divergence`` the mean KL divergence (nats) of its outputs from the unmodified model's, a
    continuous measure that still tells settings apart when the score does not move; ``bits`` 32
    means float32. The model is left as it was. ``cache_dir=None`` disables the cache.
    """
    grid = settings(bits, sparsities)
    if cache_dir is None:
        return _measure(model, task, refs, grid)
    target = Path(cache_dir) / f"{_digest(model, task, [r.name for r in refs], grid)}.csv"

    def make(tmp: Path) -> None:
        buffer = io.StringIO()
        _measure(model, task, refs, grid).to_csv(buffer, index=False)
        tmp.write_text(buffer.getvalue())

    return pd.read_csv(compute_once(target, make))
