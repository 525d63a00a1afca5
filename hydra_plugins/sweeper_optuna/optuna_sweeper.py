"""The public sweeper class: a light facade over ``sweeper.search.loop``, where the search lives (loaded on first use)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.sweeper_optuna import config as _config  # noqa: F401  (registers hydra/sweeper=optuna)


class OptunaSweeper(Sweeper):
    """Hydra sweeper running an Optuna 5 study; options in :class:`~.config.OptunaSweeperConf`."""

    def __init__(self, **options: Any) -> None:
        from sweeper.search.loop import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(**options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
