"""Compression stages applied in order, Deep-Compression style (default: distill -> prune -> quantize).

Each stage is one of the group's methods, configured by its own preset
(``conf/compression/<stage>.yaml``) plus the pipeline's ``options.<stage>`` overrides.
Stages that act during training (``distill``, ``prune_gradual``) come first and share
the main training run; the others run in order on the trained model, each fine-tuning
with the distillation loss when ``distill`` is part of the pipeline. Zeros made by a
pruning stage stay zero in later stages, and the last stage's storage keeps them sparse
(e.g. int8 codes as bitmask + non-zero codes). Quantizing stages end a pipeline.

The latency is tagged ``simulated`` as soon as one stage's saving is not executed by the
kernels that run (sparse weights on dense kernels), even if another stage's is.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from sweeper.compression._base import CompressionContext, CompressionMethod, Compressed, TrainingHooks
from sweeper.training.loop import LossFn

__all__ = ["Pipeline", "STAGES"]

STAGES = ("distill", "prune", "prune_random", "prune_structured", "prune_gradual", "quantize", "qat")
_DURING_TRAINING = ("distill", "prune_gradual")
_FINAL = ("quantize", "qat")  # their output is no longer a float network


def _check_stages(stages: Sequence[str]) -> list[str]:
    stages = [str(s) for s in stages]
    shown = f"[{', '.join(stages)}]"
    if not stages:
        raise ValueError(f"compression.stages={shown}: needs at least one stage; allowed: {', '.join(STAGES)}")
    for name in stages:
        if name not in STAGES:
            raise ValueError(f"compression.stages: unknown stage {name!r}; allowed: {', '.join(STAGES)}")
    if len(set(stages)) != len(stages):
        raise ValueError(f"compression.stages={shown}: a stage may appear once")
    for i, name in enumerate(stages):
        if name in _FINAL and i != len(stages) - 1:
            raise ValueError(f"compression.stages={shown}: {name} must be the last stage")
        if name in _DURING_TRAINING and any(s not in _DURING_TRAINING for s in stages[:i]):
            raise ValueError(f"compression.stages={shown}: {name} acts during training and must come first")
    return stages


def _build_stage(name: str, options: Mapping[str, Any]) -> CompressionMethod:
    """The stage's preset from the `compression` group, with ``options`` merged over it."""
    preset = importlib.resources.files("sweeper.conf").joinpath("compression", f"{name}.yaml").read_text()
    node = OmegaConf.merge(OmegaConf.create(preset), OmegaConf.create(dict(options)))
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        message = " ".join(str(cause).split()).replace("compression.", f"compression.options.{name}.", 1)
        raise ValueError(message) from exc


class Pipeline:
    """``compression=pipeline``: several methods in sequence.

    Args:
        stages: stage names in order, from ``distill, prune, prune_random, prune_structured,
            prune_gradual, quantize, qat``.
        options: per-stage overrides of the presets, e.g. ``{"prune": {"amount": 0.8}}``.
    """

    def __init__(
        self, *, stages: Sequence[str] = ("distill", "prune", "quantize"), options: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        self.names = _check_stages(stages)
        options = dict(options or {})
        for name in options:
            if name not in self.names:
                raise ValueError(f"compression.options.{name}: not a stage of this pipeline; stages: {', '.join(self.names)}")
        self.stages = [_build_stage(name, options.get(name) or {}) for name in self.names]
        self._loss_fn: LossFn | None = None  # distillation's, shared by the fine-tuning of later stages

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Every stage's own check, before training."""
        for stage in self.stages:
            if hasattr(stage, "check"):
                stage.check(model, ctx)

    def training_hooks(self, ctx: CompressionContext) -> TrainingHooks:
        """The hooks of the stages that act during training, combined."""
        hooks = [stage.training_hooks(ctx) for stage in self.stages if hasattr(stage, "training_hooks")]
        loss_fns = [h.loss_fn for h in hooks if h.loss_fn is not None]
        step_hooks = [h.step_hook for h in hooks if h.step_hook is not None]
        self._loss_fn = loss_fns[0] if loss_fns else None

        def step_hook(model: nn.Module, step: int) -> None:
            for hook in step_hooks:
                hook(model, step)

        return TrainingHooks(loss_fn=self._loss_fn, step_hook=step_hook if step_hooks else None)

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Run the stages in order; the last one's artifact is the pipeline's."""
        stage_ctx = replace(ctx, loss_fn=self._loss_fn) if self._loss_fn is not None else ctx
        metrics: dict[str, float] = {}
        simulated = False
        result: Compressed | None = None
        module = model
        for stage in self.stages:
            result = stage.compress(module, stage_ctx)
            module = result.module
            metrics.update(result.metrics)
            simulated |= result.latency_kind == "simulated"
        assert result is not None  # at least one stage, checked in __init__
        return replace(result, metrics=metrics, latency_kind="simulated" if simulated else "real")

