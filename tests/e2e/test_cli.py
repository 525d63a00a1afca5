"""The command line end to end: a real multirun that trains, tracks and can be read back."""

from __future__ import annotations

import os
import sys

import pytest

from sweeper.tracking.results import FINAL_METRICS, load_history, load_runs

pytestmark = pytest.mark.integration


def test_multirun_writes_one_finished_run_per_trial_with_every_metric(run_cli, tmp_path):
    proc = run_cli("-m", "optimizer=adam,sgd", "strategy.epochs=5", "measure.latency_seconds=0.02")
    assert proc.returncode == 0, proc.stderr
    assert "trial 1/2 optimizer=adam" in proc.stdout and "trial 2/2 optimizer=sgd" in proc.stdout

    runs = load_runs("sweeper", sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(runs["optimizer"]) == ["adam", "sgd"]
    assert (runs["status"] == "FINISHED").all()
    assert runs["sweep_id"].nunique() == 1
    for metric in FINAL_METRICS:
        assert runs[metric].notna().all(), metric
    accuracy = runs.set_index("optimizer")["test_accuracy"]
    assert accuracy["adam"] > 0.8 and accuracy["sgd"] > 0.3, accuracy  # chance is 0.1
    assert (runs["epochs_run"] == 5).all()
    assert runs.loc[runs.optimizer == "adam", "lr"].item() == pytest.approx(0.003)


def test_a_diverging_trial_is_failed_with_its_reason_and_the_sweep_goes_on(run_cli, tmp_path):
    proc = run_cli(
        "-m", "optimizer=sgd", "optimizer.lr=1e6,0.1", "model=mlp", "strategy.epochs=3", "measure.latency_seconds=0.01"
    )
    assert proc.returncode == 1, proc.stderr  # the grid went on; exit status 1 says a trial failed
    assert "trial 1/2 optimizer.lr=1000000.0: FAILED TrainingDiverged" in proc.stdout

    runs = load_runs(sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").set_index("lr")
    assert runs.loc[1e6, "status"] == "FAILED"
    assert "train_loss=nan at epoch 0" in runs.loc[1e6, "failure_reason"]
    assert runs.loc[0.1, "status"] == "FINISHED" and runs.loc[0.1, "test_accuracy"] > 0.2


def test_plugins_by_target_from_a_users_config_dir(run_cli, tmp_path):
    """A user's dataset and network, defined outside the package, selected like built-in options."""
    (tmp_path / "my_plugins.py").write_text(
        "import numpy as np\n"
        "from torch import nn\n"
        "from sweeper.data import Task\n\n"
        "def make_blobs(*, seed, n=400):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    y = np.arange(n) % 3\n"
        "    x = rng.normal(size=(n, 5)) + 3.0 * np.eye(3, 5)[y]\n"
        "    return Task.from_arrays(x, y, seed=seed, name='blobs')\n\n"
        "def make_linear(*, input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes))\n"
    )
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "blobs.yaml").write_text("_target_: my_plugins.make_blobs\nn: 300\n")
    (tmp_path / "conf" / "model" / "linear.yaml").write_text("_target_: my_plugins.make_linear\n")

    proc = run_cli(
        "--config-dir",
        "conf",
        "data=blobs",
        "model=linear",
        "strategy.epochs=30",
        "optimizer.lr=0.05",
        "measure.latency_seconds=0.01",
    )
    assert proc.returncode == 0, proc.stderr
    runs = load_runs(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = runs.iloc[0]
    assert (run["data"], run["model"]) == ("blobs", "linear")  # the options as the user named them, like built-ins
    assert (run["data._target_"], run["model._target_"]) == ("my_plugins.make_blobs", "my_plugins.make_linear")
    assert run["params"] == 5 * 3 + 3
    assert run["test_accuracy"] > 0.8  # well-separated blobs
    assert run["data.n"] == 300


def test_loading_results_leaves_the_callers_tracking_uri_alone(tracking_uri, monkeypatch):
    """Sweeps started after reading results (benchmarks, notebooks) must log to their own store."""
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ValueError, match="experiment 'sweeper' not found"):
        load_runs(tracking_uri=tracking_uri)
    assert "MLFLOW_TRACKING_URI" not in os.environ

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")  # the caller's own setting is kept
    with pytest.raises(ValueError, match="experiment 'sweeper' not found"):
        load_runs(tracking_uri=tracking_uri)
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"


def test_reading_a_missing_store_fails_naming_it_and_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere.db"
    for read in (
        lambda: load_runs(tracking_uri=f"sqlite:///{missing}"),
        lambda: load_history(["0" * 32], tracking_uri=f"sqlite:///{missing}"),
    ):
        with pytest.raises(FileNotFoundError, match=f"no MLflow store at {missing}"):
            read()
    assert not missing.exists()


def test_a_single_run_whose_trial_fails_exits_with_status_1(run_cli):
    proc = run_cli(
        "optimizer=sgd", "optimizer.lr=1e6", "model=mlp", "strategy.epochs=2", "measure.latency_seconds=0.01"
    )
    assert proc.returncode == 1
    assert "FAILED TrainingDiverged" in proc.stdout and "1 trial failed" in proc.stderr


def test_help_describes_the_tool_its_groups_and_commands(run_cli):
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("sweeper: compare model-optimization methods")
    for line in (
        "python -m sweeper -m optimizer=adam,sgd seed=0,1,2",
        "python -m sweeper.report",
        "mlflow ui",
        "compression: awq, distill, gptq, lowrank, magnitude, mixed, none, pipeline",
        "Exit status: 0 every trial finished",
    ):
        assert line in proc.stdout, line


@pytest.mark.parametrize("argv, quiet", [(["x=1"], True), (["-v", "x=1"], False), (["hydra.verbose=true"], False)])
def test_mlflow_info_lines_are_off_unless_asked_for(monkeypatch, argv, quiet):
    from sweeper.__main__ import _quiet_libraries

    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    monkeypatch.setattr("sys.argv", ["sweeper", *argv])
    _quiet_libraries()
    assert "-v" not in sys.argv  # Hydra never sees it
    assert (os.environ.get("MLFLOW_LOGGING_LEVEL") == "WARNING") is quiet


def test_a_builtin_options_target_replaced_on_the_command_line_is_named_by_its_target():
    from conftest import compose_config

    from sweeper.trial.plan import group_choices

    cfg = compose_config("model._target_=my_plugins.make_cnn", fast=False, hydra=True)
    choices = dict(cfg.hydra.runtime.choices)
    assert choices["model"] == "cnn"  # Hydra still says cnn: the tag must not
    named = group_choices(cfg, choices)
    assert named["model"] == "my_plugins.make_cnn" and named["optimizer"] == "adam"
