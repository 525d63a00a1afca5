"""A trial run in-process, stage by stage, with every object kept for the tests to inspect."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from sweeper.artifact import dense_payload, load_artifact, save_artifact, serialized_size
from sweeper.compression import CompressionContext, Compressed, TrainsWithHooks
from sweeper.measure import count_params
from sweeper.run import TrialPlan, plan_trial
from sweeper.training import train


def train_as_a_trial(plan: TrialPlan) -> CompressionContext:
    """Train the plan's model as a trial does; return the context to compress it with (hooks included)."""
    ctx = plan.context()
    hooks = plan.compressor.training_hooks(ctx) if isinstance(plan.compressor, TrainsWithHooks) else None
    train(
        plan.model,
        plan.task,
        plan.optimizer_factory,
        plan.strategy,
        seed=plan.seed,
        loss_fn=hooks.loss_fn if hooks else None,
        step_hook=hooks.step_hook if hooks else None,
    )
    return replace(ctx, hooks=hooks)


class Trial:
    """A trained, compressed, saved and reloaded trial.

    ``trained`` (a state dict of the same model trained as the trial would) skips the main
    training run of methods that do not change it: tests share one trained model per network.
    """

    def __init__(self, cfg: DictConfig, path: Path, *, trained: dict[str, torch.Tensor] | None = None) -> None:
        self.plan = plan_trial(cfg)
        if trained is not None and not isinstance(self.plan.compressor, TrainsWithHooks):
            self.plan.model.load_state_dict(trained)
            ctx = self.plan.context()
        else:
            ctx = train_as_a_trial(self.plan)
        model: nn.Module = self.plan.model.cpu().eval()
        self.dense_bytes = serialized_size("dense", self.plan.spec, dense_payload(model))
        self.dense_params = count_params(model)[0]
        self.x = self.plan.task.x_test[:64]
        with torch.no_grad():
            self.dense_outputs = model(self.x)
        self.compressed: Compressed = self.plan.compressor.compress(model, ctx)
        self.metrics = {**(ctx.hooks.metrics if ctx.hooks else {}), **self.compressed.metrics}
        self.size = save_artifact(path, self.compressed.kind, self.plan.spec, self.compressed.payload)
        self.reloaded = load_artifact(path)
