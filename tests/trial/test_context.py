"""The job context: built once from Hydra's runtime config and what the sweep handed its jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from sweeper.search import trial_context
from sweeper.trial import context
from sweeper.trial.context import JobContext, job_context
from sweeper.trial.layout import SweepLayout


@pytest.fixture
def hydra_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``hydra_job(*overrides, multirun=True, num=0)``: a job's config, set as Hydra's running job's."""
    for name in ("GRID_ENV", "EQUAL_BUDGET_ENV", "PARENT_RUN_ENV", "SWEEP_STARTED_ENV"):
        monkeypatch.delenv(getattr(context, name), raising=False)
    for name in ("ENV_STUDY", "ENV_STORAGE", "ENV_TRIAL", "ENV_METRICS"):
        monkeypatch.delenv(getattr(trial_context, name), raising=False)

    def make(*overrides: str, multirun: bool = True, num: int = 0) -> DictConfig:
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN if multirun else RunMode.RUN
            cfg.hydra.runtime.output_dir = str(tmp_path / "job")
            cfg.hydra.job.num = num
        HydraConfig.instance().set_config(cfg)
        return cfg

    with initialize_config_module("sweeper.conf", version_base="1.3"):
        yield make
    HydraConfig.instance().cfg = None  # other tests see no running job


def test_outside_hydra_a_job_is_a_standalone_single_run():
    HydraConfig.instance().cfg = None
    ctx = job_context(DictConfig({}))
    assert not ctx.multirun and ctx.sweep_id == "" and ctx.index is None and ctx.search is None
    assert ctx.output_dir.is_dir() and not ctx.latency_round_follows


def test_a_grid_job_knows_its_place_sweep_and_what_the_grid_check_handed_it(hydra_job, tmp_path):
    context.publish_grid(SweepLayout(4, frozenset({"optimizer"}), ("strategy.epochs=3",)))
    context.publish_equal_budget(5)
    context.publish_parent_run("parent-123")
    context.publish_sweep_start(1000.0)
    cfg = hydra_job("optimizer=sgd", "strategy.epochs=3", num=2)
    ctx = job_context(cfg)
    assert ctx.output_dir == tmp_path / "job" and ctx.index == 3 and ctx.total == 4
    assert ctx.sweep_id == str(cfg.hydra.sweep.dir) and ctx.parent_run_id == "parent-123"
    assert ctx.choices["optimizer"] == "sgd" and ctx.equal_budget_epochs == 5 and ctx.sweep_started == 1000.0
    assert ctx.run_label("fallback") == "optimizer=sgd" and ctx.fixed_overrides() == "strategy.epochs=3"
    assert ctx.latency_round_follows  # the report callback is on, with rounds, and tracking is on


@pytest.mark.parametrize(
    ("overrides", "follows"),
    [
        (["tracking.enabled=false"], False),  # no MLflow runs: no report, no round
        (["hydra.callbacks.report.enabled=false"], False),
        (["hydra.callbacks.report.latency_rounds=0"], False),
    ],
)
def test_a_round_follows_only_when_the_report_will_time_the_job(hydra_job, overrides, follows):
    assert job_context(hydra_job(*overrides)).latency_round_follows is follows


def test_a_single_run_has_no_sweep_and_times_itself(hydra_job):
    ctx = job_context(hydra_job("optimizer=sgd", multirun=False))
    assert not ctx.multirun and ctx.sweep_id == "" and ctx.total is None and not ctx.latency_round_follows
    assert ctx.parent_run_id is None and ctx.fixed_overrides() == ""


def test_a_search_job_names_its_trial_and_the_study_is_its_sweep(hydra_job, monkeypatch):
    monkeypatch.setenv(trial_context.ENV_STUDY, "lr-study")
    monkeypatch.setenv(trial_context.ENV_STORAGE, "/tmp/optuna.journal")
    monkeypatch.setenv(trial_context.ENV_TRIAL, "7")
    monkeypatch.setenv(trial_context.ENV_METRICS, "val_score,latency_ms")
    ctx = job_context(hydra_job("hydra/sweeper=optuna", "hydra.sweeper.pruner=median"))
    assert ctx.search is not None and (ctx.search.study_name, ctx.search.number) == ("lr-study", 7)
    assert ctx.searched_metrics == ("val_score", "latency_ms") and ctx.search.pruner == "median"
    assert ctx.sweep_id == "lr-study"  # a study groups its trials across resumed runs
    assert job_context(hydra_job("tracking.sweep_id=mine")).sweep_id == "mine"  # an explicit id wins


def test_the_parent_run_is_retracted_when_the_sweep_closes_it():
    context.publish_parent_run("abc")
    assert context.parent_run() == "abc" and context.retract_parent_run() == "abc" and context.parent_run() is None


def test_a_standalone_context_takes_values():
    ctx = JobContext.standalone(Path("/tmp/x"), index=2, multirun=True, layout=SweepLayout(5, frozenset(), ()))
    assert ctx.total == 5 and ctx.output_dir == Path("/tmp/x")
