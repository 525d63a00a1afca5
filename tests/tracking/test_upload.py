"""A finished trial whose results the tracking store did not take: kept on disk, logged later."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_TASK, compose_config
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sweeper.errors import ResultsNotLogged
from sweeper.tracking.results import load_runs
from sweeper.tracking.runs import TrialRun
from sweeper.tracking.upload import UNLOGGED_FILE, main
from sweeper.trial.context import JobContext
from sweeper.trial.run import run


def test_results_the_store_refused_are_kept_and_logged_later_into_the_same_run(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(*TINY_TASK, f"tracking.uri={uri}", "tracking.log_model=false", tracking=True)
    trial_dir = tmp_path / "trial"

    def server_away(self, *args, **kwargs):  # what MLflow raises once its HTTP retries are spent
        raise MlflowException("API request to http://tracking:5000/api/2.0/mlflow/runs/log-batch failed: Max retries")

    with monkeypatch.context() as patch:
        patch.setattr(TrialRun, "log_results", server_away)
        with pytest.raises(ResultsNotLogged) as error:
            run(cfg, JobContext.standalone(trial_dir))
    message = str(error.value)
    assert f"kept in {trial_dir.resolve()}" in message and "python -m sweeper.tracking.upload" in message
    assert "Max retries" in message and "\n" not in message

    record = json.loads((trial_dir / UNLOGGED_FILE).read_text())
    assert {"config.yaml", "model.pt"} <= set(record["files"]) and len(record["epochs"]) == 2
    assert 0 <= record["final"]["test_accuracy"] <= 1 and record["tags"]["latency_kind"] == "real"
    (waiting,) = load_runs(tracking_uri=uri).itertuples()
    assert waiting.status == "RUNNING" and waiting.run_id == record["run_id"]  # not FAILED: its results exist

    assert main([str(trial_dir)]) == 0
    assert f"logged {trial_dir} into run {record['run_id']}" in capsys.readouterr().out
    (logged,) = load_runs(tracking_uri=uri).itertuples()
    assert logged.status == "FINISHED" and logged.run_id == record["run_id"]
    assert logged.test_accuracy == pytest.approx(record["final"]["test_accuracy"])
    client = MlflowClient(uri)
    assert {"config.yaml", "model.pt"} <= {a.path for a in client.list_artifacts(logged.run_id)}
    curve = client.get_metric_history(logged.run_id, "train_loss")
    assert [m.step for m in curve] == [0, 1] and [m.value for m in curve] == [e["train_loss"] for e in record["epochs"]]

    assert main([str(trial_dir)]) == 1  # logged once: the record is gone
    assert f"sweeper: error: {trial_dir}: no {UNLOGGED_FILE}" in capsys.readouterr().err
