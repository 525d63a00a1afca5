"""Run names the MLflow UI tells apart: it shows about the first 20 characters of a name."""

from __future__ import annotations

from datetime import datetime

import pytest
from hydra import compose, initialize_config_module

from sweeper.sweep.preflight import grid_jobs
from sweeper.tracking.names import sweep_run_name, trial_run_name
from sweeper.tracking.parent import close_sweep_run, open_sweep_run
from sweeper.trial.layout import from_jobs

SHOWN = 20  # characters of a name the runs table shows before cutting it


def _grid_run_names(*overrides: str) -> list[str]:
    """The run names the trials of ``python -m sweeper -m OVERRIDES`` get, from the grid Hydra expands."""
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        fixed = [o for o in overrides if "," not in o]  # the sweep's own config; its jobs are expanded below
        config = compose("config", overrides=fixed, return_hydra_config=True)
    config.hydra.overrides.task = list(overrides)
    jobs = grid_jobs(config)
    layout = from_jobs(jobs)
    return [trial_run_name(layout.label(job)) for job in jobs]


@pytest.mark.parametrize(
    "overrides",
    [
        ("optimizer=adam,sgd,muon", "seed=0,1,2"),  # the README's grid
        ("experiment=compression",),  # a preset's grid: six methods x three seeds
        ("compression=none,prune,prune_structured,prune_random,quantize,qat", "seed=0,1", "strategy.epochs=2"),
        ("optimizer.lr=0.001,0.003,0.01", "strategy=cosine,step_decay", "seed=0,1"),
    ],
)
def test_the_trials_of_a_grid_differ_in_their_first_20_characters(overrides):
    names = _grid_run_names(*overrides)
    assert len(names) > 1 and len({name[:SHOWN] for name in names}) == len(names), names


def test_a_trial_is_named_by_its_values_numbers_first():
    assert trial_run_name("compression=none seed=0") == "seed=0 none"
    assert trial_run_name("optimizer=sgd optimizer.lr=0.05") == "lr=0.05 sgd"
    assert trial_run_name("strategy.lr_schedule.name=cosine") == "lr_schedule.name=cosine"  # "name" alone says nothing
    assert trial_run_name("model.channels=8 teacher.channels=16") == "model.channels=8 teacher.channels=16"
    assert trial_run_name("#4 optimizer.lr=0.002") == "#4 lr=0.002"  # a search trial keeps its number first
    assert trial_run_name("cnn-adam-default-none-seed0") == "cnn-adam-default-none-seed0"  # no override: as it is


def test_two_sweeps_of_one_command_differ_in_their_first_20_characters():
    command = "python -m sweeper -m compression=none,prune,quantize,qat seed=0,1,2"
    first = sweep_run_name(command, "multirun/2026-12-03/16-40-12-123456", datetime(2026, 12, 3, 16, 40, 12))
    second = sweep_run_name(command, "multirun/2026-12-03/16-41-30-654321", datetime(2026, 12, 3, 16, 41, 30))
    assert first[:SHOWN] != second[:SHOWN]
    assert first == "16:40:12 compression=none,prune,quantize,qat seed=0,1,2 · multirun/2026-12-03/16-40-12-123456"


def test_two_sweeps_started_in_the_same_second_differ_by_what_they_sweep():
    at = datetime(2026, 12, 3, 16, 40, 12)
    names = [sweep_run_name(f"python -m sweeper -m optimizer={o} seed=0,1", "m", at) for o in ("adam,sgd", "rmsprop")]
    assert names[0][:SHOWN] != names[1][:SHOWN]


def test_a_sweep_name_puts_swept_keys_first_and_leaves_hydras_settings_out():
    name = sweep_run_name(
        "python -m sweeper -m --config-dir conf strategy.epochs=2 hydra.sweep.dir=x optimizer=adam,sgd -v",
        "x",
        datetime(2026, 1, 1),
    )
    assert name == "00:00:00 optimizer=adam,sgd strategy.epochs=2 · x"
    assert sweep_run_name("python -m sweeper -m", "", datetime(2026, 1, 1)) == "00:00:00 defaults"


def test_the_parent_run_is_created_with_that_name(tracking_uri):
    from mlflow import MlflowClient

    run_id = open_sweep_run(
        tracking_uri,
        "sweeper",
        sweep_dir="multirun/2026-12-03/16-40-12-123456",
        sweep_id=None,
        command="python -m sweeper -m optimizer=adam,sgd",
        config={"seed": 0},
    )
    close_sweep_run(run_id)
    name = MlflowClient(tracking_uri).get_run(run_id).info.run_name
    assert name.endswith(" optimizer=adam,sgd · multirun/2026-12-03/16-40-12-123456")
    assert datetime.strptime(name[:8], "%H:%M:%S")  # the time it started comes first
