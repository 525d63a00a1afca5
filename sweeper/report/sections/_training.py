"""What the optimizer and strategy sections share: a summary row's leading cells, learning curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sweeper.report import analysis, plots
from sweeper.report.render import Image, Section
from sweeper.report.text import score_header, test_score_cell, verdict

__all__ = ["append_curves", "best_of"]


def best_of(row: pd.Series, group: str, first: str) -> dict[str, object]:
    """The leading cells of a per-optimizer / per-strategy row: its best configuration and its score."""
    return {
        group: row[group],
        "best configuration": row["best"],
        score_header(): test_score_cell(row),
        "seeds": int(row["n_seeds"]),
        f"vs {first}": verdict(row["comparison"]),
    }


def append_curves(
    section: Section, chosen: pd.DataFrame, history: pd.DataFrame, summary: pd.DataFrame, group: str, path: Path
) -> None:
    """The learning curves of each ``group`` option's best configuration (mean ± std over seeds), if any."""
    curves = analysis.learning_curves(
        chosen, history, dict(zip(summary.get(group, []), summary.get("best", []), strict=True))
    )
    if len(curves):
        title = f"Learning curves: each {group}'s best configuration"
        section.blocks.append(
            Image(plots.plot_curves(curves, title, group, path), f"Learning curves per {group} (mean ± std over seeds)")
        )
