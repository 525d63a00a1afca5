"""A trial run in-process, with every object it made kept for the tests to inspect."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

from sweeper.trial.context import JobContext
from sweeper.trial.measure import count_params
from sweeper.trial.plan import TrialPlan
from sweeper.trial.run import Deployed, run


class Trial:
    """A trained, compressed, saved and reloaded trial (:func:`sweeper.trial.run.run`, tracking off).

    ``path`` names its output directory (``path`` without its suffix). Trials of the same network share
    its trained base (``base.cache_dir``: one per test process, see ``conftest.compose_config``).
    """

    def __init__(self, cfg: DictConfig, path: Path) -> None:
        result = run(cfg, JobContext.standalone(path.with_suffix("")))
        assert result.deployed is not None
        self.plan: TrialPlan = result.plan
        self.result = result
        deployed: Deployed = result.deployed
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
