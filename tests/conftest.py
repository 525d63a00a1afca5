"""Shared fixtures: configs composed once and shrunk per test, a template MLflow store, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

# Small budgets for tests: a few epochs, short latency timing. Tests override what they need.
FAST = ["strategy.epochs=3", "measure.latency_seconds=0.01", "measure.latency_batch=32"]


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """``make_cfg("optimizer=sgd", ...)`` -> a composed config with tracking off and FAST budgets."""

    def make(*overrides: str, fast: bool = True) -> DictConfig:
        with initialize_config_module("sweeper.conf", version_base="1.3"):
            return compose("config", overrides=[*(FAST if fast else []), "tracking.enabled=false", *overrides])

    return make


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


@pytest.fixture
def run_cli(tmp_path: Path, _mlflow_template: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m sweeper ARGS`` in ``tmp_path`` (its own mlflow.db); return the finished process."""

    def run(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        if not (tmp_path / "mlflow.db").exists():
            shutil.copy(_mlflow_template, tmp_path / "mlflow.db")
        return subprocess.run(
            [sys.executable, "-m", "sweeper", *args],
            cwd=tmp_path,
            env=cli_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
