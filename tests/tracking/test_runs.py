"""The sweep in MLflow as its users expect it: nested runs, datasets, servable and registered models."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from sweeper.tracking.results import list_sweeps, load_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_each_trial_logs_its_splits_as_datasets_and_its_artifact_as_a_servable_model(tiny_sweep):
    import mlflow

    from sweeper.artifact import load_artifact

    cwd, uri = tiny_sweep
    trial = load_runs("sweeper", sweep_id="latest", tracking_uri=uri).iloc[0]
    run = _client(uri).get_run(trial["run_id"])
    contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(contexts) == {"training", "validation", "testing"}
    assert f'"features_shape": [{int(trial["train_samples"])},' in contexts["training"].profile
    assert contexts["testing"].name == "synthetic" and "data._target_" in contexts["testing"].source
    assert len({d.digest for d in contexts.values()}) == 3  # three different splits

    mlflow.set_tracking_uri(uri)
    try:
        served = mlflow.pyfunc.load_model(f"models:/{trial['model_id']}")
    finally:
        mlflow.set_tracking_uri(None)
    assert served.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"][0] == -1
    x = np.random.default_rng(0).normal(size=(5, *served.metadata.signature.inputs.inputs[0].shape[1:]))
    local = _client(uri).download_artifacts(trial["run_id"], "model.pt", str(cwd / "downloaded"))
    with torch.no_grad():
        expected = load_artifact(local)(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(served.predict(x.astype(np.float32)), expected, rtol=1e-5, atol=1e-6)


def test_the_recommended_model_is_registered_with_its_sweep_and_budget(tiny_sweep):
    cwd, uri = tiny_sweep
    client = _client(uri)
    version = client.get_model_version_by_alias("sweeper", "recommended")
    (sweep_id,) = list_sweeps("sweeper", tracking_uri=uri)
    assert version.tags["sweep_id"] == sweep_id and version.tags["budget"] == "no budget"
    trials = load_runs("sweeper", sweep_id=sweep_id, tracking_uri=uri)
    chosen = trials[trials["optimizer"] == version.tags["config"].removeprefix("optimizer=")]
    best = chosen.sort_values("val_accuracy", ascending=False).iloc[0]  # the best seed on validation
    assert version.run_id == best["run_id"] and version.source == f"models:/{best['model_id']}"
    report = (cwd / sweep_id / "report" / "report.md").read_text()
    assert f"Choose **{version.tags['config']}**" in report  # what the report recommends


def test_the_console_shows_one_line_per_trial_with_time_left_and_no_library_chatter(tiny_sweep):
    cwd, _ = tiny_sweep
    console = (cwd / "console.txt").read_text()
    assert "INFO mlflow" not in console and "alembic" not in console
    assert "#0 :" not in console and "env_set" not in console  # launch lines: the trial lines say it
    lines = [line for line in console.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4 and "| 4/4 done" in lines[-1] and "best val" in lines[-1]
    assert "left" in lines[0] and "registered: models:/sweeper/1" in console
    # where to look next: the runs in model-training mode, score, size and latency as columns
    assert (
        "MLflow: http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=sweeper (mlflow ui --backend-store-uri sqlite:///"
        in console
    )


def test_source_tags_name_the_commit_of_the_working_directory(tmp_path, monkeypatch):
    from sweeper.tracking.runs import source_tags

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "model.py").write_text("x = 1\n")
    for args in (["add", "model.py"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "m"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(tmp_path)
    source_tags.cache_clear()
    try:
        tags = source_tags()
        assert tags["mlflow.source.git.commit"] == head and tags["git_dirty"] == "false"
        (tmp_path / "model.py").write_text("x = 2\n")
        source_tags.cache_clear()
        assert source_tags()["git_dirty"] == "true"
        monkeypatch.chdir(tmp_path.parent)  # no repository: no commit claimed
        source_tags.cache_clear()
        assert "mlflow.source.git.commit" not in source_tags() or source_tags()["mlflow.source.git.commit"] != head
    finally:
        source_tags.cache_clear()


def test_a_dataset_stored_meanwhile_by_another_trial_is_linked_and_a_failing_extra_never_fails_the_trial(
    tracking_uri, make_cfg, monkeypatch
):
    from mlflow.exceptions import MlflowException

    from sweeper.tracking.runs import TrialRun
    from sweeper.trial.plan import plan_trial

    task = plan_trial(make_cfg("data=synthetic", "data.n_samples=300", "model=mlp")).task
    run = TrialRun(tracking_uri, "sweeper", run_name="t")
    real, calls = run.client.log_inputs, []

    def racing(*args, **kwargs):  # the first call loses the race for the datasets' unique key
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest")
        return real(*args, **kwargs)

    monkeypatch.setattr(run.client, "log_inputs", racing)
    run.log_datasets(task, {"data._target_": "x"})
    assert len(calls) == 2 and len(run.client.get_run(run.run_id).inputs.dataset_inputs) == 3
    run.client.set_terminated(run.run_id, "FINISHED")

    from sweeper.trial.run import run as run_trial

    monkeypatch.setattr(TrialRun, "log_datasets", lambda *a, **k: (_ for _ in ()).throw(MlflowException("store busy")))
    metrics = run_trial(
        make_cfg(
            "data=synthetic", "data.n_samples=300", "model=mlp", "tracking.enabled=true", f"tracking.uri={tracking_uri}"
        )
    ).metrics
    assert metrics["test_accuracy"] > 0  # the trial finished all the same
    from sweeper.tracking.results import load_runs

    trial = load_runs("sweeper", tracking_uri=tracking_uri).set_index("run_name").drop(index="t")
    assert list(trial["status"]) == ["FINISHED"] and "store busy" in trial["datasets_not_logged"].iloc[0]
