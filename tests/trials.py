"""A trial run in-process, with every object it made kept for the tests to inspect."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

from sweeper.compression import TrainsWithHooks
from sweeper.training import TrainResult
from sweeper.trial.context import JobContext
from sweeper.trial.measure import count_params
from sweeper.trial.plan import TrialPlan, plan_trial
from sweeper.trial.run import Deployed, Trained, deploy_stage, run


class Trial:
    """A trained, compressed, saved and reloaded trial (:func:`sweeper.trial.run.run`, tracking off).

    ``path``: where its artifact goes (its directory is the trial's output directory). ``trained``
    (a state dict of the same model trained as the trial would) skips the main training run of methods
    that do not change it: tests share one trained model per network.
    """

    def __init__(self, cfg: DictConfig, path: Path, *, trained: dict[str, torch.Tensor] | None = None) -> None:
        if trained is None or isinstance(plan_trial(cfg).compressor, TrainsWithHooks):
            result = run(cfg, JobContext.standalone(path.with_suffix("")))
            assert result.deployed is not None
            self.plan: TrialPlan = result.plan
            deployed: Deployed = result.deployed
        else:
            self.plan = plan_trial(cfg)
            self.plan.model.load_state_dict(trained)
            deployed = deploy_stage(self.plan, Trained(TrainResult()), path)
        dense = self.plan.spec.build()  # the network as its config builds it, before any method changed it
        self.dense_params = count_params(dense)[0]
        self.x = self.plan.task.inputs("test")[:64]
        with torch.no_grad():
            self.dense_outputs = dense.eval()(self.x)
        self.path = deployed.path
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
