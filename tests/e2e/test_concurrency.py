"""Several processes writing one MLflow SQLite store at once lose no run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import cli_env
from omegaconf import OmegaConf

from sweeper.tracking.results import load_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = ["data=synthetic", "data.n_samples=300", "model=mlp", "strategy.epochs=2", "measure.latency_seconds=0.01"]


def test_four_processes_create_and_write_one_store_without_losing_a_run(tmp_path):
    # No store exists yet: the four processes race to create it, then write their runs into it.
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "sweeper", f"seed={seed}", *TINY],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in range(4)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for worker, out in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, out
        assert "database is locked" not in out

    runs = load_runs(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(runs) == 4 and (runs.status == "FINISHED").all()
    assert sorted(runs.seed) == [0, 1, 2, 3]
    assert runs.test_accuracy.notna().all()
    assert not list(tmp_path.glob(".mlflow.db.*.tmp"))  # scratch stores were cleaned up

    # Started in the same second, each process kept its own output dir: each run's logged config is its own
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run_id, seed in zip(runs.run_id, runs.seed, strict=True):
        logged = OmegaConf.load(client.download_artifacts(run_id, "config.yaml", str(tmp_path / run_id)))
        assert logged.seed == int(seed)
    assert len(list(tmp_path.glob("outputs/*/*/model.pt"))) == 4


def test_two_multiruns_started_at_once_keep_their_sweeps_apart(tmp_path):
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "sweeper", "-m", f"optimizer={opts}", *TINY, "hydra.callbacks.report.enabled=false"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for opts in ("adam,sgd", "rmsprop,adagrad")
    ]
    for worker in workers:
        out = worker.communicate(timeout=600)[0]
        assert worker.returncode == 0, out
    sweep_dirs = sorted(tmp_path.glob("multirun/*/*"))
    assert len(sweep_dirs) == 2  # each its own dir, even when both started in the same second
    runs = load_runs(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    by_sweep = runs.groupby("sweep_id")["optimizer"].apply(lambda s: ",".join(sorted(s))).sort_values()
    assert list(by_sweep) == ["adagrad,rmsprop", "adam,sgd"]
    for sweep_dir in sweep_dirs:
        assert len(list(sweep_dir.glob("*/model.pt"))) == 2
