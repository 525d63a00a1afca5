"""The command line end to end: a real multirun that trains, tracks and can be read back."""

from __future__ import annotations

import pytest

from sweeper.results import FINAL_METRICS, load_runs

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
