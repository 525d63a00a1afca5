"""The sweeper's config, registered as ``hydra/sweeper=optuna``; every field is ``hydra.sweeper.<name>``."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    """Options of the Optuna sweeper (documented in docs/search.md).

    The mappings that no preset sets (objectives, constraints, *_options) are typed ``Any`` with
    ``null`` defaults, so a whole mapping can be given on the command line without ``+``.
    """

    _target_: str = "hydra_plugins.sweeper_optuna.optuna_sweeper.OptunaSweeper"
    # search space: override key -> Hydra sweep (choice, range, interval, tag(log, interval))
    params: dict[str, Any] = field(default_factory=dict)
    # "key=option" -> {override key -> sweep}: sampled only when the choice `key` took `option`
    conditional_params: dict[str, Any] = field(default_factory=dict)
    # metric -> maximize | minimize; null: {val_score: maximize} (the task's metric)
    objectives: Any = None
    # metric -> "<= bound" | ">= bound" | "< bound" | "> bound"
    constraints: Any = None
    n_trials: int | None = (
        None  # complete (or pruned) trials the study should have; null: 20, or no limit with a timeout
    )
    n_jobs: int = 1  # trials asked and launched together (parallel with a parallel launcher)
    sampler: str = "tpe"  # tpe | random | grid | nsgaii | nsgaiii | cmaes | gp | qmc
    seed: int | None = None
    sampler_options: Any = None  # keyword arguments of the sampler
    pruner: str = "none"  # none | median | percentile | hyperband | successive_halving
    pruner_options: Any = None  # keyword arguments of the pruner
    storage: str | None = None  # null: optuna.journal in the working directory; or any Optuna storage URL
    study_name: str | None = None  # null: <search preset>-<hash of the search>
    max_failure_rate: float = 0.5  # stop once more than this fraction of n_trials failed in this run
    timeout: float | None = None  # seconds: no trial starts after this (running ones finish, the report is written)
    stale_after: float = 30.0  # seconds without a heartbeat after which another worker's trial is failed


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="sweeper")
