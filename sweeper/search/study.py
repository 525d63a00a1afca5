"""Building the Optuna pieces from plain config values: sampler, pruner, storage, study name."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from sweeper.errors import ConfigError

if TYPE_CHECKING:
    from sweeper.search.space import SearchSpace

__all__ = ["PRUNERS", "SAMPLERS", "build_pruner", "build_sampler", "default_study_name", "open_storage"]

SAMPLERS = ("tpe", "random", "grid", "nsgaii", "nsgaiii", "cmaes", "gp", "qmc")
PRUNERS = ("none", "median", "percentile", "hyperband", "successive_halving")
_SAMPLER_CLASSES = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "nsgaii": "NSGAIISampler",
    "nsgaiii": "NSGAIIISampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
}
_SAMPLER_PACKAGES = {"cmaes": "cmaes", "gp": "scipy", "qmc": "scipy"}  # optional packages Optuna imports late
_PRUNER_CLASSES = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
}
_PRUNER_DEFAULTS: dict[str, dict[str, Any]] = {"percentile": {"percentile": 25.0}}


class AskTellGridSampler(optuna.samplers.GridSampler):
    """``GridSampler`` for ask-and-tell: the sweep stops at the grid's size itself.

    Optuna's version calls ``study.stop()`` after the last point, which only works inside
    ``study.optimize``.
    """

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        pass


def build_sampler(
    name: str, *, seed: int | None = None, options: Mapping[str, Any] | None = None, space: SearchSpace | None = None
) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by short name, seeded; ``options`` are its keyword arguments.

    Raises:
        ConfigError: an unknown name, a bad option, or a missing optional package.
    """
    if name not in _SAMPLER_CLASSES:
        raise ConfigError(f"hydra.sweeper.sampler={name}: unknown sampler; allowed: {', '.join(SAMPLERS)}")
    package = _SAMPLER_PACKAGES.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(f"hydra.sweeper.sampler={name}: needs the package {package} (pip install {package})")
    kwargs = dict(options or {})
    if name == "grid":
        assert space is not None, "the grid sampler needs the search space"
        kwargs.setdefault("search_space", space.grid())
    cls = AskTellGridSampler if name == "grid" else getattr(optuna.samplers, _SAMPLER_CLASSES[name])
    try:
        return cls(seed=seed, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hydra.sweeper.sampler_options: {' '.join(str(exc).split())}") from exc


def build_pruner(name: str, options: Mapping[str, Any] | None = None) -> optuna.pruners.BasePruner:
    """An Optuna pruner by short name; ``options`` are its keyword arguments.

    Raises:
        ConfigError: an unknown name or a bad option.
    """
    if name not in _PRUNER_CLASSES:
        raise ConfigError(f"hydra.sweeper.pruner={name}: unknown pruner; allowed: {', '.join(PRUNERS)}")
    kwargs = {**_PRUNER_DEFAULTS.get(name, {}), **(options or {})}
    try:
        return getattr(optuna.pruners, _PRUNER_CLASSES[name])(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hydra.sweeper.pruner_options: {' '.join(str(exc).split())}") from exc


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """Optuna storage for ``spec``: a database URL (``sqlite:///x.db``, ``postgresql://...``),
    ``journal:///path`` or a path ending in ``.journal`` (a journal file), or a ``.db`` path (SQLite)."""
    if spec.startswith("journal://"):
        spec = spec.removeprefix("journal://")
    elif "://" in spec:
        return _rdb_storage(spec)
    path = Path(spec).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return optuna.storages.RDBStorage(f"sqlite:///{path}")
    return JournalStorage(JournalFileBackend(str(path)))


def _rdb_storage(url: str, patience: float = 60.0) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)``, retried while workers starting together race to create the schema.

    On a fresh database each process runs ``CREATE TABLE/TYPE``; all but one fail with a
    duplicate-object error, and succeed once the schema is complete.
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    deadline = time.monotonic() + patience
    while True:
        try:
            return optuna.storages.RDBStorage(url)
        except (IntegrityError, ProgrammingError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def default_study_name(prefix: str, defining: Sequence[Any]) -> str:
    """``<prefix>-<8 hex>``: the same search (space, fixed overrides, objectives) gives the same name."""
    digest = hashlib.sha1(json.dumps(list(defining), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{prefix}-{digest}"
