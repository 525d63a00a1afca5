"""``compression=mixed``: a bit width and a sparsity per layer, chosen under an artifact-size budget.

1. **Sensitivity** (:mod:`sweeper.compression._sensitivity`): each layer alone at each candidate
   (bits, sparsity), scored on the validation split, with the bytes it would take.
2. **Allocation**: one setting per layer maximising the predicted validation score (the unmodified
   score minus the layers' drops, added up) with the layers' bytes within ``budget_kb`` minus what
   the rest of the artifact takes. That is a multiple-choice knapsack, solved exactly as an integer
   program (:func:`allocate`, ``scipy.optimize.milp``: HiGHS, zero optimality gap). The rest of the
   artifact (biases, norms, scales' containers, the index) is measured by writing the artifact of
   the chosen setting; when it exceeds the budget the knapsack is solved again with that much less.
3. **Fine-tuning** with the masks held and every quantized layer fake-quantized at its own width
   (``compression=qat``'s straight-through quantizer), then the ``packed`` artifact (each weight at
   its width, sparse when smaller), measured like every method. The validation split decides
   whether the fine-tuned weights or those before fine-tuning are kept (metric ``finetuning_kept``):
   at a constant learning rate, fine-tuning a residual network with some layers at 3 bits lost up to
   11 points in the benchmark where the untuned allocation kept its predicted score.

Latency is ``simulated``: the loader dequantizes into float kernels, like ``qat`` and ``prune``.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from sweeper.artifact import ModelSpec, dense_payload, serialized_size
from sweeper.compression._base import (
    Compressed,
    CompressionContext,
    MethodFacts,
    UnsupportedLayer,
    check_epochs,
    check_fraction,
)
from sweeper.compression._qat import finetune_and_pack
from sweeper.compression._sensitivity import FLOAT_BITS, layer_sensitivity, sparsified
from sweeper.compression._targets import WeightRef, WeightSelection, weight_refs

__all__ = ["MixedPrecision", "allocate", "allocate_table"]

Setting = tuple[int, float]  # (bits, sparsity); bits 32: float32
INDEX_SLACK = 64  # bytes kept free under the budget: the artifact's zlib-compressed index may vary by a few


def allocate(costs: Sequence[Sequence[int]], gains: Sequence[Sequence[float]], capacity: float) -> list[int] | None:
    """The multiple-choice knapsack: one option per group, total cost <= ``capacity``, the largest total gain.

    Solved exactly as a 0/1 integer program with ``scipy.optimize.milp`` (HiGHS, ``mip_rel_gap=0``).

    Args:
        costs: per group, the cost of each option.
        gains: per group, the gain of each option (same shape as ``costs``).
        capacity: the most the chosen options may cost together.

    Returns:
        The index of the chosen option in each group, or ``None`` when no choice fits.

    Example:
        >>> allocate([[4, 1], [3, 2]], [[1.0, 0.0], [1.0, 0.5]], capacity=5)
        [1, 0]
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    sizes = [len(group) for group in costs]
    offsets = np.cumsum([0, *sizes])
    n = int(offsets[-1])
    one_each = np.zeros((len(sizes), n))
    for group, (start, stop) in enumerate(itertools.pairwise(offsets)):
        one_each[group, start:stop] = 1
    cost = np.concatenate([np.asarray(c, dtype=float) for c in costs])[None, :]
    result = milp(
        -np.concatenate([np.asarray(g, dtype=float) for g in gains]),
        constraints=[LinearConstraint(one_each, 1, 1), LinearConstraint(cost, -np.inf, capacity)],
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 0.0},
    )
    if result.x is None:
        return None
    chosen = np.round(result.x)
    return [int(np.argmax(chosen[start:stop])) for start, stop in itertools.pairwise(offsets)]


