"""The Optuna sweeper: search spaces, seeds, conditional spaces, fronts, budgets, pruning, resume."""

from __future__ import annotations

import math
import time
from pathlib import Path

import optuna
import pytest
from conftest import argv, compose_config
from omegaconf import OmegaConf

from sweeper.errors import ConfigError
from sweeper.search import parse_space
from sweeper.search.loop import OptunaSweeperImpl
from sweeper.search.study import build_sampler, open_storage
from sweeper.search.summary import UNLIMITED

PRESETS = ["lr", "optimizers", "prune", "bits", "pareto"]
TINY = ["data=synthetic", "data.n_samples=300", "model=mlp", "measure.latency_seconds=0.01", "measure.latency_batch=32"]


def _full_cfg(*overrides: str):
    return compose_config(*overrides, fast=False, tracking=True, hydra=True)


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
    expected = {"pareto": ["val_score", "size_bytes", "latency_ms"]}.get(preset, ["val_score"])
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
    space = parse_space(
        {"a": "interval(0.1, 0.5)", "b": "tag(log, interval(1e-5, 1))", "c": "choice(adam, sgd)", "d": 3}
    )
    a, b, c = (p.distribution for p in space.params)
    assert isinstance(a, optuna.distributions.FloatDistribution) and (a.low, a.high, a.log) == (0.1, 0.5, False)
    assert b.log and b.low == 1e-5
    assert isinstance(c, optuna.distributions.CategoricalDistribution) and c.choices == ("adam", "sgd")
    assert space.fixed == {"d": "3"}


def _suggestions(seed: int, n: int = 6) -> list[dict]:
    space = parse_space(
        {
            "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
            "optimizer": "choice(adam, sgd)",
            "strategy.batch_size": "range(16, 129, 16)",
        }
    )
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
    knobs = {
        "none": set(),
        "quantize": set(),
        "prune": {"compression.amount"},
        "prune_structured": {"compression.amount"},
        "qat": {"compression.bits"},
    }
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


# ---- the seam to a running trial -------------------------------------------------------------------


def test_a_job_in_another_process_reopens_its_trial_from_the_storage(tmp_path, monkeypatch):
    from sweeper.search import trial_context

    storage = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(storage), direction="maximize")
    trial = study.ask()
    ctx = trial_context.open_trial("s", storage, trial.number)  # nothing registered here: reopened from the storage
    assert ctx.number == trial.number and ctx.tags() == {"optuna_study": "s", "optuna_trial": "0"}
    ctx.attach_run("abc")
    ctx.report(0, {"val_score": 0.5})  # the default pruner of a reopened study prunes nothing
    stored = optuna.load_study(study_name="s", storage=open_storage(storage)).trials[0]
    assert stored.user_attrs["mlflow_run_id"] == "abc" and stored.intermediate_values == {1: 0.5}


def test_pruned_is_told_from_other_failures():
    from sweeper.search import trial_context

    assert not trial_context.is_pruned(RuntimeError("x")) and trial_context.is_pruned(optuna.TrialPruned())


# ---- bad input: one line naming the key, before the first trial -----------------------------------


