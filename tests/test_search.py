"""The Optuna sweeper: search spaces, seeds, conditional spaces, fronts, budgets, pruning, resume."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from hydra_plugins.sweeper_optuna._impl import OptunaSweeperImpl
from sweeper.errors import ConfigError
from sweeper.search import parse_space
from sweeper.search.study import build_sampler, open_storage

PRESETS = ["lr", "optimizers", "prune", "bits", "pareto"]
TINY = ["data=synthetic", "data.n_samples=300", "model=mlp", "measure.latency_seconds=0.01", "measure.latency_batch=32"]


def _full_cfg(*overrides: str):
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def _sweeper_cfg(*overrides: str):
    return _full_cfg(*overrides).hydra.sweeper


def _impl(**options) -> OptunaSweeperImpl:
    return OptunaSweeperImpl(**{"params": {"optimizer.lr": "tag(log, interval(1e-4, 1e-1))"}, **options})


def _study(path: Path) -> optuna.Study:
    storage = open_storage(str(path / "optuna.journal"))
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


# ---- the plug-in and the presets ------------------------------------------------------------------


def test_plugin_is_discovered_and_selected_by_every_preset():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]
    assert "OptunaSweeper" in names
    assert _sweeper_cfg("hydra/sweeper=optuna")._target_.endswith("sweeper_optuna.optuna_sweeper.OptunaSweeper")
    for preset in PRESETS:
        assert _sweeper_cfg(f"search={preset}")._target_.endswith("OptunaSweeper"), preset


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_its_space_parses(preset):
    from hydra.utils import instantiate

    cfg = _full_cfg(f"search={preset}")
    facade = instantiate(cfg.hydra.sweeper)
    facade.sweeper.config = cfg
    plan = facade.sweeper.plan([])
    assert plan.space.params and plan.study_name.startswith(f"{preset}-")
    expected = {"pareto": ["val_accuracy", "size_bytes", "latency_ms"]}.get(preset, ["val_accuracy"])
    assert list(plan.objectives) == expected


def test_the_same_search_maps_to_the_same_study_and_another_search_to_another():
    a, b = _impl().plan(["strategy.epochs=2"]), _impl(n_trials=50, seed=1).plan(["strategy.epochs=2"])
    c = _impl().plan(["strategy.epochs=3"])
    assert a.study_name == b.study_name != c.study_name


# ---- search spaces ---------------------------------------------------------------------------------


def test_range_excludes_its_stop_and_the_sampler_never_yields_it():
    space = parse_space({"compression.bits": "range(2, 9)", "x": "range(0.0, 1.0, 0.25)", "y": "range(10, 0, -3)"})
    bits, x, y = (p.distribution for p in space.params)
    assert (bits.low, bits.high, bits.step) == (2, 8, 1)
    assert (x.low, x.high, x.step) == (0.0, 0.75, 0.25)
    assert (y.low, y.high, y.step) == (1, 10, 3)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(300):
        trial = study.ask()
        seen.add(space.sample(trial)["compression.bits"])
        study.tell(trial, 0.0)
    assert seen == set(range(2, 9))


def test_interval_log_and_choice_map_to_optuna_distributions():
    space = parse_space({"a": "interval(0.1, 0.5)", "b": "tag(log, interval(1e-5, 1))", "c": "choice(adam, sgd)", "d": 3})
    a, b, c = (p.distribution for p in space.params)
    assert isinstance(a, optuna.distributions.FloatDistribution) and (a.low, a.high, a.log) == (0.1, 0.5, False)
    assert b.log and b.low == 1e-5
    assert isinstance(c, optuna.distributions.CategoricalDistribution) and c.choices == ("adam", "sgd")
    assert space.fixed == {"d": "3"}


def _suggestions(seed: int, n: int = 6) -> list[dict]:
    space = parse_space({"optimizer.lr": "tag(log, interval(1e-4, 1e-1))", "optimizer": "choice(adam, sgd)",
                         "strategy.batch_size": "range(16, 129, 16)"})
    study = optuna.create_study(sampler=build_sampler("tpe", seed=seed, options={"n_startup_trials": 3}))
    found = []
    for _ in range(n):
        trial = study.ask()
        values = space.sample(trial)
        found.append(values)
        study.tell(trial, math.log10(values["optimizer.lr"]) + values["strategy.batch_size"] / 100)
    return found


def test_a_seeded_tpe_search_suggests_the_same_values_twice():
    first = _suggestions(seed=7)
    assert first == _suggestions(seed=7)
    assert first != _suggestions(seed=8)


def test_a_conditional_space_samples_only_the_chosen_methods_knobs():
    cfg = _sweeper_cfg("search=pareto")
    space = parse_space(OmegaConf.to_container(cfg.params), OmegaConf.to_container(cfg.conditional_params))
    knobs = {"none": set(), "quantize": set(), "prune": {"compression.amount"},
             "prune_structured": {"compression.amount"}, "qat": {"compression.bits"}}
    for sampler in ("random", "tpe"):
        study = optuna.create_study(sampler=build_sampler(sampler, seed=0), directions=["maximize"] * 3)
        methods = set()
        for _ in range(60):
            trial = study.ask()
            values = space.sample(trial)
            method = values.pop("compression")
            methods.add(method)
            assert set(values) == knobs[method], (method, values)
            assert len(trial.params) == 1 + len(knobs[method])
            if method == "prune_structured":
                assert 0.3 <= values["compression.amount"] <= 0.9
            study.tell(trial, [values.get("compression.amount", 0.5), 1.0, 1.0])
        assert methods == set(knobs)


# ---- bad input: one line naming the key, before the first trial -----------------------------------


@pytest.mark.parametrize(
    ("options", "arguments", "message"),
    [
        ({"sampler": "bayes"}, [], "hydra.sweeper.sampler=bayes: unknown sampler; allowed: tpe, random, grid"),
        ({"pruner": "early"}, [], "hydra.sweeper.pruner=early: unknown pruner; allowed: none, median"),
        ({"objectives": {"accuracy": "maximize"}}, [], "hydra.sweeper.objectives.accuracy: unknown metric"),
        ({"objectives": {"test_accuracy": "maximize"}}, [], "test split stays out of selection"),
        ({"objectives": {"val_accuracy": "up"}}, [], "allowed: maximize, minimize"),
        ({"constraints": {"size_bytes": "small"}}, [], "hydra.sweeper.constraints.size_bytes='small': write an operator"),
        ({"params": {"optimizer.lr": "interval(0.1, 0.1)"}}, [], "hydra.sweeper.params.optimizer.lr: interval(0.1, 0.1) is empty or inverted"),
        ({"params": {"optimizer.lr": "interval(1, 0.1)"}}, [], "is empty or inverted"),
        ({"params": {"bits": "range(8, 2)"}}, [], "hydra.sweeper.params.bits: range(8, 2, step=1) is empty"),
        ({}, ["optimizer.lr=tag(log, interval(0, 1))"], "optimizer.lr: tag(log, interval(0.0, 1.0)) needs low > 0"),
        ({"objectives": {"val_accuracy": "maximize", "size_bytes": "minimize"}, "pruner": "median"}, [],
         "hydra.sweeper.pruner=median: Optuna cannot prune a multi-objective study"),
        ({"conditional_params": {"compression=prune": {"compression.amount": "interval(0.1, 0.9)"}}}, [],
         "compression=prune: compression is not a choice(...)"),
        ({"sampler": "grid"}, [], "sampler=grid needs choice(...) or range(...)"),
        ({"sampler": "cmaes"}, [], "hydra.sweeper.sampler=cmaes: needs the package"),
        ({"n_trials": 0}, [], "hydra.sweeper.n_trials=0: must be an integer >= 1"),
    ],
)
def test_bad_input_is_one_line_naming_the_key(options, arguments, message):
    with pytest.raises(ConfigError) as info:
        _impl(**options).plan(arguments)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
