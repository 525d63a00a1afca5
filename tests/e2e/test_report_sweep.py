"""The report end to end on one tiny real sweep: the callback, MLflow, the command line, the notebook."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO_ROOT, TINY_TASK, argv, cli_env

from sweeper.report.__main__ import main
from sweeper.tracking.results import ROLE_TAG, list_sweeps, load_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_multirun_writes_its_report_in_the_sweep_dir_and_in_mlflow(tiny_sweep):
    cwd, uri = tiny_sweep
    (sweep_id,) = list_sweeps("sweeper", tracking_uri=uri)
    report_dir = cwd / sweep_id / "report"
    for name in ("report.md", "report.html", "runs.csv", "configurations.csv", "optimizer_curves.png"):
        assert (report_dir / name).is_file(), name
    assert not (report_dir / "accuracy_vs_size.png").exists()  # both optimizers deploy one network: no front
    trials = load_runs("sweeper", sweep_id=sweep_id, tracking_uri=uri)
    assert len(trials) == 4  # the sweep's parent run is no trial
    markdown = (report_dir / "report.md").read_text()
    assert markdown.split("\n## ")[1].startswith("Answer\n\nChoose **optimizer=")  # the answer first
    assert "Every choice is made on validation accuracy" in markdown and "[95 % CI]" in markdown
    assert "vs #1" in markdown and "vs adam" in markdown  # a verdict against the first in every table
    assert "Split sizes (samples): train 19" in markdown and "validation 45" in markdown  # 300 samples, carved
    assert "- **Small training set**: 19" in markdown  # under 2,000 training samples
    assert "sweeps under one sweep id" not in markdown  # one command line: one sweep
    assert "timed side by side in 5 interleaved rounds" in markdown  # adam and sgd: one network, timed once
    assert "as fast (the same network)" in markdown  # adam and sgd deploy one network

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("sweeper").experiment_id], filter_string=f"tags.{ROLE_TAG} = 'sweep'"
    )  # the report is on the parent run
    assert parent.info.run_name.endswith(f" · {sweep_id}") and parent.data.tags["sweep_id"] == sweep_id
    assert trials["run_name"].str[:20].nunique() == 4  # seed=0 adam, ...: what differs first, as the UI shows it
    assert parent.info.status == "FINISHED" and set(trials["parent_run_id"]) == {parent.info.run_id}
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "report.html", "runs.csv", "optimizer_curves.png", "config.yaml"} <= logged
    assert parent.data.tags["mlflow.note.content"].split("\n\n")[1] == "## Answer"  # the same sections
    assert parent.data.metrics["trials_ok"] == 4 and parent.data.params["strategy.epochs"]


def test_cli_writes_the_report_and_names_a_configuration_within_budget(tiny_sweep, tmp_path, monkeypatch, capsys):
    cwd, _ = tiny_sweep
    monkeypatch.chdir(cwd)  # the default store: mlflow.db in the working directory, as for the runs
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "R"
    assert main(["--out", str(out), "--max-size-kb", "100"]) == 0  # = python -m sweeper.report ...
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and set(runs["outcome"]) == {"ok"}
    assert {"report.md", "report.html"} <= {p.name for p in out.iterdir()} and list(out.glob("*.png"))
    chosen = capsys.readouterr().out.split("Choose ", 1)[1].split(":", 1)[0]
    assert chosen in set(runs["config"]) and chosen.startswith("optimizer=")
    assert (runs.loc[runs["config"] == chosen, "size_bytes"] / 1024 <= 100).all()


def test_python_m_sweeper_report_runs(tiny_sweep):
    cwd, _ = tiny_sweep
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.report", "--help"],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "--max-size-kb" in proc.stdout and "--min-score" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--experiment", "nope"], "experiment 'nope' not found; existing: "),
        (["--sweep", "multirun/nope"], "--sweep=multirun/nope: not found in 'sweeper'; existing: multirun/"),
        (["--max-latency-ms", "-2"], "--max-latency-ms=-2: must be a number > 0"),
        (["--min-score", "high"], "--min-score=high: must be a number in [0, 1]"),
        (["--latency-rounds", "-1"], "--latency-rounds=-1: must be an integer >= 0"),
    ],
)
def test_cli_bad_input_is_one_line(tiny_sweep, tmp_path, capsys, args, message):
    _, uri = tiny_sweep
    assert main(["--tracking-uri", uri, "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_notebook_runs_against_the_sweep_with_its_documented_command(tiny_sweep, tmp_path):
    """`jupyter nbconvert --to notebook --execute` as the notebook documents it (the `notebook` extra), against
    the store named by $MLFLOW_TRACKING_URI: it tells the report's story, from the report's functions."""
    pytest.importorskip("nbconvert")
    nbformat = pytest.importorskip("nbformat")
    cwd, uri = tiny_sweep
    notebook = REPO_ROOT / "notebooks" / "compare_methods.ipynb"
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute"]
    assert " ".join(command[3:]) in notebook.read_text()  # the command the notebook documents
    proc = subprocess.run(
        [*command, "--output-dir", str(tmp_path), str(notebook)],
        cwd=cwd,
        env=cli_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    executed = nbformat.read(tmp_path / "compare_methods.ipynb", as_version=4)
    outputs = [o for cell in executed.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    text = " ".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    report = (cwd / list_sweeps("sweeper", tracking_uri=uri)[0] / "report" / "report.md").read_text()
    answer = report.split("## Answer\n\n", 1)[1].split("\n", 1)[0]
    timed = re.compile(r"[\d.]+ ms per sample")  # the notebook times the networks side by side again
    assert timed.sub("ms", answer) in timed.sub("ms", text)  # the same answer, word for word
    assert text.count("Choose **optimizer=") == 2  # the answer and the choice in detail
    assert "## Glossary" in text and "Budget: no budget" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_a_sweep_over_a_compression_strength_draws_accuracy_against_ratio(tmp_path, run_cli):
    proc = run_cli(
        *argv("-m compression=prune compression.amount=0.5,0.9 seed=0,1 compression.finetune_epochs=1"),
        *TINY_TASK,
        report=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_id,) = list_sweeps("sweeper", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    report_dir = tmp_path / sweep_id / "report"
    markdown = (report_dir / "report.md").read_text()
    assert "## Accuracy against compression ratio" in markdown and (report_dir / "accuracy_vs_ratio.png").is_file()
    assert "epochs in all" in markdown


@pytest.mark.parametrize("study_name", [None, "mine"])
def test_an_optuna_search_writes_its_report_on_its_parent_run_whatever_its_study_is_named(
    tmp_path, run_cli, study_name
):
    from mlflow import MlflowClient

    named = [f"hydra.sweeper.study_name={study_name}"] if study_name else []
    proc = run_cli(
        *argv("-m search=lr hydra.sweeper.n_trials=3 hydra.sweep.dir=search"),
        *named,
        *TINY_TASK,
        report=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "search" / "report" / "report.md").is_file()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("sweeper").experiment_id], f"tags.{ROLE_TAG} = 'sweep'"
    )
    trials = load_runs("sweeper", tracking_uri=uri)
    assert len(trials) == 3 and set(trials["parent_run_id"]) == {parent.info.run_id}
    assert parent.data.tags["sweep_id"] == set(trials["sweep_id"]).pop() == parent.data.tags["optuna_study"]
    assert study_name is None or parent.data.tags["optuna_study"] == study_name
    assert {"report.md", "optimization_results.yaml"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