def allocate_table(table: pd.DataFrame, capacity: float) -> dict[str, Setting] | None:
    """The setting per layer of a sensitivity table that loses the least predicted score within ``capacity`` bytes.

    The predicted loss of a layer's setting is its validation-score drop, taken as 0 where the
    score rose (compressing one layer does not improve a model: that is sampling noise). Among
    settings the score cannot tell apart, the smaller output ``divergence`` wins: its weight keeps
    the layers' summed tie-breaks below half the table's smallest score step (one validation
    sample), so it never outweighs a measured drop. ``None`` when even the smallest settings exceed it.
    """
    groups = [rows for _, rows in table.groupby("layer", sort=False)]
    steps = table["drop"].abs()
    resolution = float(steps[steps > 1e-9].min()) if (steps > 1e-9).any() else 1e-3
    tie = 0.5 * resolution / len(groups)
    divergence = table["divergence"] if "divergence" in table else pd.Series(0.0, index=table.index)
    loss = table["drop"].clip(lower=0) + tie * divergence / (1 + divergence)
    chosen = allocate(
        [rows["bytes"].tolist() for rows in groups], [(-loss[rows.index]).tolist() for rows in groups], capacity
    )
    if chosen is None:
        return None
    return {
        str(rows["layer"].iloc[i]): (int(rows["bits"].iloc[i]), float(rows["sparsity"].iloc[i]))
        for rows, i in zip(groups, chosen, strict=True)
    }


