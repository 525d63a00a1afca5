"""Optimize the model the user already has: a checkpoint compressed many ways, each base trained once."""

from __future__ import annotations

import os

import pytest
from conftest import REPO_ROOT, TINY_TASK, ZOO_CONF, argv
from zoo import train_outside

from sweeper.tracking.results import load_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ZOO_ENV = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])}
METHODS = "none,prune,quantize,prune_structured"


def test_a_users_trained_resnet_is_compressed_as_it_is_by_every_method(run_cli, tmp_path):
    checkpoint = tmp_path / "my_resnet.pt"
    outside = train_outside(checkpoint)  # a plain PyTorch script's model, saved with torch.save(state_dict)
    proc = run_cli(
        *("--config-dir", str(ZOO_CONF)),
        *argv(f"-m model=tiny_resnet model.checkpoint={checkpoint} strategy.epochs=0 compression={METHODS}"),
        *argv("+options.compression.prune.finetune_epochs=1 +options.compression.prune_structured.finetune_epochs=1"),
        "measure.latency_seconds=0.01",
        env=ZOO_ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs(sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").set_index("compression")
    assert sorted(runs.index) == sorted(METHODS.split(",")) and (runs["status"] == "FINISHED").all()
    assert (runs["base_model"] == "checkpoint").all() and (runs["epochs_run"] == 0).all()  # nothing trained it
    assert runs.loc["none", "test_score"] == pytest.approx(outside, abs=0.001)  # the same weights, the same score
    assert (runs["checkpoint"] == str(checkpoint)).all() and runs["checkpoint_sha256"].nunique() == 1
    assert runs.loc["quantize", "size_bytes"] < 0.5 * runs.loc["none", "size_bytes"]
    assert runs.loc["quantize", "quantization_flow"] in ("fx", "eager")  # a residual add: fx traces it, or eager
    assert runs.loc["prune", "nonzero_params"] <= 0.6 * runs.loc["prune", "params"]
    assert runs.loc["prune_structured", "params"] < runs.loc["none", "params"]


def test_a_checkpoint_of_the_wrong_shape_is_one_line_and_exit_2(run_cli, tmp_path):
    checkpoint = tmp_path / "my_resnet.pt"
    train_outside(checkpoint, epochs=0)
    proc = run_cli(
        *("--config-dir", str(ZOO_CONF)),
        *argv(f"model=tiny_resnet model.channels=8 model.checkpoint={checkpoint} strategy.epochs=0"),
        env=ZOO_ENV,
    )
    assert proc.returncode == 2
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("sweeper: error:")]
    assert "stem.0.weight is (16, 1, 3, 3) in the checkpoint, (8, 1, 3, 3) in the network of model=tiny_resnet" in line


def test_a_grid_of_methods_and_seeds_trains_each_base_once(run_cli, tmp_path):
    proc = run_cli(*argv("-m compression=none,prune,quantize,qat seed=0,1"), *TINY_TASK, "strategy.epochs=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs(sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(runs) == 8 and (runs["status"] == "FINISHED").all()
    trained = runs[runs["base_model"] == "trained"]
    assert sorted(trained["seed"]) == [0, 1] and (runs["base_model"] != "trained").sum() == 6  # the rest reused
    reused = runs[runs["base_model"] == "reused"]
    assert set(reused["base_run_id"]) == set(trained["run_id"])  # each names the run that trained its base
    for seed, group in runs.groupby("seed"):
        assert group["epochs_run"].nunique() == 1 and group["best_val_score"].nunique() == 1, seed  # one base
