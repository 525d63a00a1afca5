"""Objectives (metric -> direction) and budgets (``size_bytes: "<= 20000"``) from the sweeper config."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sweeper.errors import ConfigError
from sweeper.metrics import SELECTION_METRICS
from sweeper.scoring import METRICS

__all__ = [
    "DIRECTIONS",
    "SEARCHABLE_METRICS",
    "Constraint",
    "check_task_defines",
    "parse_constraints",
    "parse_objectives",
]

DIRECTIONS = ("maximize", "minimize")
# the test split stays out of selection; a task's metrics also go by their own names (val_accuracy)
SEARCHABLE_METRICS = (*SELECTION_METRICS, *(f"val_{name}" for name in METRICS))
_CONSTRAINT = re.compile(r"^\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def _check_metric(key: str, metric: str) -> None:
    if metric.startswith("test_"):
        raise ConfigError(f"{key}: the test split stays out of selection; search on val_{metric[5:]}")
    if metric not in SEARCHABLE_METRICS:
        raise ConfigError(f"{key}: unknown metric {metric!r}; allowed: {', '.join(SEARCHABLE_METRICS)}")


def parse_objectives(objectives: Mapping[str, Any] | None) -> dict[str, str]:
    """``{val_score: maximize, size_bytes: minimize}`` checked; ``None`` -> maximize val_score (the task's metric).

    Raises:
        ConfigError: an unknown metric or direction (the message lists what is allowed).
    """
    result = {}
    for metric, direction in (objectives or {"val_score": "maximize"}).items():
        _check_metric(f"hydra.sweeper.objectives.{metric}", str(metric))
        if str(direction) not in DIRECTIONS:
            raise ConfigError(f"hydra.sweeper.objectives.{metric}={direction}: allowed: {', '.join(DIRECTIONS)}")
        result[str(metric)] = str(direction)
    if not result:
        raise ConfigError("hydra.sweeper.objectives: empty; e.g. {val_score: maximize}")
    return result


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``; :meth:`violation` is <= 0 exactly when it holds (Optuna's convention)."""

    metric: str
    op: str
    bound: float

    def violation(self, value: float) -> float:
        """How far ``value`` is outside the budget (<= 0: feasible). Strict bounds count equality as 0+."""
        excess = value - self.bound if self.op in ("<=", "<") else self.bound - value
        if self.op in ("<", ">") and excess == 0:
            return math.ulp(abs(self.bound)) or 1e-300
        return excess

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_constraints(constraints: Mapping[str, Any] | None) -> list[Constraint]:
    """``{size_bytes: "<= 20000", latency_ms: "<= 0.3"}`` -> constraints.

    Raises:
        ConfigError: an unknown metric or a bound not written ``<=|>=|<|> number``.
    """
    result = []
    for metric, text in (constraints or {}).items():
        key = f"hydra.sweeper.constraints.{metric}"
        _check_metric(key, str(metric))
        match = _CONSTRAINT.match(str(text))
        if match is None:
            raise ConfigError(
                f'{key}={text!r}: write an operator and a number, e.g. "<= 20000"; operators: <=, >=, <, >'
            )
        result.append(Constraint(str(metric), match.group(1), float(match.group(2))))
    return result


def check_task_defines(metrics: tuple[str, ...], task_metrics: tuple[str, ...], task: str) -> None:
    """A search on ``val_<metric>`` needs a task that computes that metric (before any training).

    Example:
        >>> check_task_defines(("val_auc",), ("accuracy",), "digits")
        Traceback (most recent call last):
        sweeper.errors.ConfigError: hydra.sweeper.objectives: val_auc needs metric auc, which task digits does not compute; its metrics: accuracy (or val_score, the task's own)
    """
    for name in metrics:
        metric = name.removeprefix("val_")
        if name.startswith("val_") and metric in METRICS and metric not in task_metrics:
            raise ConfigError(
                f"hydra.sweeper.objectives: {name} needs metric {metric}, which task {task} does not compute; "
                f"its metrics: {', '.join(task_metrics)} (or val_score, the task's own)"
            )


def check_directions(directions: Mapping[str, str], task_metrics: tuple[str, ...], task: str) -> None:
    """An objective on the task's score must go its metric's way: a perplexity is minimized.

    Example:
        >>> check_directions({"val_score": "maximize"}, ("perplexity",), "lm_text")
        Traceback (most recent call last):
        sweeper.errors.ConfigError: hydra.sweeper.objectives: val_score of task lm_text is perplexity, lower is better: set {val_score: minimize}
    """
    for name, direction in directions.items():
        metric = task_metrics[0] if name == "val_score" else name.removeprefix("val_")
        if name.startswith("val_") and metric in METRICS and METRICS[metric].direction != direction:
            way = "higher" if METRICS[metric].higher_is_better else "lower"
            raise ConfigError(
                f"hydra.sweeper.objectives: {name} of task {task} is {metric}, {way} is better: "
                f"set {{{name}: {METRICS[metric].direction}}}"
            )
