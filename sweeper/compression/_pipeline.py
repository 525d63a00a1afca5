"""Compression stages applied in order, Deep-Compression style (default: distill -> prune -> quantize).

The stages are composed by Hydra: ``conf/compression/pipeline.yaml`` selects options of the
``compression/stages`` group, each of which places a method's own preset under
``compression.stages.<name>`` (so ``compression.stages.prune.amount=0.9`` sets a knob, and
``'compression/stages=[prune_structured,qat]'`` chooses others). Hydra instantiates every
stage; the pipeline receives the methods themselves, so a method of the user's own (a
``compression/stages/<name>.yaml`` in their config dir, or ``+compression.stages.<name>=...``)
is a stage like any other.

Stages that act during training (:class:`TrainsWithHooks`: ``distill``, ``prune_gradual``) come
first and share the main training run; the others run in order on the trained model, each
fine-tuning with the main run's loss (the distillation loss when ``distill`` is a stage). Zeros
made by a pruning stage stay zero in later stages, and the last stage's storage keeps them
sparse (e.g. int8 codes as bitmask + non-zero codes). Quantizing stages end a pipeline.

The latency is tagged ``simulated`` as soon as one stage's saving is not executed by the
kernels that run (sparse weights on dense kernels), even if another stage's is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from torch import nn

from sweeper.compression._base import (
    ChecksModel,
    Compressed,
    CompressionContext,
    CompressionMethod,
    MethodFacts,
    Training,
    TrainingHooks,
    TrainsWithHooks,
    UnsupportedLayer,
    facts_of,
)

__all__ = ["Pipeline"]


def _check_stages(stages: Mapping[str, object]) -> dict[str, CompressionMethod]:
    shown = f"[{', '.join(stages)}]"
    if not stages:
        raise ValueError("compression/stages=[]: needs at least one stage, e.g. 'compression/stages=[prune,quantize]'")
    checked: dict[str, CompressionMethod] = {}
    for name, stage in stages.items():
        if not isinstance(stage, CompressionMethod):
            raise ValueError(f"compression.stages.{name}: {type(stage).__name__} has no compress(model, ctx) method")
        if any(facts_of(s).final for s in checked.values()):  # its output is no longer a float network
            raise ValueError(f"compression/stages={shown}: {list(checked)[-1]} must be the last stage")
        if isinstance(stage, TrainsWithHooks) and any(not isinstance(s, TrainsWithHooks) for s in checked.values()):
            raise ValueError(f"compression/stages={shown}: {name} acts during training and must come first")
        checked[name] = stage
    return checked


def _combined(stages: Mapping[str, CompressionMethod]) -> MethodFacts:
    """A pipeline's facts from its stages': ``in-training`` if a stage is, final if the last stage is."""
    facts = [facts_of(stage) for stage in stages.values()]
    relations = {f.training for f in facts}
    training: Training = (
        "in-training" if "in-training" in relations else "fine-tunes" if "fine-tunes" in relations else "post-training"
    )
    # float_source stays false: the float network an int8 stage quantized is internal to the pipeline
    return MethodFacts("pipeline", training, final=facts[-1].final, calibration=any(f.calibration for f in facts))


class Pipeline:
    """``compression=pipeline``: several methods in sequence.

    Args:
        stages: the methods by stage name, in order (Hydra builds them from ``compression.stages``).
    """

    # a pipeline in general (its options' listing); an instance states its own stages' facts combined
    facts: MethodFacts = MethodFacts("pipeline", "in-training")

    def __init__(self, *, stages: Mapping[str, CompressionMethod]) -> None:
        self.stages = _check_stages(stages)
        self.facts = _combined(self.stages)

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Every stage's own check, before training; a bad value is named under its stage's key."""
        for name, stage in self.stages.items():
            if isinstance(stage, ChecksModel):
                try:
                    stage.check(model, ctx)
                except UnsupportedLayer:
                    raise
                except ValueError as exc:
                    raise ValueError(str(exc).replace("compression.", f"compression.stages.{name}.", 1)) from exc

    def training_hooks(self, ctx: CompressionContext) -> TrainingHooks:
        """The hooks of the stages that act during training, combined (the first loss wins)."""
        hooks = [stage.training_hooks(ctx) for stage in self.stages.values() if isinstance(stage, TrainsWithHooks)]
        loss_fns = [h.loss_fn for h in hooks if h.loss_fn is not None]
        step_hooks = [h.step_hook for h in hooks if h.step_hook is not None]

        def step_hook(model: nn.Module, step: int) -> None:
            for hook in step_hooks:
                hook(model, step)

        return TrainingHooks(
            loss_fn=loss_fns[0] if loss_fns else None,
            step_hook=step_hook if step_hooks else None,
            metrics={k: v for h in hooks for k, v in h.metrics.items()},
        )

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Run the stages in order; the last one's artifact is the pipeline's."""
        metrics: dict[str, float] = {}
        tags: dict[str, str] = {}
        params: dict[str, Any] = {}
        tables: dict[str, Any] = {}
        simulated = False
        result: Compressed | None = None
        module = model
        spec = None
        for stage in self.stages.values():
            result = stage.compress(module, ctx)
            module, spec = result.module, result.spec or spec
            ctx = replace(ctx, spec=spec or ctx.spec)  # a later stage rebuilds the network as it now is
            metrics.update(result.metrics)
            tags.update(result.tags)
            params.update(result.params)
            tables.update(result.tables)
            simulated |= result.latency_kind == "simulated"
        assert result is not None  # at least one stage, checked in __init__
        kind: Literal["real", "simulated"] = "simulated" if simulated else "real"
        return replace(result, metrics=metrics, tags=tags, params=params, tables=tables, spec=spec, latency_kind=kind)
