"""Training strategies compared, when the sweep varied the strategy or one of its values: each one's
configuration selected on validation, epochs run against planned (early stopping's saving), curves."""

from __future__ import annotations

import pandas as pd

from sweeper.report import analysis
from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Section, Table
from sweeper.report.sections._training import append_curves, best_of
from sweeper.report.stats import score_label
from sweeper.report.text import num

__all__ = ["build"]


def build(inputs: ReportInputs) -> Section | None:
    """The strategy table and learning curves (None unless strategies varied)."""
    if not inputs.varied("strategy") or inputs.ranked.empty:
        return None
    section = Section("Training strategies")
    chosen, which = analysis.training_runs(inputs.runs)
    summary = analysis.strategy_summary(chosen, inputs.table)
    section.blocks.append(
        f"From {which}; each strategy's configuration with the best mean validation {score_label()}. "
        "Saving: the share of planned epochs not run (early stopping)."
    )
    first = summary["strategy"].iloc[0] if len(summary) else ""
    rows = [
        {
            **best_of(r, "strategy", first),
            "epochs run": num(r["epochs_run"], ".1f"),
            "epochs planned": num(r["epochs_planned"], ".0f"),
            "saving": "—" if pd.isna(r["saving"]) else f"{100 * r['saving']:.0f} %",
            "train time (s)": num(r["train_seconds"], ".1f"),
        }
        for _, r in summary.iterrows()
    ]
    if rows:
        section.blocks.append(Table(pd.DataFrame(rows), "Training strategies"))
    append_curves(section, chosen, inputs.history, summary, "strategy", inputs.out / "learning_curves.png")
    return section
