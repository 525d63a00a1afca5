"""Measurement of the deployable artifact: the task's score after reloading, size on disk, latency.

Latency is the median of repeated timings (``torch.utils.benchmark``, which warms up
first) on one CPU thread, at batch 1 and per sample at a larger batch; a causal language model is
also timed as it generates (prefill tokens/s, decode ms per token). A trial's own timing
is an estimate (taken alone, at whatever speed the CPU runs then); the numbers users read come
from the report's round, which times every network of a sweep side by side
(:mod:`sweeper.report.latency_round`). So a trial times itself only when something reads it
before that round (:func:`trial_times_latency`), and once per network per process.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.utils.benchmark as benchmark
from torch import Tensor, nn

from sweeper.hf import HFCausalLM

if TYPE_CHECKING:
    from sweeper.data import Task

__all__ = [
    "TRIAL_LATENCY",
    "Latency",
    "count_params",
    "measure_artifact",
    "measure_generation",
    "measure_latency",
    "trial_times_latency",
    "untouched_recurrent",
]

TRIAL_LATENCY = ("auto", "always", "never")  # measure.trial_latency


@dataclass(frozen=True)
class Latency:
    """Milliseconds per sample: median and inter-quartile range of the timed blocks."""

    median_ms: float
    iqr_ms: float


def measure_latency(model: nn.Module, example: Tensor, *, min_run_time: float = 0.2) -> Latency:
    """Per-sample latency of ``model(example)`` on the CPU with one thread.

    Args:
        model: the module that actually runs (eval mode is set here).
        example: a batch of inputs; its first dimension is the batch size.
        min_run_time: seconds of timing after warm-up; more gives a steadier median.
    """
    model = model.eval().cpu()
    example = example.cpu()
    timer = benchmark.Timer(
        stmt="with torch.inference_mode(): model(x)",
        globals={"model": model, "x": example, "torch": torch},
        num_threads=1,
    )
    result = timer.blocked_autorange(min_run_time=min_run_time)
    per_sample = 1000.0 / len(example)
    return Latency(median_ms=result.median * per_sample, iqr_ms=result.iqr * per_sample)


def measure_generation(
    model: HFCausalLM, prompt: Tensor, *, new_tokens: int = 16, repeats: int = 3
) -> dict[str, float]:
    """A causal LM generating at batch 1 with its KV cache, greedy, one thread: the prompt's prefill in tokens per
    second and the decode's milliseconds per generated token (medians of ``repeats`` after a warm-up)."""
    model = model.eval().cpu()
    prompt = prompt[:1].cpu()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    prefill, decode = [], []
    try:
        with torch.inference_mode():
            for _ in range(repeats + 1):
                start = time.perf_counter()
                logits, cache = model.step(prompt)
                prompted = time.perf_counter()
                for _ in range(new_tokens):
                    logits, cache = model.step(logits[:, -1:].argmax(-1), cache)
                prefill.append(prompted - start)
                decode.append((time.perf_counter() - prompted) / new_tokens)
    finally:
        torch.set_num_threads(threads)
    return {
        "prefill_tokens_per_s": prompt.shape[1] / statistics.median(prefill[1:]),
        "decode_ms_per_token": 1000 * statistics.median(decode[1:]),
    }


def _weight_tensors(model: nn.Module) -> Iterator[Tensor]:
    """Every parameter, plus the weights and biases that quantized modules hold as packed params
    (exposed through ``weight()``/``bias()`` methods, not ``.parameters()``)."""
    yield from (p.detach() for p in model.parameters())
    for module in model.modules():
        for name in ("weight", "bias"):
            getter = getattr(type(module), name, None)
            if callable(getter):  # a method on the class, as on torch.ao quantized modules
                tensor = getattr(module, name)()
                if tensor is not None:
                    yield tensor.int_repr() if tensor.is_quantized else tensor.detach()


def count_params(model: nn.Module) -> tuple[int, int]:
    """(all weight elements, non-zero weight elements), buffers excluded; int8 weights counted by their codes."""
    total = nonzero = 0
    for tensor in _weight_tensors(model):
        total += tensor.numel()
        nonzero += int(torch.count_nonzero(tensor))
    return total, nonzero


