"""Test score against compression ratio, one curve per family, and families at matched ratios,
when the sweep varied a compression strength."""

from __future__ import annotations

import pandas as pd

from sweeper.report import analysis, plots
from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Image, Section, Table
from sweeper.report.stats import score_label, score_title

__all__ = ["build"]


def build(inputs: ReportInputs) -> Section | None:
    """The curves and the matched-ratio table (None unless a strength varied)."""
    curves = analysis.ratio_curves(inputs.table)
    if curves.empty:
        return None
    section = Section(f"{score_title()} against compression ratio")
    section.blocks.append(
        Image(
            plots.plot_ratio_curves(curves, inputs.table, inputs.out / "accuracy_vs_ratio.png"),
            f"Test {score_label()} (mean, 95 % t-interval over seeds) against compression ratio, one "
            "curve per family; the star: the uncompressed `none`",
        )
    )
    matched = analysis.matched_ratios(curves)
    if matched.empty:
        section.blocks.append("No two families reach overlapping compression ratios: no matched comparison.")
        return section
    rows = [
        {
            "family A": r["family_a"],
            "family B": r["family_b"],
            "compression ratio": f"{r['ratio']:.2f}x",
            f"test {score_label()} A (%)": f"{100 * r['score_a']:.1f}",
            f"test {score_label()} B (%)": f"{100 * r['score_b']:.1f}",
            "A - B (pp)": f"{r['delta_pp']:+.1f}",
        }
        for _, r in matched.iterrows()
    ]
    caption = (
        f"Families at matched compression ratios: each family's curve of mean test {score_label()} interpolated "
        "linearly in log ratio, within the range both reach (no extrapolation)"
    )
    section.blocks.append(Table(pd.DataFrame(rows), caption))
    return section
