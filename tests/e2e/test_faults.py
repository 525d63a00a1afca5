"""Faults of real processes: interrupts and kill -9 lose no finished trial, and a re-run resumes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NO_REPORT, cli_env

from sweeper.tracking.results import load_history, load_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SWEEP = [
    "-m",
    "optimizer=adam,sgd,momentum",
    "hydra.sweep.dir=multirun/fixed",
    "model=mlp",
    "strategy.epochs=60",
    "measure.latency_seconds=0.01",
]


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _kill_leftovers() -> Iterator[None]:
    """A test that fails half-way must not leave a trainer running through the tests after it."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def start(tmp_path: Path, template: Path, *args: str) -> subprocess.Popen[str]:
    if not (tmp_path / "mlflow.db").exists():
        shutil.copy(template, tmp_path / "mlflow.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeper", *args, NO_REPORT],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _started.append(proc)
    return proc


def wait_for_running_trial(uri: str, finished_before: int, timeout: float = 300) -> str:
    """Block until a trial is RUNNING after ``finished_before`` finished ones (polling the store; ``timeout``
    is an upper bound for a loaded machine). Returns the optimizer of the trial seen running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            runs = load_runs(tracking_uri=uri)
        except ValueError:  # experiment not created yet
            runs = None
        if runs is not None:
            running = runs[runs.status == "RUNNING"]
            if len(running) and (runs.status == "FINISHED").sum() >= finished_before:
                return str(running.optimizer.iloc[0])
        time.sleep(0.3)
    raise AssertionError("no trial started running in time")


def wait_for_line(proc: subprocess.Popen[str], marker: str, timeout: float = 300) -> list[str]:
    """The lines ``proc`` printed up to the first one holding ``marker`` (read as they come, in a thread)."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"{marker!r} not printed within {timeout} s:\n{''.join(seen)[-3000:]}"
    return seen


def test_sigint_kills_the_running_trial_keeps_its_curves_and_exits_non_zero(tmp_path, _mlflow_template):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # debug=verbose: each epoch says it is done, so the interrupt comes after an epoch, on the event
    proc = start(tmp_path, _mlflow_template, *SWEEP[:-2], "strategy.epochs=2000", SWEEP[-1], "debug=verbose")
    before = wait_for_line(proc, "epoch 2/2000")  # 2000 epochs: it still runs
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=300)  # an upper bound for a loaded machine, not a wait
    out = "".join(before) + rest
    assert proc.returncode == 130, out
    interrupted = next(line for line in before if "epoch 2/2000" in line).split("optimizer=")[1].split(":")[0]
    assert "interrupted" in out
    assert (
        "resume it: python -m sweeper -m optimizer=adam,sgd,momentum" in out and "hydra.sweep.dir=multirun/fixed" in out
    )
    assert "report what finished: python -m sweeper.report --sweep multirun/fixed" in out

    runs = load_runs(tracking_uri=uri)
    assert list(runs.status) == ["KILLED"] and runs.optimizer[0] == interrupted
    assert "KeyboardInterrupt" in runs.failure_reason[0]
    curves = load_history(runs.run_id, tracking_uri=uri)
    assert len(curves[curves.metric == "train_loss"]) >= 1  # epochs that finished were flushed
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("sweeper").experiment_id], "tags.sweeper_role = 'sweep'"
    )
    assert parent.info.status == "KILLED" and runs.parent_run_id[0] == parent.info.run_id  # not left RUNNING


def test_kill_9_then_rerun_closes_the_stale_run_and_runs_only_the_missing_trials(tmp_path, _mlflow_template):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start(tmp_path, _mlflow_template, *SWEEP)
    wait_for_running_trial(uri, finished_before=1)  # kill at once: a short trial may end soon
    proc.kill()  # SIGKILL: no handler runs, the MLflow run stays RUNNING
    proc.wait(timeout=30)
    before = load_runs(tracking_uri=uri)
    finished_before = set(before[before.status == "FINISHED"].optimizer)
    running = before[before.status == "RUNNING"]
    assert len(running) == 1 and len(finished_before) >= 1
    killed = str(running.optimizer.iloc[0])
    assert killed not in finished_before

    rerun = start(tmp_path, _mlflow_template, *SWEEP)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    for optimizer in finished_before:
        assert f"optimizer={optimizer}: already finished" in out

    runs = load_runs(tracking_uri=uri)
    finished = runs[runs.status == "FINISHED"]
    assert sorted(finished.optimizer) == ["adam", "momentum", "sgd"]  # each exactly once: no duplicates
    assert list(runs[runs.status == "KILLED"].optimizer) == [killed]  # the stale run, closed on resume
    assert not (runs.status == "RUNNING").any()
    assert runs.sweep_id.nunique() == 1


