"""The report of a sweep: the answer for a budget, its warnings, the ranking, the Pareto front, plots.

``python -m sweeper.report`` writes it for a sweep in MLflow; every multirun writes it at
its end through :class:`sweeper.report.callback.ReportCallback`. :mod:`sweeper.report.build`
orchestrates; each section is a module of :mod:`sweeper.report.sections`, registered in one list.
Heavy imports (pandas, matplotlib, MLflow) happen inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

__all__ = ["Budget", "generate", "write_report"]

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeper.report.build import generate, write_report
    from sweeper.report.recommend import Budget


def __getattr__(name: str) -> Any:
    if name == "Budget":
        from sweeper.report.recommend import Budget

        return Budget
    if name in ("generate", "write_report"):
        from sweeper.report import build

        return getattr(build, name)
    raise AttributeError(name)
