"""The choice in full: the budget, the recommendation's comparisons with their statistics."""

from __future__ import annotations

from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Block, Section

__all__ = ["build"]


def build(inputs: ReportInputs) -> Section | None:
    """The recommendation sentence with every number behind it (None when nothing finished)."""
    rec = inputs.recommendation
    if inputs.ranked.empty:
        return None
    blocks: list[Block] = [f"Budget: {rec.budget.describe()} (applied to means over seeds)."]
    if rec.best is not None:
        blocks.append(rec.sentence)
        blocks.append(f"{len(rec.feasible)} of {len(inputs.ranked)} configurations are within the budget.")
    return Section("The choice in detail", blocks)