@pytest.mark.parametrize(
    ("options", "arguments", "message"),
    [
        ({"sampler": "bayes"}, [], "hydra.sweeper.sampler=bayes: unknown sampler; allowed: tpe, random, grid"),
        ({"pruner": "early"}, [], "hydra.sweeper.pruner=early: unknown pruner; allowed: none, median"),
        ({"objectives": {"accuracy": "maximize"}}, [], "hydra.sweeper.objectives.accuracy: unknown metric"),
        ({"objectives": {"test_score": "maximize"}}, [], "test split stays out of selection"),
        ({"objectives": {"val_score": "up"}}, [], "allowed: maximize, minimize"),
        (
            {"constraints": {"size_bytes": "small"}},
            [],
            "hydra.sweeper.constraints.size_bytes='small': write an operator",
        ),
        (
            {"params": {"optimizer.lr": "interval(0.1, 0.1)"}},
            [],
            "hydra.sweeper.params.optimizer.lr: interval(0.1, 0.1) is empty or inverted",
        ),
        ({"params": {"optimizer.lr": "interval(1, 0.1)"}}, [], "is empty or inverted"),
        ({"params": {"bits": "range(8, 2)"}}, [], "hydra.sweeper.params.bits: range(8, 2, step=1) is empty"),
        ({}, ["optimizer.lr=tag(log, interval(0, 1))"], "optimizer.lr: tag(log, interval(0.0, 1.0)) needs low > 0"),
        (
            {"objectives": {"val_score": "maximize", "size_bytes": "minimize"}, "pruner": "median"},
            [],
            "hydra.sweeper.pruner=median: Optuna cannot prune a multi-objective study",
        ),
        (
            {"conditional_params": {"compression=prune": {"compression.amount": "interval(0.1, 0.9)"}}},
            [],
            "compression=prune: compression is not a choice(...)",
        ),
        ({"sampler": "grid"}, [], "sampler=grid needs choice(...) or range(...)"),
        ({"sampler": "cmaes"}, [], "hydra.sweeper.sampler=cmaes: needs the package"),
        ({"n_trials": 0}, [], "hydra.sweeper.n_trials=0: must be an integer >= 1"),
        ({"stale_after": 5}, [], "hydra.sweeper.stale_after=5: must be >= 10"),
        ({"timeout": 0}, [], "hydra.sweeper.timeout=0: must be a number of seconds > 0 or null"),
        ({"timeout": "soon"}, [], "hydra.sweeper.timeout=soon: must be a number of seconds > 0 or null"),
    ],
)
def test_bad_input_is_one_line_naming_the_key(options, arguments, message):
    with pytest.raises(ConfigError) as info:
        _impl(**options).plan(arguments)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ---- the sweep loop, in process, with a stand-in launcher ---------------------------------------------


class FakeLauncher:
    """Returns ``metrics(overrides)`` for each job (``None``: a failed trial); on call ``interrupt_at``
    it is interrupted by Ctrl-C, or by a SIGTERM sent to this process when ``sigterm`` is set."""

    def __init__(self, metrics, interrupt_at: int | None = None, *, sigterm: bool = False) -> None:
        self.metrics, self.interrupt_at, self.sigterm, self.calls, self.jobs = metrics, interrupt_at, sigterm, 0, []

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        self.calls += 1
        if self.calls == self.interrupt_at:
            if self.sigterm:
                import os
                import signal

                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # not reached: the handler raises as soon as the signal arrives
            raise KeyboardInterrupt
        returns = []
        for overrides in job_overrides:
            self.jobs.append(overrides)
            values = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if not o.startswith("++hydra.")}
            returns.append(JobReturn(status=JobStatus.COMPLETED, _return_value=self.metrics(values)))
        return returns


