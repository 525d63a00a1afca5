"""Optimizers compared DeepOBS-style, when the sweep varied the optimizer or its learning rate: each one's
learning rate selected on validation, its test score, speed, tunability, and the learning-rate curve."""

from __future__ import annotations

import pandas as pd

from sweeper.report import analysis, plots
from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Image, Section, Table
from sweeper.report.sections._training import append_curves, best_of
from sweeper.report.stats import score_label
from sweeper.report.text import num

__all__ = ["build"]


def build(inputs: ReportInputs) -> Section | None:
    """The optimizer table, the learning-rate sensitivity (when an optimizer ran at two or more learning
    rates) and the learning curves (None unless optimizers or learning rates varied)."""
    if not inputs.varied("optimizer") or inputs.ranked.empty:
        return None
    section = Section("Optimizer comparison")
    chosen, which = analysis.training_runs(inputs.runs)
    target = analysis.target_accuracy(chosen)
    summary = analysis.optimizer_summary(chosen, inputs.table, inputs.history, target)
    section.blocks.append(
        f"From {which}. Each optimizer's learning rate is selected on validation {score_label()}. Epochs to "
        f"target: until validation {score_label()} first reaches {100 * target:.1f} % (90 % of the sweep's best), "
        "median over seeds."
    )
    first = summary["optimizer"].iloc[0] if len(summary) else ""
    rows = [
        {
            **best_of(r, "optimizer", first),
            "lr": num(r["lr"], ".3g"),
            "epochs to target": num(r["epochs_to_target"], ".0f") + f" ({r['reached']} seeds reached)",
            "tunability": f"{100 * r['tunability']:.0f} % of {r['lrs_tried']} lr" if r["lrs_tried"] else "—",
        }
        for _, r in summary.iterrows()
    ]
    if rows:
        section.blocks.append(Table(pd.DataFrame(rows), "Optimizers, DeepOBS-style"))
    sensitivity = analysis.lr_sensitivity(chosen)
    if len(sensitivity) and sensitivity.groupby("optimizer")["lr"].nunique().max() >= 2:
        section.blocks.append(
            Image(
                plots.plot_lr_sensitivity(sensitivity, inputs.out / "lr_sensitivity.png"),
                f"Validation {score_label()} (what selects the lr) against learning rate, one curve per "
                "optimizer, 95 % t-intervals over seeds",
            )
        )
    append_curves(section, chosen, inputs.history, summary, "optimizer", inputs.out / "optimizer_curves.png")
    return section
