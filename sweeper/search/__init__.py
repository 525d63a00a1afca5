"""Optuna search: search spaces, objectives and budgets, and the seam to a running trial.

The Hydra sweeper itself is the plug-in ``hydra_plugins.sweeper_optuna`` (``hydra/sweeper=optuna``).
"""

from sweeper.search.objectives import Constraint, parse_constraints, parse_objectives
from sweeper.search.space import Condition, Param, SearchSpace, parse_space

__all__ = ["Condition", "Constraint", "Param", "SearchSpace", "parse_constraints", "parse_objectives", "parse_space"]
