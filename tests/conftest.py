"""Shared fixtures: configs composed once and shrunk per test, a template MLflow store, the CLI."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

if TYPE_CHECKING:
    import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]

# Small budgets for tests: a few epochs, short latency timing. Tests override what they need.
NO_REPORT = "hydra.callbacks.report.enabled=false"
FAST = ["strategy.epochs=3", "measure.latency_seconds=0.01", "measure.latency_batch=32"]
# A whole sweep's task in seconds: 300 generated samples, an MLP, 2 epochs, short timing.
TINY_TASK = ["data=synthetic", "data.n_samples=300", "model=mlp", "strategy.epochs=2", "measure.latency_seconds=0.01"]


ZOO_CONF = REPO_ROOT / "tests" / "zoo_conf"
# a GGUF checkpoint's float weights and tokenizer, converted once per machine: the tests that plan
# experiment=llm in the repository (tests/test_conf.py) and those that run it in a temporary directory share it
CHECKPOINT_CACHE = REPO_ROOT / ".sweeper_cache" / "checkpoints"


def run_if(*, min_gpus: int = 0) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``@run_if(min_gpus=1)``: the test needs that many CUDA devices; marked ``gpu`` and skipped without them."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        test = pytest.mark.skipif(count < min_gpus, reason=f"needs {min_gpus} CUDA device(s), {count} here")(test)
        return pytest.mark.gpu(test) if min_gpus else test

    return decorate


@functools.cache
def _base_cache() -> Path:
    """This test process's cache of trained base networks (its trials share them; other processes do not)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix="sweeper-bases-"))


def compose_config(
    *overrides: str, fast: bool = True, tracking: bool = False, zoo: bool = False, hydra: bool = False
) -> DictConfig:
    """The one way tests compose a config: conf/ plus ``overrides``, as the command line would.

    ``fast``: FAST budgets first (the overrides win); ``tracking``: keep MLflow tracking on;
    ``zoo``: the zoo's model options on the search path; ``hydra``: keep the ``hydra`` node
    (its ``runtime.choices``, ``sweeper``, ``launcher``).
    """
    prefix = [
        f"base.cache_dir={_base_cache()}",  # in-process trials of one test process share their trained bases
        *([f"hydra.searchpath=[file://{ZOO_CONF}]"] if zoo else []),
        *(FAST if fast else []),
        *([] if tracking else ["tracking.enabled=false"]),
    ]
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        return compose("config", overrides=[*prefix, *overrides], return_hydra_config=hydra)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread, as a trial runs (``threads: 1``): each test worker has a core of its own."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """``make_cfg("optimizer=sgd", ...)`` -> :func:`compose_config` (tracking off, FAST budgets)."""
    return compose_config


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store created once (schema creation costs seconds), copied per test."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, _mlflow_template: Path) -> str:
    """A fresh, empty MLflow store for this test (a copy of the session template)."""
    target = tmp_path / "mlflow.db"
    shutil.copy(_mlflow_template, target)
    return f"sqlite:///{target}"


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a ``python -m sweeper`` subprocess that imports this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["CI"] = "true"
    env.update(extra)
    return env


def argv(line: str) -> list[str]:
    """A command line's words as a shell splits them: ``run_cli(*argv("-m optimizer=adam,sgd seed=0,1"))``."""
    return shlex.split(line)


def sweeper_cli(
    cwd: Path,
    template: Path,
    *args: str,
    report: bool = False,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    module: str = "sweeper",
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sweeper ARGS`` (or ``-m <module>``) in ``cwd`` (its own mlflow.db, from ``template``).

    The end-of-multirun report is off unless ``report`` (tests/e2e/test_report_sweep.py covers it).
    """
    if not (cwd / "mlflow.db").exists():
        shutil.copy(template, cwd / "mlflow.db")
    return subprocess.run(
        [sys.executable, "-m", module, *args, *([] if report else [NO_REPORT])],
        cwd=cwd,
        env=cli_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def run_cli(tmp_path: Path, _mlflow_template: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """:func:`sweeper_cli` in ``tmp_path``: ``run_cli("-m", "optimizer=adam,sgd", report=True)``."""
    return functools.partial(sweeper_cli, tmp_path, _mlflow_template)


# --- the report: synthetic runs shaped like load_runs output, and one tiny real sweep ---

_METRIC_DEFAULTS = {
    "test_score": 0.9,
    "val_score": 0.9,
    "best_val_score": 0.9,
    "size_bytes": 40_000.0,
    "compression_ratio": 1.0,
    "latency_ms": 0.2,
    "latency_iqr_ms": 0.01,
    "latency_ms_batch": 0.01,
    "params": 10_000.0,
    "nonzero_params": 10_000.0,
    "train_seconds": 1.0,
    "compress_seconds": 0.0,
    "epochs_run": 10.0,
    "steps": 100.0,
}


@pytest.fixture
def make_runs() -> Callable[..., pd.DataFrame]:
    """``make_runs(dict(optimizer="sgd", seed=1, test_score=0.8), ...)`` -> a ``load_runs``-shaped frame.

    Each dict overrides the defaults of one run (adam, none, default strategy, lr 0.003,
    FINISHED, every metric present); ``None`` for a metric leaves it missing (NaN).
    ``val_score`` defaults to the run's ``test_score`` (selection then agrees with test).
    """
    import pandas as pd

    from sweeper.trial.plan import compression_options

    def make(*specs: dict) -> pd.DataFrame:
        rows = []
        for i, spec in enumerate(specs):
            row = {
                "run_id": f"run{i}",
                "run_name": f"trial {i}",
                "status": "FINISHED",
                "start_time": i,
                "data": "synthetic",
                "model": "mlp",
                "optimizer": "adam",
                "strategy": "default",
                "compression": "none",
                "seed": 0,
                "lr": 0.003,
                "batch_size": 64,
                "epochs": 10,
                "sweep_id": "multirun/test",
                "job": str(i),
                "latency_kind": "real",
                "failure_reason": None,
                "optuna_state": None,
                **_METRIC_DEFAULTS,
                **spec,
            }
            if "val_score" not in spec and spec.get("test_score") is not None:
                row["val_score"] = spec["test_score"]
            if "family" not in spec:  # the tag every trial carries: the family its method declares
                known = compression_options().get(str(row["compression"]))
                row["family"] = known.family if known is not None else None
            row["optimizer.lr"] = row["lr"]
            row["strategy.epochs"] = row["epochs"]
            row["compression._target_"] = f"sweeper.compression.{row['compression']}"
            row["measure.latency_batch"] = 256
            row["tracking.uri"] = "None"
            rows.append(row)
        return pd.DataFrame(rows).astype({m: float for m in _METRIC_DEFAULTS})

    return make


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory, _mlflow_template: Path) -> tuple[Path, str]:
    """One real grid multirun (2 optimizers x 2 seeds, tiny budgets), run once: (its cwd, tracking URI).

    Its recommended model is registered (``report.register=true``); what it printed is kept in
    ``console.txt`` (stdout and stderr) beside its store.
    """
    cwd = tmp_path_factory.mktemp("tiny-sweep")
    tiny = ["data=synthetic", "data.n_samples=300", "model=mlp", "strategy.epochs=2", "measure.latency_seconds=0.01"]
    proc = sweeper_cli(
        cwd,
        _mlflow_template,
        "-m",
        "optimizer=adam,sgd",
        "seed=0,1",
        *tiny,
        "report.register=true",
        report=True,
        timeout=400,
    )
    (cwd / "console.txt").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, f"sqlite:///{cwd / 'mlflow.db'}"