SEARCH = [
    "-m",
    "search=lr",
    "hydra.sweeper.study_name=shared",
    "hydra.sweeper.seed=0",
    "data=synthetic",
    "model=mlp",
    "measure.latency_seconds=0.01",
    "hydra.sweeper.stale_after=10",
]


def study_trials(tmp_path: Path) -> list:
    import optuna

    from sweeper.search.study import open_storage

    study = optuna.load_study(study_name="shared", storage=open_storage(str(tmp_path / "optuna.journal")))
    return study.get_trials(deepcopy=False)


def check_exactly_once(tmp_path: Path, uri: str, n_trials: int) -> None:
    """n_trials COMPLETE trials, each with exactly one FINISHED MLflow run, cross-referenced."""
    complete = [t for t in study_trials(tmp_path) if t.state.name == "COMPLETE"]
    assert len(complete) == n_trials
    runs = load_runs(sweep_id="shared", tracking_uri=uri)
    finished = runs[runs.status == "FINISHED"]
    assert sorted(finished.optuna_trial.astype(int)) == sorted(t.number for t in complete)  # no duplicates
    assert set(finished.run_id) == {t.user_attrs["mlflow_run_id"] for t in complete}
    assert not (runs.status == "RUNNING").any()


def test_four_workers_on_one_study_complete_exactly_n_trials(tmp_path, _mlflow_template):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    workers = [
        start(
            tmp_path, _mlflow_template, *SEARCH, "hydra.sweeper.n_trials=6", "data.n_samples=300", "strategy.epochs=2"
        )
        for _ in range(4)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for worker, out in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, out
    check_exactly_once(tmp_path, uri, 6)
    failed = [t for t in study_trials(tmp_path) if t.state.name == "FAIL"]
    # the only failures allowed: trials asked in a race for the last slot, closed without running
    assert [t.number for t in failed if not t.user_attrs.get("surplus") or "mlflow_run_id" in t.user_attrs] == []


def kill_outside_journal_append(proc: subprocess.Popen[str], journal: Path, patience: float = 30) -> None:
    """SIGKILL ``proc`` at a moment when it holds no lock on the Optuna ``journal``.

    A process killed inside an append (each epoch's report, each heartbeat) leaves Optuna's lock
    file ``<journal>.lock``, which the next writer breaks only after Optuna's own 30 s grace period:
    a kill at a random moment would cost those 30 s at random. Stopped (SIGSTOP, no handler runs)
    the process cannot take the lock; it is killed when it holds none, else resumed and tried again.
    """
    lock = journal.with_name(f"{journal.name}.lock")
    deadline = time.monotonic() + patience
    while True:
        proc.send_signal(signal.SIGSTOP)
        _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once it is stopped
        assert os.WIFSTOPPED(status), f"the search ended before it was killed: status {status}"
        if not os.path.lexists(lock) or time.monotonic() > deadline:
            proc.kill()  # SIGKILL: no handler runs, the trial stays RUNNING in the study
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)


def test_a_search_killed_with_kill_9_resumes_to_exactly_n_trials(tmp_path, _mlflow_template):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*SEARCH, "hydra.sweeper.n_trials=3", "data.n_samples=3000", "strategy.epochs=30"]
    proc = start(tmp_path, _mlflow_template, *args)
    wait_for_running_trial(uri, finished_before=1)
    kill_outside_journal_append(proc, tmp_path / "optuna.journal")
    proc.wait(timeout=30)
    running = [t for t in study_trials(tmp_path) if t.state.name == "RUNNING"]
    assert len(running) == 1  # left behind by the killed worker

    rerun = start(tmp_path, _mlflow_template, *args)  # waits out the dead trial's heartbeat grace period
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    stale = next(t for t in study_trials(tmp_path) if t.number == running[0].number)
    assert stale.state.name == "FAIL" and "heartbeats" in stale.user_attrs["failure_reason"]
    runs = load_runs(sweep_id="shared", tracking_uri=uri)
    assert runs.set_index("run_id").loc[stale.user_attrs["mlflow_run_id"], "status"] == "KILLED"
    check_exactly_once(tmp_path, uri, 3)
