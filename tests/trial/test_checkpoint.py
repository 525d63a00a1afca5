"""model.checkpoint: a user's trained weights as the starting point, for any model option."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import compose_config
from torch import nn
from zoo import train_outside

from sweeper.errors import ConfigError
from sweeper.trial.checkpoint import checkpoint_digest
from sweeper.trial.context import JobContext
from sweeper.trial.plan import plan_trial
from sweeper.trial.run import run


@pytest.fixture(scope="module")
def users_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    path = tmp_path_factory.mktemp("user") / "resnet.pt"
    return path, train_outside(path)


def _cfg(*overrides: str):
    return compose_config("model=tiny_resnet", *overrides, zoo=True)


def test_a_loaded_checkpoint_is_measured_as_is_and_scores_what_it_scored_outside(users_checkpoint, tmp_path):
    path, outside = users_checkpoint
    result = run(_cfg(f"model.checkpoint={path}", "strategy.epochs=0"), JobContext.standalone(tmp_path))
    assert result.trained is not None and result.trained.origin == "checkpoint"
    assert result.metrics["test_score"] == pytest.approx(outside, abs=0.001)  # within 0.1 pp
    assert result.metrics["epochs_run"] == 0 and result.metrics["steps"] == 0
    assert result.metrics["best_val_score"] == pytest.approx(result.metrics["val_score"], abs=1e-6)


def test_safetensors_and_save_pretrained_directories_load_the_same_weights(users_checkpoint, tmp_path):
    from safetensors.torch import save_file

    path, _ = users_checkpoint
    state = torch.load(path, weights_only=True)
    save_file(state, tmp_path / "resnet.safetensors")
    (tmp_path / "dir").mkdir()
    save_file(state, tmp_path / "dir" / "model.safetensors")  # what save_pretrained writes
    for source in (tmp_path / "resnet.safetensors", tmp_path / "dir"):
        plan = plan_trial(_cfg(f"model.checkpoint={source}", "strategy.epochs=0"))
        loaded = plan.model.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items()), source
        assert plan.checkpoint == str(source)
    assert checkpoint_digest(tmp_path / "dir") != checkpoint_digest(tmp_path / "resnet.safetensors")


def test_a_checkpoint_of_another_shape_or_kind_is_one_line_before_any_training(users_checkpoint, tmp_path):
    path, _ = users_checkpoint
    with pytest.raises(ConfigError) as wide:
        plan_trial(_cfg(f"model.checkpoint={path}", "model.channels=8"))
    assert "stem.0.weight is (16, 1, 3, 3) in the checkpoint, (8, 1, 3, 3) in the network of model=" in str(wide.value)
    state = torch.load(path, weights_only=True)
    state.pop("fc.bias")
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match=r"has no tensor fc.bias \(10,\), which the network of model="):
        plan_trial(_cfg(f"model.checkpoint={tmp_path / 'missing.pt'}"))
    torch.save({**torch.load(path, weights_only=True), "extra.weight": torch.ones(2)}, tmp_path / "extra.pt")
    with pytest.raises(ConfigError, match=r"holds extra.weight \(2,\), which the network of model="):
        plan_trial(_cfg(f"model.checkpoint={tmp_path / 'extra.pt'}"))
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # the module pickled, not its state dict
    with pytest.raises(ConfigError, match=r"not a state dict that loads with weights_only=True"):
        plan_trial(_cfg(f"model.checkpoint={tmp_path / 'module.pt'}"))
    for message in (str(wide.value),):
        assert "\n" not in message


def test_fine_tuning_a_checkpoint_starts_from_its_weights(users_checkpoint, tmp_path):
    path, _ = users_checkpoint
    result = run(_cfg(f"model.checkpoint={path}", "strategy.epochs=1"), JobContext.standalone(tmp_path))
    assert result.trained is not None and result.trained.origin == "trained"
    first_epoch = result.trained.result.history[0]["val_score"]
    assert first_epoch > 0.5  # from the checkpoint's weights: random ones score about 0.1 after one epoch less
