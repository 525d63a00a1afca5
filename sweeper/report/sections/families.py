"""Each compression family's best configuration against the uncompressed network, when compression varied."""

from __future__ import annotations

import pandas as pd

from sweeper.report import analysis
from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Section, Table
from sweeper.report.stats import score_label
from sweeper.report.text import num, verdict

__all__ = ["build"]


def build(inputs: ReportInputs) -> Section | None:
    """One row per family (None unless the sweep has `compression=none` and another method)."""
    if not inputs.varied("compression"):
        return None
    summary = analysis.family_summary(inputs.table)
    if summary.empty:
        return None
    rows = [
        {
            "family": r["family"],
            "methods": r["methods"],
            "configs": r["configs"],
            "best configuration": r["best"],
            "against": r["uncompressed"],
            "x smaller": f"{r['size_ratio']:.2f}",
            "batch-1 latency (x, >1 slower)": f"{r['latency_ratio']:.2f}"
            + (" (simulated)" if r["latency_kind"] == "simulated" else ""),
            f"test {score_label()} Δ": verdict(r["comparison"], ""),
            "epochs in all": f"{num(r['epochs'], '.0f')} vs {num(r['uncompressed_epochs'], '.0f')}"
            + (" (more training)" if r["epochs"] > r["uncompressed_epochs"] else ""),
        }
        for _, r in summary.iterrows()
    ]
    caption = (
        f"Each family's configuration with the best validation {score_label()} against the uncompressed `none` "
        "trained the same way (data, model, optimizer, strategy, lr); Holm over the families; epochs in all "
        "show whether both had the same training (`compare.equal_budget=true` gives `none` the extra epochs)"
    )
    return Section("Compression families against none", [Table(pd.DataFrame(rows), caption)])
