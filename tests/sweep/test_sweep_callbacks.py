"""The callbacks at a multirun's start and end: the grid's check, and the sweep id its end reads back."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from sweeper.sweep.parent_run import sweep_id_of
from sweeper.sweep.preflight import bad_jobs, compose_job, grid_jobs


def test_the_end_of_a_multirun_reads_the_sweep_id_its_trials_carry(tmp_path):
    """A grid's is its sweep dir; a search's its study, computed when not configured and read back from
    the results it wrote; ``tracking.sweep_id`` wins over both (:func:`sweeper.trial.context.decide_sweep_id`)."""
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": {"study_name": None}}, "tracking": {}}
    )
    assert sweep_id_of(config) == str(tmp_path)
    (tmp_path / "optimization_results.yaml").write_text("study_name: lr-8b0daf07\ntrials: {complete: 4}\n")
    assert sweep_id_of(config) == "lr-8b0daf07"
    config.tracking.sweep_id = "mine"
    assert sweep_id_of(config) == "mine"


@pytest.fixture
def multirun_config():
    """``multirun_config(*overrides)``: a multirun's config as Hydra's basic sweeper sees it."""
    with initialize_config_module("sweeper.conf", version_base="1.3"):

        def make(*overrides: str):
            cfg = compose("config", return_hydra_config=True)  # the sweep's own config; its jobs compose below
            cfg.hydra.overrides.task = list(overrides)
            return cfg

        yield make


def test_the_grid_check_expands_the_sweep_as_the_basic_sweeper_does(multirun_config):
    config = multirun_config("optimizer=adam,sgd", "seed=0,1", "strategy.epochs=2")
    jobs = grid_jobs(config)
    assert len(jobs) == 4 and ["optimizer=sgd", "seed=1", "strategy.epochs=2"] in [sorted(j) for j in jobs]


def test_bad_jobs_are_one_line_each_and_good_ones_none(multirun_config):
    config = multirun_config("compression=prune,qat", "compression.amount=0.5,1.5", "strategy.epochs=1")
    jobs = grid_jobs(config)
    composed = []
    for overrides in jobs:
        try:
            composed.append(compose_job(config, overrides))
        except Exception as exc:  # qat has no amount: its jobs do not compose
            composed.append(exc)
    lines = bad_jobs(jobs, composed)
    assert len(lines) == 3 and all("\n" not in line for line in lines)  # prune at 1.5, qat twice
    assert sum("compression.amount=1.5: must be in [0, 1)" in line for line in lines) == 1
