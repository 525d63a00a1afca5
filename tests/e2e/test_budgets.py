"""Budgets from the command line: a time-budgeted search ends with its report; mixed precision in a grid's report."""

from __future__ import annotations

import time

from conftest import TINY_TASK, argv
from omegaconf import OmegaConf

from sweeper.tracking.results import load_runs


def test_a_search_with_a_timeout_stops_starting_trials_and_still_writes_its_report(tmp_path, run_cli):
    start = time.perf_counter()
    proc = run_cli(
        *argv("-m search=lr hydra.sweeper.timeout=3 hydra.sweeper.n_trials=1000 hydra.sweep.dir=search"),
        *TINY_TASK,
        "hydra.callbacks.report.latency_rounds=0",
        report=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = OmegaConf.load(tmp_path / "search" / "optimization_results.yaml")
    assert results.stopped_by == "timeout" and results.timeout_seconds == 3
    assert 1 <= results.trials.complete < 1000, results.trials
    assert "hydra.sweeper.timeout=3: the time budget ended the search" in proc.stdout
    assert (tmp_path / "search" / "report" / "report.md").is_file()
    assert elapsed < 240  # ended by the budget: far from 1000 trials


def test_a_grid_with_mixed_precision_reports_its_per_layer_settings_as_one_configuration(tmp_path, run_cli):
    proc = run_cli(
        *argv("-m compression=qat,mixed seed=0,1 strategy.epochs=2 hydra.sweep.dir=grid"),
        *argv("+options.compression.qat.finetune_epochs=1 +options.compression.mixed.finetune_epochs=1"),
        "measure.latency_seconds=0.01",
        "hydra.callbacks.report.latency_rounds=0",
        report=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    markdown = (tmp_path / "grid" / "report" / "report.md").read_text()
    assert "## Per-layer settings" in markdown
    section = markdown.split("## Per-layer settings", 1)[1].split("\n## ", 1)[0]
    assert "compression=mixed" in section and "compression=qat" not in section
    assert section.count("| compression=mixed |") == 4  # the digits CNN's four weight layers, both seeds in one row
    assert " / " in section  # one value per seed
    ranking = markdown.split("## Ranking", 1)[1].split("\n## ", 1)[0]
    # the layers chosen per seed do not split the configuration: one row in the ranking, one in its details
    assert ranking.count("| compression=mixed |") == 2


def test_a_budget_one_model_cannot_reach_fails_that_job_only_and_is_announced(tmp_path, run_cli):
    proc = run_cli(
        *argv("-m model=cnn,mlp compression=none,mixed +options.model.mlp.hidden=[512,512]"),
        *argv("+options.compression.mixed.budget_kb=12 +options.compression.mixed.finetune_epochs=1"),
        *argv("strategy.epochs=2 measure.latency_seconds=0.01"),
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # one trial failed; the other three finished
    said = proc.stdout + proc.stderr
    assert "will fail: compression=mixed" in said and "no per-layer assignment fits this model" in said
    runs = load_runs(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    status = {(r.model, r.compression): r.status for r in runs.itertuples()}
    assert status == {
        ("cnn", "none"): "FINISHED",
        ("cnn", "mixed"): "FINISHED",
        ("mlp", "none"): "FINISHED",
        ("mlp", "mixed"): "FAILED",
    }