def untouched_recurrent(module: nn.Module) -> tuple[float, list[str]]:
    """The share of the network's weight elements that sit in recurrent layers (GRU, LSTM, RNN) still dense in
    float (no zero, no fewer levels than values), and those layers' types: what a compression method left alone.

    Example:
        >>> untouched_recurrent(nn.Sequential(nn.GRU(4, 8), nn.Linear(8, 2)))[1]
        ['GRU']
    """
    total = sum(p.numel() for name, p in module.named_parameters() if "weight" in name)
    left, kinds = 0, []
    for layer in module.modules():
        if isinstance(layer, nn.RNNBase):
            weights = [p for name, p in layer.named_parameters() if name.startswith("weight_")]
            if all(w.is_floating_point() and bool((w != 0).all()) for w in weights):
                left += sum(w.numel() for w in weights)
                kinds.append(type(layer).__name__)
    return (left / total if total else 0.0), sorted(set(kinds))


# network key -> (batch 1, per sample at the batch, a language model's generation), this process
_timed: dict[str, tuple[Latency, Latency, dict[str, float]]] = {}
_NOT_TIMED = Latency(math.nan, math.nan)


def trial_times_latency(mode: str, *, search_reads_latency: bool, round_follows: bool) -> bool:
    """Whether a trial times its own latency (``measure.trial_latency``).

    ``always``: every trial. ``never``: no trial (the report's round, or a later
    ``python -m sweeper.report``, times them). ``auto``: only when something reads it before the
    report's round does: a search whose objectives or constraints name a latency, or a run that no
    round follows (a single run, a sweep without the report, ``latency_rounds=0``).

    Example:
        >>> trial_times_latency("auto", search_reads_latency=False, round_follows=True)
        False
    """
    if mode != "auto":
        return mode == "always"
    return search_reads_latency or not round_follows


def measure_artifact(
    module: nn.Module,
    task: Task,
    *,
    latency_seconds: float,
    latency_batch: int,
    network: str | None = None,
    time_latency: bool = True,
) -> tuple[dict[str, float], str]:
    """What is measured on a reloaded artifact: the task's metrics on test and validation, weights, latency, split sizes.

    ``network`` identifies the deployed computation (architecture, artifact format, weight counts,
    input shapes, timing settings): a network already timed in this process is not timed again,
    its latency is reused. ``time_latency=False``: no timing at all, the latencies are NaN (the
    end-of-sweep round, :mod:`sweeper.report.latency_round`, times every network side by side).
    The second value says which: ``estimate``, ``reused estimate`` or ``not timed``. The size on
    disk and the training's numbers come from the stages that know them.
    """
    params, nonzero = count_params(module)
    examples = task.inputs("test")
    batch = min(latency_batch, len(examples))
    key = f"{network}|{params}|{nonzero}|{task.input_shape}|{batch}|{latency_seconds}" if network else None
    generation: dict[str, float]
    if not time_latency:
        (latency, per_sample, generation), how = (_NOT_TIMED, _NOT_TIMED, {}), "not timed"
    elif key is not None and key in _timed:
        (latency, per_sample, generation), how = _timed[key], "reused estimate"
    else:
        latency = measure_latency(module, examples[:1], min_run_time=latency_seconds)
        per_sample = measure_latency(module, examples[:batch], min_run_time=latency_seconds)
        how = "estimate"
        generation = measure_generation(module, examples[:1]) if isinstance(module, HFCausalLM) else {}
        if key is not None:
            _timed[key] = latency, per_sample, generation
    scores = {
        f"{split}_{name}": value for split in ("test", "val") for name, value in task.evaluate(module, split).items()
    }
    return {
        "test_score": scores[f"test_{task.score_metric}"],
        "val_score": scores[f"val_{task.score_metric}"],
        **scores,
        "latency_ms": latency.median_ms,
        "latency_iqr_ms": latency.iqr_ms,
        "latency_ms_batch": per_sample.median_ms,
        **generation,  # a causal LM: prefill_tokens_per_s, decode_ms_per_token
        "params": params,
        "nonzero_params": nonzero,
        "train_samples": task.train_size,  # after the validation carve; a stream's whole length
        "val_samples": len(task.x_val),
        "test_samples": len(task.x_test),
    }, how