class MixedPrecision:
    """``compression=mixed``: per-layer bit widths and sparsities under ``budget_kb``, then fine-tuning.

    Args:
        budget_kb: the artifact's size budget in KiB (1024 bytes); or
        budget_ratio: the budget as a fraction of the float32 artifact (for searches over models).
        bits: the candidate widths, each in 2..8 (float32 is always a candidate).
        sparsities: the candidate sparsities, each in [0, 1) (dense is always a candidate).
        finetune_epochs: epochs of fine-tuning with the masks held and the layers fake-quantized.
        embeddings: include embedding tables (quantized per row).
        include: module-name patterns to act on (empty: every Linear, Conv, attention and embedding weight).
        exclude: module-name patterns kept in float32 and dense.
        cache_dir: where sensitivity tables are cached (relative to the working directory); null: no cache.
    """

    facts: ClassVar[MethodFacts] = MethodFacts("quantization", "fine-tunes", final=True)

    def __init__(
        self,
        *,
        budget_kb: float | None = None,
        budget_ratio: float | None = None,
        bits: Sequence[int] = (2, 3, 4, 8),
        sparsities: Sequence[float] = (0.5, 0.75, 0.9),
        finetune_epochs: int = 5,
        embeddings: bool = True,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        cache_dir: str | None = ".sweeper_cache/sensitivity",
    ) -> None:
        if (budget_kb is None) == (budget_ratio is None):
            raise ValueError(
                f"compression.budget_kb={budget_kb}, compression.budget_ratio={budget_ratio}: set exactly one "
                "(the other null): a size in KiB, or a fraction of the float32 artifact"
            )
        if budget_kb is not None and (
            isinstance(budget_kb, bool) or not (isinstance(budget_kb, int | float) and budget_kb > 0)
        ):
            raise ValueError(f"compression.budget_kb={budget_kb}: must be a size in KiB > 0")
        if budget_ratio is not None and not (isinstance(budget_ratio, int | float) and 0 < budget_ratio < 1):
            raise ValueError(
                f"compression.budget_ratio={budget_ratio}: must be in (0, 1), a fraction of the float32 artifact"
            )
        if not bits or any(isinstance(b, bool) or not (isinstance(b, int) and 2 <= b <= 8) for b in bits):
            raise ValueError(f"compression.bits={list(bits)}: allowed: a list of integers 2..8, e.g. [2, 4, 8]")
        self.budget_kb, self.budget_ratio = budget_kb, budget_ratio
        self.bits = [int(b) for b in bits]
        self.sparsities = [check_fraction(s, "sparsities") for s in sparsities]
        self.finetune_epochs = check_epochs(finetune_epochs)
        self.selection = WeightSelection(embeddings=embeddings, include=include, exclude=exclude)
        self.cache_dir = cache_dir

    def _refs(self, model: nn.Module) -> list[WeightRef]:
        return weight_refs(model, self.selection, method="mixed")

    def budget_bytes(self, model: nn.Module, spec: ModelSpec) -> int:
        """The budget in bytes: ``budget_kb``, or ``budget_ratio`` x the float32 (dense) artifact of ``model``."""
        if self.budget_kb is not None:
            return int(self.budget_kb * 1024)
        assert self.budget_ratio is not None
        return int(self.budget_ratio * serialized_size("dense", spec, dense_payload(model)))

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Fail before training when no assignment of the candidates fits the budget (sizes depend on shapes only).

        Raises:
            UnsupportedLayer: the budget (``budget_kb``, or ``budget_ratio`` of this model's float32 artifact) is
                below the smallest size this model can reach: whether it fits depends on the model, so this trial
                fails (a grid announces it before its first job) and the sweep's other models go on.
        """
        self._check_reachable(model, ctx.spec)

    def _check_reachable(self, model: nn.Module, spec: ModelSpec) -> None:
        smallest = (min(self.bits), max([0.0, *self.sparsities]))
        size = _artifact_bytes(model, spec, {ref.name: smallest for ref in self._refs(model)})
        budget = self.budget_bytes(model, spec)
        if size <= budget:
            return
        every = f"every layer at {smallest[0]} bits, sparsity {smallest[1]:g}"
        if self.budget_kb is None:
            dense = serialized_size("dense", spec, dense_payload(model))
            raise UnsupportedLayer(
                "mixed",
                "",
                model,
                f"compression.budget_ratio={self.budget_ratio:g} is {budget / 1024:.1f} KiB; the smallest reachable "
                f"artifact is {size / 1024:.1f} KiB ({every}), {size / dense:.3f} of float32",
            )
        raise UnsupportedLayer(
            "mixed",
            "",
            model,
            f"compression.budget_kb={self.budget_kb:g}: no per-layer assignment fits this model; the smallest "
            f"reachable artifact is {size / 1024:.1f} KiB ({every}); allowed: budget_kb >= "
            f"{math.ceil(size / 1024 * 10) / 10:g}, or budget_ratio (a share of each model's float32 artifact)",
        )

    def choose(self, model: nn.Module, table: pd.DataFrame, spec: ModelSpec) -> tuple[dict[str, Setting], int]:
        """The per-layer settings within the budget, and the artifact's bytes at them before fine-tuning.

        Raises:
            ValueError: no assignment fits (the message gives the smallest reachable size).
        """
        layers = table.groupby("layer", sort=False)["bytes"]
        other_bytes = _artifact_bytes(model, spec, {}) - int(layers.max().sum())  # all float32, dense
        limit = (
            self.budget_bytes(model, spec) - INDEX_SLACK
        )  # room for the index's compressed size to vary after fine-tuning
        for _ in range(5):
            chosen = allocate_table(table, limit - other_bytes)
            if chosen is None:
                break
            size = _artifact_bytes(model, spec, chosen)
            if size <= limit:
                return chosen, size
            other_bytes += size - limit  # the index and containers took more: ask the solver for less
        self._check_reachable(model, spec)  # raises with the smallest reachable size
        raise ValueError(
            f"compression=mixed: a budget of {limit + INDEX_SLACK} bytes is within {INDEX_SLACK} bytes of the "
            "smallest reachable size; allow a little more"
        )

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Measure sensitivities, allocate the budget, fine-tune with the chosen settings, pack."""
        refs = self._refs(model)
        budget = self.budget_bytes(model, ctx.spec)
        table = layer_sensitivity(model, ctx.task, refs, self.bits, self.sparsities, cache_dir=self.cache_dir)
        chosen, _ = self.choose(model, table, ctx.spec)
        untuned = copy.deepcopy(model).cpu() if self.finetune_epochs else None
        payload = _packed(model, chosen, ctx, self.finetune_epochs)
        metric = ctx.task.score_metric
        val_scores = {"val_score_finetuned": ctx.task.evaluate(model, "val")[metric]}
        if untuned is not None:  # validation decides whether fine-tuning helped (it can hurt at low widths)
            untuned_payload = _packed(untuned, chosen, None, 0)
            val_scores["val_score_untuned"] = ctx.task.evaluate(untuned, "val")[metric]
            if val_scores["val_score_untuned"] > val_scores["val_score_finetuned"]:
                model, payload = untuned, untuned_payload
        kept_finetuning = float(untuned is not None and model is not untuned)
        size = serialized_size("packed", ctx.spec, payload)
        if size > budget:  # sizes are fixed by the plan; only the index's compression can vary
            raise RuntimeError(f"compression=mixed: the artifact takes {size} bytes, over its budget of {budget}")
        sizes = {ref.name: ref.tensor.numel() for ref in refs}
        rows = table.set_index(["layer", "bits", "sparsity"])
        predicted_drop = sum(float(rows.loc[(name, b, s), "drop"]) for name, (b, s) in chosen.items())
        base = float(table["val_score"].iloc[0] + table["drop"].iloc[0])
        allocation = pd.DataFrame(
            [(name, b, s, int(rows.loc[(name, b, s), "bytes"])) for name, (b, s) in chosen.items()],
            columns=["layer", "bits", "sparsity", "bytes"],
        )
        return Compressed(
            module=model,
            kind="packed",
            payload=payload,
            latency_kind="simulated",
            metrics={
                "bits": sum(b * sizes[name] for name, (b, _) in chosen.items()) / sum(sizes.values()),
                "sparsity": sum(s * sizes[name] for name, (_, s) in chosen.items()) / sum(sizes.values()),
                "budget_bytes": float(budget),
                "predicted_val_score": base - predicted_drop,
                "finetuning_kept": kept_finetuning,  # 0: the validation split preferred the weights before it
                **val_scores,
            },
            params={
                **{f"layers.{name}.bits": b for name, (b, _) in chosen.items()},
                **{f"layers.{name}.sparsity": s for name, (_, s) in chosen.items()},
            },
            tables={"sensitivity": table, "allocation": allocation},
        )


def _bits_or_none(bits: int) -> int | None:
    return None if bits >= FLOAT_BITS else bits


@torch.no_grad()
def _apply(refs: Sequence[WeightRef], chosen: dict[str, Setting]) -> None:
    """Zero each layer's smallest weights to its chosen sparsity (each layer on its own)."""
    for ref in refs:
        ref.tensor.copy_(sparsified(ref.tensor.detach(), chosen[ref.name][1]))


def _packed(
    model: nn.Module, chosen: dict[str, Setting], ctx: CompressionContext | None, epochs: int
) -> dict[str, Any]:
    """Prune ``model``'s chosen layers in place, fine-tune ``epochs`` at their widths, return the ``packed`` payload."""
    refs = [ref for ref in weight_refs(model, WeightSelection(embeddings=True)) if ref.name in chosen]
    _apply(refs, chosen)
    plan = {ref.name: (ref, _bits_or_none(chosen[ref.name][0])) for ref in refs}
    return finetune_and_pack(model, ctx, plan, epochs, fixed_masks=True)


def _artifact_bytes(model: nn.Module, spec: ModelSpec, chosen: dict[str, Setting]) -> int:
    """Bytes of the ``packed`` artifact of ``model`` at ``chosen`` (other weights: float32, dense), nothing trained."""
    return serialized_size("packed", spec, _packed(copy.deepcopy(model).cpu(), chosen, None, 0))
