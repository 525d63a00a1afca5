"""Beyond one machine: worker coordination, the shared cache, reachability checks, launchers,
and 3 workers on one study in a real PostgreSQL with a real MLflow tracking server."""

from __future__ import annotations

import multiprocessing
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
from conftest import NO_REPORT, argv, cli_env, compose_config
from services import find_pg_bin, free_port, start_mlflow_server, start_postgres, start_workers

from sweeper.cache import atomic_path, compute_once, file_lock
from sweeper.search import workers
from sweeper.tracking.results import load_runs

TINY = [
    "data=synthetic",
    "data.n_samples=300",
    "model=mlp",
    "strategy.epochs=2",
    "measure.latency_seconds=0.01",
    NO_REPORT,
]


# ---- the shared cache: one process computes, the others wait and read ---------------------------


def _compute(target: str, counter: str) -> str:
    def make(tmp: Path) -> None:
        with open(counter, "a") as log:
            log.write("made\n")
        time.sleep(0.3)  # long enough for the other processes to arrive while this one computes
        tmp.write_text("teacher")

    return compute_once(target, make).read_text()


def test_compute_once_across_processes_makes_the_entry_exactly_once(tmp_path):
    target, counter = tmp_path / "teachers" / "abc.pt", tmp_path / "made.log"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        contents = pool.starmap(_compute, [(str(target), str(counter))] * 4)
    assert contents == ["teacher"] * 4
    assert counter.read_text() == "made\n"
    assert not list(target.parent.glob(".*.tmp"))


def test_a_failed_computation_publishes_nothing_and_the_next_caller_retries(tmp_path):
    target = tmp_path / "t.pt"

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError):
        compute_once(target, broken)
    assert not target.exists() and not list(tmp_path.glob(".*.tmp"))
    assert compute_once(target, lambda tmp: tmp.write_text("ok")).read_text() == "ok"


def _hold_lock(path: str, seconds: float) -> None:
    with file_lock(path):
        time.sleep(seconds)


def test_file_lock_excludes_other_processes_and_is_released_when_the_holder_dies(tmp_path):
    lock = str(tmp_path / "x.lock")
    holder = multiprocessing.get_context("spawn").Process(target=_hold_lock, args=(lock, 60))
    holder.start()
    try:
        import fcntl

        deadline = time.monotonic() + 30
        with open(lock, "a+b") as handle:
            while time.monotonic() < deadline:  # wait until the child holds it
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                    time.sleep(0.1)
                except BlockingIOError:
                    break
            else:
                pytest.fail("the child never took the lock")
        holder.kill()  # no cleanup runs: the kernel releases the lock
        holder.join()
        with open(lock, "a+b") as handle:  # free now: a non-blocking attempt succeeds (a hang would not fail)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        holder.kill()


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "entry"
    target.write_text("old")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("new, half written")
        raise ValueError
    assert target.read_text() == "old"


# ---- worker coordination on one study -----------------------------------------------------------


@pytest.fixture(params=["journal", "sqlite"])
def study(request, tmp_path) -> optuna.Study:
    """An empty study in each kind of file storage (a database goes through Optuna's trial cache)."""
    from sweeper.search.study import open_storage

    path = tmp_path / ("optuna.journal" if request.param == "journal" else "optuna.db")
    return optuna.create_study(storage=open_storage(str(path)), direction="maximize")


def test_live_trials_of_other_workers_take_slots_and_dead_ones_are_failed(study):
    study.tell(study.ask(), 1.0)
    live, dead = study.ask(), study.ask()
    live.set_user_attr(workers.HEARTBEAT_ATTR, time.time())
    dead.set_user_attr(workers.HEARTBEAT_ATTR, time.time() - workers.GRACE_SECONDS - 1)
    assert workers.free_slots(study, n_trials=4) == (1, 2)  # 1 done, 1 live, the dead one failed
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "RUNNING", "FAIL"]
    assert "heartbeat" in study.trials[2].user_attrs["failure_reason"]


def test_a_trial_asked_after_n_trials_live_or_done_ones_is_a_surplus_and_not_run(study):
    first, second, third = study.ask(), study.ask(), study.ask()  # three workers ask for 2 free slots
    kept = workers.release_surplus(study, [first, second, third], n_trials=2)
    assert [t.number for t in kept] == [0, 1]
    assert study.trials[2].state.name == "FAIL" and study.trials[2].user_attrs["surplus"] is True


def test_heartbeat_refreshes_the_attribute_while_the_trial_runs(study):
    trial = study.ask()
    with workers.heartbeat([trial], every=0.05):
        first = study.trials[0].user_attrs[workers.HEARTBEAT_ATTR]
        deadline = time.monotonic() + 30  # each beat writes to storage; a slow disk delays it, nothing more
        while study.trials[0].user_attrs[workers.HEARTBEAT_ATTR] <= first:
            assert time.monotonic() < deadline, "no new heartbeat within 30 s"
            time.sleep(0.05)


# ---- bad input: unreachable servers, missing driver ---------------------------------------------


def _closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweeper: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_an_unreachable_storage_fails_before_any_trial_naming_the_url(run_cli):
    url = f"postgresql://sweeper:secret@127.0.0.1:{_closed_port()}/optuna"
    proc = run_cli("-m", "search=lr", "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={url}", *TINY, timeout=60)
    _assert_one_line_error(proc, "hydra.sweeper.storage=postgresql://sweeper:***@127.0.0.1", "cannot connect")
    assert "secret" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("multirun", [False, True], ids=["one trial", "optuna search"])
