"""What every section of the report is built from: the runs, their configurations, the choice, the warnings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from sweeper.report.grouping import value_key

if TYPE_CHECKING:
    from sweeper.report.checks import ReportWarning
    from sweeper.report.recommend import Budget, Recommendation
    from sweeper.report.render import Section

__all__ = ["ReportInputs", "TableReader"]

TableReader = Callable[[str, str], "pd.DataFrame | None"]  # (run id, table name) -> a table a run's method measured


@dataclass
class ReportInputs:
    """One sweep's report, before it is written: each section reads what it needs from here.

    Attributes:
        runs: the prepared runs (``outcome``, ``reason``, ``config``, ``family`` added).
        table: :func:`sweeper.report.grouping.group_configs` of ``runs``.
        history: per-epoch curves (:func:`sweeper.tracking.results.load_history`; may be empty).
        budget: recommendation: the budget and what it chose.
        warnings: what the reader must know before trusting the answer, most important first.
        out: the report's folder (plots are written there).
        written: the sections built so far, in order (the glossary explains the terms they use).
    """

    runs: pd.DataFrame
    table: pd.DataFrame
    history: pd.DataFrame
    budget: Budget
    recommendation: Recommendation
    warnings: list[ReportWarning]
    out: Path
    sweep_id: str = ""
    experiment: str = ""
    note: str = ""
    read_table: TableReader | None = None
    written: list[Section] = field(default_factory=list)

    @property
    def ranked(self) -> pd.DataFrame:
        """The configurations with at least one finished run, best mean validation score first."""
        return self.table[self.table["score_mean"].notna()]

    def varied(self, group: str) -> bool:
        """Whether the sweep varied the config group ``group`` (its choice, or any ``group.*`` value).

        ``optimizer`` also counts the learning rate (``lr``).
        """
        columns = [c for c in self.runs.columns if c == group or c.startswith(f"{group}.")]
        columns += ["lr"] if group == "optimizer" and "lr" in self.runs else []
        return any(self.runs[c].map(value_key).replace("", pd.NA).nunique() > 1 for c in columns)