def _sweep(tmp_path: Path, launcher: FakeLauncher, **options) -> OptunaSweeperImpl:
    from types import SimpleNamespace

    cfg = _full_cfg("tracking.enabled=false", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    impl = _impl(storage=str(tmp_path / "optuna.journal"), study_name="s", seed=0, **options)
    impl.config, impl.launcher = cfg, launcher
    impl.hydra_context = SimpleNamespace(config_loader=SimpleNamespace(load_sweep_config=lambda *_: None))
    impl.sweep([])
    return impl


def _accuracy(values: dict) -> dict:
    lr = float(values["optimizer.lr"])
    return {"val_score": 1 - abs(math.log10(lr) + 2) / 3, "size_bytes": 1000.0, "latency_ms": 0.1}


@pytest.mark.parametrize("sigterm", [False, True], ids=["ctrl_c", "sigterm"])
def test_a_sweep_interrupted_by_ctrl_c_resumes_to_exactly_n_trials(tmp_path, sigterm):
    import signal

    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        _sweep(tmp_path, FakeLauncher(_accuracy, interrupt_at=3, sigterm=sigterm), n_trials=5)
    assert signal.getsignal(signal.SIGTERM) is handler
    assert [t.state.name for t in _study(tmp_path).trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    reason = _study(tmp_path).trials[2].user_attrs["failure_reason"]
    assert reason == ("KeyboardInterrupt: signal SIGTERM" if sigterm else "KeyboardInterrupt: ")
    launcher = FakeLauncher(_accuracy)
    _sweep(tmp_path, launcher, n_trials=5)
    assert len(launcher.jobs) == 3
    assert [t.state.name for t in _study(tmp_path).trials].count("COMPLETE") == 5
    assert _study(tmp_path).metric_names == ["val_score"]  # what optuna-dashboard shows


def test_n_jobs_asks_and_launches_trials_in_batches(tmp_path):
    sizes = []
    launcher = FakeLauncher(_accuracy)
    launch = launcher.launch
    launcher.launch = lambda jobs, initial_job_idx: sizes.append(len(jobs)) or launch(jobs, initial_job_idx)
    _sweep(tmp_path, launcher, n_trials=5, n_jobs=2)
    assert sizes == [2, 2, 1]
    envs = [[o for o in job if o.startswith("hydra.job.env_set.SWEEPER_OPTUNA_TRIAL=")] for job in launcher.jobs]
    assert envs == [[f"hydra.job.env_set.SWEEPER_OPTUNA_TRIAL='{n}'"] for n in range(5)]


def test_a_grid_search_visits_each_point_once_and_stops_at_the_grid_size(tmp_path):
    launcher = FakeLauncher(lambda values: {"val_score": int(values["compression.bits"]) / 8})
    _sweep(tmp_path, launcher, params={"compression.bits": "range(2, 9)"}, sampler="grid", n_trials=20)
    assert sorted(int(dict(o.split("=", 1) for o in job)["compression.bits"]) for job in launcher.jobs) == list(
        range(2, 9)
    )


def _slow(seconds: float):
    def metrics(values: dict) -> dict:
        time.sleep(seconds)
        return _accuracy(values)

    return metrics


def test_a_timeout_starts_no_trial_after_the_budget_and_writes_the_results(tmp_path):
    launcher = FakeLauncher(_slow(0.4))
    start = time.perf_counter()
    _sweep(tmp_path, launcher, n_trials=1000, timeout=1.0)
    elapsed = time.perf_counter() - start
    # trials start at ~0, 0.4, 0.8 s (before the budget); the one started at 0.8 finishes, none starts at 1.2 s
    assert len(launcher.jobs) == 3, elapsed
    assert [t.state.name for t in _study(tmp_path).trials] == ["COMPLETE"] * 3  # the running one finished
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.stopped_by == "timeout" and results.timeout_seconds == 1.0
    assert results.best.trial in (0, 1, 2)


def test_a_timeout_without_n_trials_uses_the_whole_budget_and_n_trials_still_ends_a_short_search(tmp_path):
    launcher = FakeLauncher(_slow(0.05))
    _sweep(tmp_path / "budget", launcher, n_trials=None, timeout=0.6)
    assert len(launcher.jobs) >= 3  # trials of 0.05 s until the budget ends: time, not a count, stopped it
    assert OmegaConf.load(tmp_path / "budget" / "sweep" / "optimization_results.yaml").stopped_by == "timeout"
    short = FakeLauncher(_accuracy)
    _sweep(tmp_path / "short", short, n_trials=3, timeout=60)
    assert len(short.jobs) == 3
    assert OmegaConf.load(tmp_path / "short" / "sweep" / "optimization_results.yaml").stopped_by == "n_trials"
    assert _impl().plan([]).n_trials == 20  # neither given: 20 trials
    assert _impl(timeout=30).plan([]).n_trials == UNLIMITED  # a budget and no n_trials: the budget decides


def test_failed_and_nan_trials_are_failed_and_replaced_and_a_hopeless_sweep_stops(tmp_path):
    from sweeper.search.loop import SweepAborted

    outcomes = iter([None, {"val_score": float("nan")}, {"size_bytes": 3.0}] + [{"val_score": 0.5}] * 9)
    _sweep(tmp_path, FakeLauncher(lambda _: next(outcomes)), n_trials=3, max_failure_rate=1.0)
    trials = _study(tmp_path).trials
    assert [t.state.name for t in trials] == ["FAIL"] * 3 + ["COMPLETE"] * 3
    assert "nan" in trials[1].user_attrs["failure_reason"]
    assert "metric val_score not returned" in trials[2].user_attrs["failure_reason"]

    with pytest.raises(SweepAborted, match=r"max_failure_rate=0.25: 2 trials failed in this run"):
        _sweep(tmp_path / "hopeless", FakeLauncher(lambda _: None), n_trials=4, max_failure_rate=0.25)
    assert len(_study(tmp_path / "hopeless").trials) == 2


def test_a_constraint_marks_infeasible_trials_and_the_best_trial_is_feasible(tmp_path):
    def metrics(values):  # the larger the rate, the more accurate, and the larger
        lr = float(values["optimizer.lr"])
        return {"val_score": lr * 10, "size_bytes": lr * 1e6}

    _sweep(tmp_path, FakeLauncher(metrics), n_trials=8, sampler="random", constraints={"size_bytes": "<= 20000"})
    study = _study(tmp_path)
    infeasible = [t for t in study.trials if t.system_attrs["constraints:size_bytes"] > 0]
    feasible = [t for t in study.trials if t.system_attrs["constraints:size_bytes"] <= 0]
    assert infeasible and feasible
    assert max(t.value for t in infeasible) > max(t.value for t in feasible)  # the unconstrained best is out
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    best = max(feasible, key=lambda t: t.value)
    assert results.best.trial == best.number and results.best.params["optimizer.lr"] * 1e6 <= 20000


# ---- whole searches on the command line -------------------------------------------------------------


def _experiment_id(tmp_path: Path) -> str:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("sweeper").experiment_id


def _trial_runs(tmp_path: Path):
    from sweeper.tracking.results import load_runs

    return load_runs("sweeper", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.mark.integration
def test_an_interrupted_search_resumes_to_exactly_n_trials_and_a_rerun_adds_none(run_cli, tmp_path):
    args = ["-m", "search=lr", *TINY, "strategy.epochs=2", "hydra.sweeper.seed=0"]
    first = run_cli(*args, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=first")  # stopped after 2 of 4
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, "hydra.sweeper.n_trials=4", "hydra.sweep.dir=second")
    assert second.returncode == 0, second.stderr
    assert "2/4 trials done, resuming" in second.stdout
    again = run_cli(*args, "hydra.sweeper.n_trials=4", "hydra.sweep.dir=third")
    assert again.returncode == 0, again.stderr
    assert "4/4 trials done" in again.stdout and "trial #" not in again.stdout

    study = _study(tmp_path)
    assert study.study_name.startswith("lr-")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    runs = _trial_runs(tmp_path)
    assert len(runs) == 4 and (runs["status"] == "FINISHED").all()
    assert sorted(runs["optuna_trial"].astype(int)) == list(range(4))
    assert set(runs["optuna_study"]) == set(runs["sweep_id"]) == {study.study_name}
    by_trial = runs.set_index(runs["optuna_trial"].astype(int))
    for trial in study.trials:
        assert by_trial.loc[trial.number, "run_id"] == trial.user_attrs["mlflow_run_id"]
        assert by_trial.loc[trial.number, "lr"] == pytest.approx(trial.params["optimizer.lr"])
        assert by_trial.loc[trial.number, "val_score"] == pytest.approx(trial.value)

    results = OmegaConf.load(tmp_path / "third" / "optimization_results.yaml")
    assert results.best.trial == study.best_trial.number
    assert results.best["values"].val_score == pytest.approx(max(t.value for t in study.trials))
    assert f"optimizer.lr={study.best_trial.params['optimizer.lr']}" in results.best.overrides
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parents = {
        r.data.tags["sweep_dir"]: r
        for r in client.search_runs([_experiment_id(tmp_path)], "tags.sweeper_role = 'sweep'")
    }
    assert sorted(parents) == ["first", "second", "third"]  # one parent run per command, left out of load_runs
    assert all(p.info.status == "FINISHED" and p.data.tags["sweep_id"] == study.study_name for p in parents.values())
    children = dict(zip(runs["run_id"], runs["parent_run_id"], strict=True))
    assert sorted(children.values()) == sorted([parents["first"].info.run_id] * 2 + [parents["second"].info.run_id] * 2)
    third = parents["third"]  # trained nothing, but holds the whole study's results
    assert third.data.tags["best_trial"] == str(study.best_trial.number)
    assert third.data.metrics["best_val_score"] == pytest.approx(study.best_value)
    assert "optimization_results.yaml" in {a.path for a in client.list_artifacts(third.info.run_id)}


@pytest.mark.integration
def test_a_pruner_stops_a_bad_trial_early_and_failed_trials_do_not_stop_the_sweep(run_cli, tmp_path):
    # Three rates: 0.5 trains, 1e4 diverges (NaN loss), 1e-7 learns nothing and is pruned against the
    # completed trials once the pruner has its two; the checks follow these rules, not one seed's draws.
    proc = run_cli(
        "-m",
        *TINY,
        *argv(
            "hydra/sweeper=optuna data.n_samples=1000 optimizer=sgd strategy.epochs=4 'optimizer.lr=choice(0.5, 1e-7, 1e4)'"
        ),
        *argv(
            "hydra.sweeper.n_trials=4 hydra.sweeper.sampler=random hydra.sweeper.seed=10 hydra.sweeper.pruner=median"
        ),
        *argv(
            "hydra.sweeper.max_failure_rate=1.0 'hydra.sweeper.pruner_options={n_startup_trials: 2, n_warmup_steps: 1}'"
        ),
    )
    study = _study(tmp_path)
    completed = 0
    for trial in study.trials:  # in the order they ran
        lr, state = trial.params["optimizer.lr"], trial.state.name
        expected = {0.5: "COMPLETE", 1e4: "FAIL"}.get(lr, "PRUNED" if completed >= 2 else "COMPLETE")
        assert state == expected, (trial.number, lr, state)
        completed += state == "COMPLETE"
        if state == "PRUNED":
            assert trial.user_attrs["pruned_epoch"] < 4 and max(trial.intermediate_values) < 4
        if state == "FAIL":
            assert "diverged" in trial.user_attrs["failure_reason"]
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 4 and "PRUNED" in states
    failed = states.count("FAIL")  # the sweep ran to its end; exit status 1 says a trial failed
    assert proc.returncode == (1 if failed else 0), proc.stderr
    assert not failed or f"{failed} trial{'s' if failed > 1 else ''} failed" in proc.stderr

    runs = _trial_runs(tmp_path).set_index(_trial_runs(tmp_path)["optuna_trial"].astype(int))
    for trial in study.trials:
        run = runs.loc[trial.number]
        assert run["status"] == {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[trial.state.name]
        if trial.state.name == "PRUNED":
            assert run["optuna_state"] == "PRUNED" and run["pruned_epoch"] == str(trial.user_attrs["pruned_epoch"])
        if trial.state.name == "FAIL":
            assert run["failure_reason"].startswith("TrainingDiverged")
    assert "PRUNED pruned at epoch" in proc.stdout


@pytest.mark.integration
def test_the_optimizers_preset_tunes_each_optimizer_at_its_own_rate(run_cli, tmp_path):
    proc = run_cli(
        *argv("-m search=optimizers strategy.epochs=1 hydra.sweeper.n_trials=3 hydra.sweeper.sampler=random"),
        *TINY,
        "hydra.sweeper.seed=0",
    )
    assert proc.returncode == 0, proc.stderr
    cfg = _sweeper_cfg("search=optimizers")
    space = parse_space(OmegaConf.to_container(cfg.params), OmegaConf.to_container(cfg.conditional_params))
    ranges = {p.name: p.distribution for p in space.params}
    runs = _trial_runs(tmp_path)
    assert len(runs) == 3 and (runs["status"] == "FINISHED").all()
    for trial in _study(tmp_path).trials:
        (name,) = [n for n in trial.params if n.startswith("optimizer.lr[")]
        optimizer = trial.params["optimizer"]
        assert name == f"optimizer.lr[optimizer={optimizer}]"
        low, high = ranges[name].low, ranges[name].high
        run = runs[runs["optuna_trial"] == str(trial.number)].iloc[0]
        assert run["optimizer"] == optimizer and run["lr"] == pytest.approx(trial.params[name])
        assert low <= run["lr"] <= high


@pytest.mark.integration
def test_bad_input_stops_the_command_before_any_trial(run_cli, tmp_path):
    proc = run_cli("-m", "search=lr", "hydra.sweeper.constraints={latency_ms: fast}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "sweeper: error: hydra.sweeper.constraints.latency_ms='fast': write an operator and a number, "
        'e.g. "<= 20000"; operators: <=, >=, <, >'
    ]
    assert not (tmp_path / "optuna.journal").exists()


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


@pytest.mark.integration
def test_a_multi_objective_search_with_a_budget_writes_the_feasible_non_dominated_front(run_cli, tmp_path):
    objectives = {"val_score": "maximize", "size_bytes": "minimize", "latency_ms": "minimize"}
    budget = 50000  # the MLP with 10 or 20 input features fits, 30 or 40 do not
    proc = run_cli(
        "-m",
        "hydra/sweeper=optuna",
        *TINY,
        "strategy.epochs=2",
        "data.n_features=choice(10, 20, 30, 40)",
        "optimizer.lr=tag(log, interval(1e-3, 1e-1))",
        "hydra.sweeper.n_trials=10",
        "hydra.sweeper.sampler=nsgaii",
        "hydra.sweeper.seed=0",
        "hydra.sweeper.objectives={val_score: maximize, size_bytes: minimize, latency_ms: minimize}",
        f"hydra.sweeper.constraints={{size_bytes: '<= {budget}'}}",
        "hydra.sweep.dir=pareto",
    )
    assert proc.returncode == 0, proc.stderr
    study = _study(tmp_path)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 10
    for t in complete:
        assert t.system_attrs["constraints:size_bytes"] == t.values[1] - budget
    feasible = [t for t in complete if t.values[1] <= budget]
    assert 0 < len(feasible) < len(complete)  # the budget ruled some trials out

    def as_min(t):  # every objective as "smaller is better"
        return [-v if d == "maximize" else v for v, d in zip(t.values, objectives.values(), strict=True)]

    brute = {t.number for t in feasible if not any(_dominates(as_min(o), as_min(t)) for o in feasible)}
    results = OmegaConf.load(tmp_path / "pareto" / "optimization_results.yaml")
    front = {e.trial for e in results.pareto_front}
    assert front == brute
    for entry in results.pareto_front:
        assert entry["values"].size_bytes <= budget and list(entry["values"]) == list(objectives)


@pytest.mark.integration
def test_a_search_on_a_metric_the_task_does_not_compute_stops_before_training(run_cli, tmp_path):
    # The check runs in the first job, after planning and before its MLflow run: the store is not under test
    # (tracking off spares the process MLflow's import and the sweep's parent run, most of its seconds).
    objectives = "'hydra.sweeper.objectives={val_auc: maximize}' hydra.sweeper.n_trials=2 tracking.enabled=false"
    proc = run_cli(*argv(f"-m search=lr {objectives}"), *TINY)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "val_auc needs metric auc, which task synthetic does not compute; its metrics: accuracy" in proc.stderr
    assert "epoch" not in proc.stdout  # nothing trained