def test_an_unreachable_tracking_server_fails_in_seconds_naming_the_url(run_cli, multirun):
    uri = f"http://127.0.0.1:{_closed_port()}"
    args = ["-m", "search=lr", "hydra.sweeper.n_trials=1"] if multirun else []
    proc = run_cli(*args, f"tracking.uri={uri}", *TINY, timeout=60)
    _assert_one_line_error(proc, f"tracking.uri={uri}", "does not answer")


def test_a_missing_database_driver_names_the_install_command(run_cli, tmp_path):
    blocker = tmp_path / "no_drivers"
    blocker.mkdir()
    for name in ("psycopg", "psycopg2"):
        (blocker / f"{name}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\")\n")
    url = f"postgresql://sweeper@127.0.0.1:{_closed_port()}/optuna"
    env = {"PYTHONPATH": f"{blocker}:{cli_env()['PYTHONPATH']}"}
    proc = run_cli(
        "-m", "search=lr", "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={url}", *TINY, env=env, timeout=60
    )
    _assert_one_line_error(proc, "driver is missing", 'pip install -e ".[dist]"')


# ---- Hydra launchers ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_joblib_launcher_runs_two_trials_of_a_study_in_parallel(run_cli, tmp_path):
    proc = run_cli(
        *argv(
            "-m search=lr hydra.sweeper.n_trials=2 hydra.sweeper.n_jobs=2 hydra/launcher=joblib hydra.launcher.n_jobs=2"
        ),
        *TINY,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(runs.status) == ["FINISHED", "FINISHED"]
    assert sorted(runs.optuna_trial.astype(int)) == [0, 1]
    assert set(runs["threads"].astype(int)) == {1}  # one torch thread per worker: 2 workers, 2 cores


@pytest.mark.slow
def test_the_submitit_local_launcher_runs_a_grid(run_cli, tmp_path):
    proc = run_cli("-m", "optimizer=adam,sgd", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(runs.optimizer) == ["adam", "sgd"]
    assert set(runs.status) == {"FINISHED"}


# ---- 3 workers, one study in PostgreSQL, runs in an MLflow server backed by PostgreSQL ----------


@pytest.fixture
def postgres_and_mlflow(tmp_path):
    """A throwaway PostgreSQL cluster on a loopback port and an ``mlflow server`` backed by it."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl); CI installs it in .ci/run")
    cluster = start_postgres()
    server = None
    try:
        storage, backend = cluster.create_database("optuna"), cluster.create_database("mlflow")
        server = start_mlflow_server(backend, tmp_path / "artifacts", log_path=tmp_path / "mlflow-server.log")
        yield storage, server
    finally:
        if server is not None:
            server.stop()
        cluster.stop()


@pytest.mark.slow
@pytest.mark.integration
def test_three_workers_run_one_study_in_postgresql_with_a_tracking_server(postgres_and_mlflow, tmp_path):
    storage, server = postgres_and_mlflow
    study_name = f"dist-{uuid.uuid4().hex[:8]}"
    overrides = [
        "search=lr",
        "hydra.sweeper.n_trials=6",
        f"hydra.sweeper.study_name={study_name}",
        f"hydra.sweeper.storage={storage}",
        f"tracking.uri={server.uri}",
        *TINY,
    ]
    procs = start_workers(3, overrides, tmp_path / "workers", env=cli_env())  # own directories: no shared disk
    try:
        codes = [p.wait(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    logs = [(tmp_path / "workers" / f"worker{i}" / "worker.log").read_text() for i in range(3)]
    assert codes == [0, 0, 0], "\n".join(log[-2000:] for log in logs)
    assert not [log for log in logs if "View run" in log]  # MLflow's two lines per run are quiet unless -v

    study = optuna.load_study(study_name=study_name, storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    others = [(t.number, t.state.name, t.user_attrs) for t in study.trials if t.state.name != "COMPLETE"]
    assert len(complete) == 6, others
    assert [t for t in study.trials if t.state.name == "RUNNING"] == []

    runs = load_runs(sweep_id=study_name, tracking_uri=server.uri)
    finished = runs[runs.status == "FINISHED"]
    assert len(finished) == 6 and finished.run_id.is_unique
    assert sorted(finished.optuna_trial.astype(int)) == sorted(t.number for t in complete)
    by_trial = dict(zip(finished.optuna_trial.astype(int), finished.run_id, strict=True))
    assert {t.number: t.user_attrs["mlflow_run_id"] for t in complete} == by_trial

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.uri)
    artifacts = {a.path for a in client.list_artifacts(finished.run_id.iloc[0])}
    assert {"config.yaml", "model.pt"} <= artifacts  # uploaded through the server, no shared disk
    assert list((server.artifacts).rglob("model.pt"))  # and stored by it under its artifact root


def test_the_documented_submitit_slurm_preset_composes():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "distributed.md").read_text()
    line = next(row for row in doc.splitlines() if "hydra/launcher=submitit_slurm" in row)
    overrides = [word.strip("`|") for word in line.split() if word.startswith(("hydra/launcher", "hydra.launcher"))]
    cfg = compose_config(*overrides, fast=False, hydra=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.cpus_per_task == 1 and cfg.hydra.launcher.partition == "cpu"
