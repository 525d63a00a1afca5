"""The answer card: what to choose for the budget, by how much it wins or what it costs, how sure that is,
and the one warning that matters most, in one short paragraph."""

from __future__ import annotations

import re

import pandas as pd

from sweeper.report.families import UNCOMPRESSED
from sweeper.report.grouping import compare_configs
from sweeper.report.inputs import ReportInputs
from sweeper.report.recommend import counterpart, latency_words, size_words
from sweeper.report.render import Section
from sweeper.report.stats import Comparison, score_label

__all__ = ["TITLE", "build", "card"]

TITLE = "Answer"


def _versus(inputs: ReportInputs, best: str, other: str) -> Comparison:
    """``best`` against ``other`` as the recommendation tested it (Holm over its comparisons)."""
    rec = inputs.recommendation
    if (best, other) in rec.comparisons:
        return rec.comparisons[best, other]
    if (other, best) in rec.comparisons:
        return rec.comparisons[other, best].flipped()
    return compare_configs(inputs.table, best, other)


def _score(row: pd.Series) -> str:
    """``96.4 % [95.1, 97.7]`` over seeds, ``96.4 % (1 seed)``."""
    if row["n_seeds"] < 2 or pd.isna(row["score_low"]):
        return f"{100 * row['score_mean']:.1f} % (1 seed)"
    return f"{100 * row['score_mean']:.1f} % [{100 * row['score_low']:.1f}, {100 * row['score_high']:.1f}]"


def card(inputs: ReportInputs) -> str:
    """The answer in a few sentences (Markdown)."""
    rec, table = inputs.recommendation, inputs.table
    if inputs.ranked.empty:
        return "**No run finished**: nothing to rank or recommend. The failures are listed below."
    if rec.best is None:
        return rec.sentence
    row = table.loc[rec.best]
    within = f"within the budget ({inputs.budget.describe()})" if inputs.budget.describe() != "no budget" else ""
    text = (
        f"Choose **{rec.best}**: the best validation {score_label()} {within or 'of the sweep (no budget set)'}; "
        f"test {score_label()} {_score(row)}, {row['size_bytes'] / 1024:.1f} KiB, "
        f"{row['latency_ms']:.3f} ms per sample at batch 1."
    )
    other = counterpart(table, rec)
    if other is None:
        text += " It is the only configuration " + ("within the budget." if within else "that finished.")
    else:
        versus, theirs = _versus(inputs, rec.best, other), table.loc[other]
        compressed = row["compression"] != UNCOMPRESSED and theirs["compression"] == UNCOMPRESSED
        role = "the uncompressed" if compressed else "the runner-up"
        speed = latency_words(row, theirs)
        costs = (
            "the same architecture and size (same speed)"
            if speed.endswith("(the same network)")
            else ", ".join(p for p in (size_words(row, theirs), speed + " at batch 1") if p)
        )
        if row["latency_kind"] == "simulated" and row["compression"] != theirs["compression"]:
            costs += " (simulated: its kernels are dense, so no speed-up is real)"
        text += (
            f" Against {role} `{other}`: {costs}, test {score_label()} {versus.difference()}: **{versus.certainty()}**."
        )
    if inputs.warnings:
        first, more = inputs.warnings[0], len(inputs.warnings) - 1
        sentence = re.split(r"\. |: ", first.text, maxsplit=1)[0].rstrip(".")
        text += f" **Warning ({first.title.lower()})**: {sentence}" + (f" ({more} more below)." if more else ".")
    return text


def build(inputs: ReportInputs) -> Section:
    """The first section: the answer card."""
    return Section(TITLE, [card(inputs)])
