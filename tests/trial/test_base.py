"""Train once, compress many: the base network of a trial is trained once per cache and reused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TINY_TASK, compose_config

from sweeper.data import Task
from sweeper.streams import NpyStream
from sweeper.training import TrainingDiverged
from sweeper.trial.base import base_key
from sweeper.trial.context import JobContext
from sweeper.trial.plan import plan_trial
from sweeper.trial.run import run


def _cfg(cache, *overrides: str):
    return compose_config(*TINY_TASK, "strategy.epochs=3", *overrides, f"base.cache_dir={cache}")


def test_each_method_starts_from_the_one_base_its_training_makes(tmp_path):
    cache = tmp_path / "bases"
    results = {
        method: run(_cfg(cache, f"compression={method}", *extra), JobContext.standalone(tmp_path / method))
        for method, extra in [
            ("none", []),
            ("prune", ["compression.finetune_epochs=1"]),
            ("quantize", []),
            ("prune_gradual", []),  # changes the training run itself: trains its own
        ]
    }
    origins = {method: result.trained.origin for method, result in results.items() if result.trained}
    assert origins == {"none": "trained", "prune": "reused", "quantize": "reused", "prune_gradual": "trained"}
    assert len(list(cache.glob("*.pt"))) == 1  # one base for the three methods that start from it
    none, quantize = results["none"], results["quantize"]
    assert none.trained is not None and quantize.trained is not None
    assert quantize.trained.result.history == none.trained.result.history  # its curves are its base's
    assert quantize.metrics["epochs_run"] == 3 and quantize.metrics["base_train_seconds"] > 0
    assert quantize.metrics["train_seconds"] < none.metrics["train_seconds"]  # loaded, not trained


def test_the_key_follows_what_shapes_the_base_and_not_the_method(tmp_path):
    def key(*overrides: str) -> str:
        return base_key(plan_trial(_cfg(tmp_path, *overrides)))

    same = key("compression=none")
    assert key("compression=qat") == key("compression=prune") == same
    for change in ("seed=1", "optimizer.lr=0.01", "strategy.epochs=4", "data.n_samples=320", "model.hidden=[32]"):
        assert key(change) != same, change


def test_a_failed_training_publishes_nothing_and_the_next_trial_trains(tmp_path):
    cache = tmp_path / "bases"
    with pytest.raises(TrainingDiverged):
        run(_cfg(cache, "optimizer=sgd", "optimizer.lr=1e30"), JobContext.standalone(tmp_path / "a"))
    assert not list(cache.glob("*.pt"))
    result = run(_cfg(cache, "compression=prune", "compression.finetune_epochs=0"), JobContext.standalone(tmp_path))
    assert result.trained is not None and result.trained.origin == "trained"


def test_reuse_can_be_switched_off(tmp_path):
    cache = tmp_path / "bases"
    for directory in ("a", "b"):
        result = run(_cfg(cache, "base.reuse=false"), JobContext.standalone(tmp_path / directory))
        assert result.trained is not None and result.trained.origin == "trained"
    assert not cache.exists()


def test_a_reused_base_is_the_same_network_its_training_left(tmp_path):
    cache = tmp_path / "bases"
    first = run(_cfg(cache, "compression=none"), JobContext.standalone(tmp_path / "a"))
    second = run(_cfg(cache, "compression=none", "measure.latency_batch=16"), JobContext.standalone(tmp_path / "b"))
    assert first.deployed is not None and second.deployed is not None
    assert second.trained is not None and second.trained.origin == "reused"
    for name, tensor in first.deployed.module.state_dict().items():
        assert torch.equal(tensor, second.deployed.module.state_dict()[name]), name
    assert second.metrics["test_score"] == first.metrics["test_score"]


def test_the_key_tells_apart_streams_whose_samples_are_the_same(tmp_path):
    plan = plan_trial(_cfg(tmp_path))
    x, y = plan.task.x_train.numpy(), plan.task.y_train.numpy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "x_other.npy", np.concatenate([x[:-1], x[-1:] + 1]))  # the last row differs

    def key(x_file: str) -> str:
        task = Task.streamed(
            NpyStream(tmp_path / x_file, tmp_path / "y.npy"),
            *(plan.task.x_val, plan.task.y_val) * 2,
            sample=len(x) // 2,
        )
        return base_key(replace(plan, task=task))

    assert key("x.npy") == key("x.npy") != key("x_other.npy")
    assert key("x.npy") != base_key(plan)  # the same config, in memory
