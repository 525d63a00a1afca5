"""A trial run in-process through the trial's own stages, with every object kept for the tests to inspect."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

from sweeper.compression import TrainsWithHooks
from sweeper.measure import count_params
from sweeper.plan import TrialPlan, plan_trial
from sweeper.run import Trained, deploy_stage, train_stage
from sweeper.training import TrainResult


class Trial:
    """A trained, compressed, saved and reloaded trial (:func:`sweeper.run.train_stage` then ``deploy_stage``).

    ``trained`` (a state dict of the same model trained as the trial would) skips the main
    training run of methods that do not change it: tests share one trained model per network.
    """

    def __init__(self, cfg: DictConfig, path: Path, *, trained: dict[str, torch.Tensor] | None = None) -> None:
        self.plan: TrialPlan = plan_trial(cfg)
        if trained is not None and not isinstance(self.plan.compressor, TrainsWithHooks):
            self.plan.model.load_state_dict(trained)
            stage = Trained(TrainResult())
        else:
            stage = train_stage(self.plan)
        model = self.plan.model.cpu().eval()
        self.dense_params = count_params(model)[0]
        self.x = self.plan.task.inputs("test")[:64]
        with torch.no_grad():
            self.dense_outputs = model(self.x)
        self.path = path
        deployed = deploy_stage(self.plan, stage, path)
        self.compressed, self.reloaded, self.metrics = deployed.compressed, deployed.module, deployed.metrics
        self.size = int(self.metrics["size_bytes"])
        self.dense_bytes = self.metrics["compression_ratio"] * self.size


def with_nodes(cfg: DictConfig, *, model: dict | str | None = None, data: dict | None = None) -> DictConfig:
    """``cfg`` with its ``model`` and/or ``data`` node replaced by a plug-in's node (a string: a built-in, kept)."""
    with open_dict(cfg):
        if isinstance(model, dict):
            cfg.model = model
        if data is not None:
            cfg.data = data
    return cfg
