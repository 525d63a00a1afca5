"""compression=mixed and per-layer sensitivity: the exact knapsack, the budget in bytes, nothing trained, the CLI."""

from __future__ import annotations

import itertools
import random

import pandas as pd
import pytest
import torch
from conftest import argv, compose_config
from torch.optim.optimizer import register_optimizer_step_pre_hook

from sweeper.compression._mixed import allocate, allocate_table
from sweeper.compression._sensitivity import COLUMNS, layer_bytes, layer_sensitivity, settings
from sweeper.compression._targets import WeightSelection, weight_refs
from sweeper.errors import ConfigError
from sweeper.trial.plan import plan_trial
from sweeper.trial.run import train_stage


def _brute_force(costs, gains, capacity):
    best = None
    for choice in itertools.product(*[range(len(c)) for c in costs]):
        if sum(c[i] for c, i in zip(costs, choice, strict=True)) <= capacity:
            gain = sum(g[i] for g, i in zip(gains, choice, strict=True))
            best = gain if best is None or gain > best else best
    return best


@pytest.mark.parametrize("seed", range(12))
def test_the_knapsack_solver_finds_the_brute_force_optimum(seed):
    rng = random.Random(seed)
    layers = rng.randint(2, 5)
    costs = [[rng.randint(1, 60) for _ in range(rng.randint(2, 5))] for _ in range(layers)]
    gains = [[-rng.random() for _ in group] for group in costs]
    capacity = rng.randint(sum(min(c) for c in costs), sum(max(c) for c in costs))
    chosen = allocate(costs, gains, capacity)
    assert chosen is not None
    assert sum(c[i] for c, i in zip(costs, chosen, strict=True)) <= capacity
    assert sum(g[i] for g, i in zip(gains, chosen, strict=True)) == pytest.approx(_brute_force(costs, gains, capacity))
    assert allocate(costs, gains, sum(min(c) for c in costs) - 1) is None  # nothing fits


