"""Small formatters shared by the report's sections: numbers, means with intervals, verdict cells."""

from __future__ import annotations

import pandas as pd

from sweeper.report.stats import Comparison, score_label

__all__ = ["ci", "num", "score_header", "test_score_cell", "verdict"]


def num(value: float, fmt: str) -> str:
    """``value`` formatted, or ``—`` when missing."""
    return "—" if pd.isna(value) else format(value, fmt)


def ci(mean: float, low: float, high: float, scale: float = 100.0, digits: int = 1) -> str:
    """``91.0 [88.5, 93.5]`` (mean and its 95 % interval), or ``91.0 (1 seed)`` without an interval.

    Example:
        >>> ci(0.91, 0.885, 0.935), ci(0.91, float("nan"), float("nan"))
        ('91.0 [88.5, 93.5]', '91.0 (1 seed)')
    """
    if pd.isna(mean):
        return "—"
    if pd.isna(low):
        return f"{scale * mean:.{digits}f} (1 seed)"
    return f"{scale * mean:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def score_header() -> str:
    """The column of a test score with its interval, named by the task's metric."""
    return f"test {score_label()} (%) [95 % CI]"


def test_score_cell(row: pd.Series) -> str:
    """A configuration's mean test score over seeds and its 95 % interval."""
    return ci(row["score_mean"], row["score_low"] if row["n_seeds"] > 1 else float("nan"), row["score_high"])


def verdict(comparison: Comparison | None, reference: str = "—") -> str:
    """A table cell comparing a row with its reference row (``reference`` for the reference itself)."""
    return reference if comparison is None else comparison.short()