def _table(drops: dict[str, dict[tuple[int, float], float]], params: int = 1000) -> pd.DataFrame:
    rows = [
        [layer, params, b, s, layer_bytes([10, params // 10], b, s), 0.9 - drop, drop, drop]
        for layer, by_setting in drops.items()
        for (b, s), drop in by_setting.items()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_a_score_the_table_cannot_tell_apart_is_decided_by_the_output_divergence():
    grid = settings([4, 8], [])
    table = _table({"a": dict.fromkeys(grid, 0.0), "b": dict.fromkeys(grid, 0.0)})
    table["divergence"] = [0.0 if b == 32 else 0.5 if b == 4 else 0.01 for b in table["bits"]]
    table.loc[0, "drop"] = -0.01  # a setting that "improves" the score: noise, taken as no drop
    capacity = layer_bytes([10, 100], 8, 0.0) + layer_bytes([10, 100], 4, 0.0)
    assert sorted(allocate_table(table, capacity).values()) == [(4, 0.0), (8, 0.0)]
    assert allocate_table(table, 2 * layer_bytes([10, 100], 32, 0.0)) == {"a": (32, 0.0), "b": (32, 0.0)}


def test_an_extremely_sensitive_layer_keeps_the_highest_precision():
    grid = settings([2, 4, 8], [0.5, 0.9])
    mild = {g: 0.01 * (32 - g[0]) / 30 + 0.02 * g[1] for g in grid}
    sensitive = {g: 0.0 if g == (32, 0.0) else 0.5 for g in grid}
    table = _table({"a": mild, "head": sensitive, "b": mild})
    float_head = layer_bytes([10, 100], 32, 0.0)
    capacity = float_head + 2 * layer_bytes([10, 100], 4, 0.5)
    chosen = allocate_table(table, capacity)
    assert chosen is not None and chosen["head"] == (32, 0.0)
    assert sum(layer_bytes([10, 100], *setting) for setting in chosen.values()) <= capacity
    assert chosen["a"] != (32, 0.0) and chosen["b"] != (32, 0.0)  # the others pay for it
    assert allocate_table(table, 3 * layer_bytes([10, 100], 2, 0.9) - 1) is None


@pytest.fixture(scope="module")
def trained_plan():
    plan = plan_trial(compose_config("strategy.epochs=2"))
    train_stage(plan)
    return plan


def test_sensitivity_trains_nothing_leaves_the_model_as_it_was_and_is_cached(trained_plan, tmp_path):
    plan = trained_plan
    refs = weight_refs(plan.model, WeightSelection(embeddings=True))
    before = {k: v.clone() for k, v in plan.model.state_dict().items()}
    steps, evaluations = [], []
    handle = register_optimizer_step_pre_hook(lambda *_: steps.append(1))
    passes = plan.model.register_forward_pre_hook(lambda *_: evaluations.append(1))  # one per validation pass
    try:
        table = layer_sensitivity(plan.model, plan.task, refs, [2, 8], [0.5], cache_dir=tmp_path)
        first = len(evaluations)
        again = layer_sensitivity(plan.model, plan.task, refs, [2, 8], [0.5], cache_dir=tmp_path)
    finally:
        handle.remove()
        passes.remove()
    assert steps == []  # no optimizer step
    assert first == 1 + len(refs) * (len(settings([2, 8], [0.5])) - 1)  # the base, then each layer x setting
    assert len(evaluations) == first  # the second table came from the cache
    pd.testing.assert_frame_equal(table, again)
    for key, value in plan.model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert list(table.columns) == COLUMNS and len(table) == len(refs) * 6
    two_bits = table[(table["bits"] == 2) & (table["sparsity"] == 0)]
    eight_bits = table[(table["bits"] == 8) & (table["sparsity"] == 0)]
    assert two_bits["drop"].max() > eight_bits["drop"].max()
    assert (two_bits["divergence"].to_numpy() > eight_bits["divergence"].to_numpy()).all()  # per layer


def test_an_unreachable_budget_fails_that_trial_naming_the_smallest_size_before_training():
    plan = plan_trial(compose_config("compression=mixed", "compression.budget_kb=1"))
    message = str(plan.unsupported)  # it depends on the model: this trial fails, a grid's other models go on
    assert "compression.budget_kb=1: no per-layer assignment fits this model; the smallest reachable" in message
    assert "allowed: budget_kb >=" in message and "\n" not in message
    for bad, expected in [
        ("compression.bits=[1,4]", "compression.bits=[1, 4]: allowed: a list of integers 2..8"),
        ("compression.sparsities=[1.2]", "compression.sparsities=1.2: must be in [0, 1)"),
        ("compression.budget_kb=-3", "compression.budget_kb=-3: must be a size in KiB > 0"),
    ]:
        with pytest.raises(ConfigError, match=r".*") as info:
            plan_trial(compose_config("compression=mixed", bad))
        assert expected in str(info.value), str(info.value)


def test_a_mixed_trial_logs_its_layers_and_files_to_mlflow(tracking_uri, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from sweeper.trial.run import run

    monkeypatch.chdir(tmp_path)
    metrics = run(
        compose_config("compression=mixed", "compression.budget_kb=12", f"tracking.uri={tracking_uri}", tracking=True)
    ).metrics
    assert metrics["size_bytes"] <= 12 * 1024
    client = MlflowClient(tracking_uri)
    (found,) = client.search_runs([client.get_experiment_by_name("sweeper").experiment_id])
    assert found.info.status == "FINISHED"
    params = found.data.params
    for layer in ("0.weight", "3.weight", "7.weight", "9.weight"):
        assert int(params[f"layers.{layer}.bits"]) in (2, 3, 4, 8, 32)
        assert 0 <= float(params[f"layers.{layer}.sparsity"]) < 1
    files = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"sensitivity.csv", "allocation.csv", "model.pt"} <= files  # the tables as data; the report draws them
    assert 0 < found.data.metrics["predicted_val_score"] <= 1


def test_the_sensitivity_command_writes_its_table_and_plot(run_cli, tmp_path):
    line = "data=synthetic data.n_samples=300 model=mlp strategy.epochs=2 'sensitivity.bits=[2,8]'"
    done = run_cli(*argv(line), module="sweeper.sensitivity")
    assert done.returncode == 0, done.stderr
    (csv,) = tmp_path.glob("outputs/*/*/sensitivity.csv")
    table = pd.read_csv(csv)
    assert set(table["bits"]) == {2, 8, 32} and (csv.parent / "sensitivity.png").stat().st_size > 10_000
    assert "each layer alone, losing at most 1 point(s):" in done.stdout and "MLflow run" in done.stdout


def test_the_mixed_search_preset_searches_a_share_of_the_float32_artifact():
    from hydra.utils import instantiate

    cfg = compose_config("search=mixed", fast=False, tracking=True, hydra=True)
    facade = instantiate(cfg.hydra.sweeper)
    facade.sweeper.config = cfg
    plan = facade.sweeper.plan([])
    assert list(plan.objectives) == ["val_score", "size_bytes"]
    assert plan.space.fixed == {"compression": "mixed", "compression.budget_kb": "null"}
    sampled = {"compression.budget_ratio": 0.2, "compression.finetune_epochs": 2}
    trial = plan_trial(compose_config(*plan.space.overrides(sampled)))
    assert trial.compressor.budget_kb is None and trial.compressor.budget_ratio == 0.2
    assert trial.unsupported is None


def test_a_share_below_the_smallest_reachable_size_fails_that_trial_only_and_both_budgets_are_refused():
    plan = plan_trial(
        compose_config("compression=mixed", "compression.budget_kb=null", "compression.budget_ratio=0.01")
    )
    assert plan.unsupported is not None  # the trial fails before training; a search goes on
    assert "compression.budget_ratio=0.01 is 0.6 KiB; the smallest reachable artifact is" in str(plan.unsupported)
    with pytest.raises(ConfigError, match="set exactly one"):
        plan_trial(compose_config("compression=mixed", "compression.budget_ratio=0.2"))
