"""The runs left out of the ranking, with the reason each failed or was pruned."""

from __future__ import annotations

import pandas as pd

from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Section, Table

__all__ = ["TITLE", "build"]

TITLE = "Failed and pruned runs"


def build(inputs: ReportInputs) -> Section | None:
    """One row per failed or pruned run (None when every run finished)."""
    runs = inputs.runs
    bad = runs[runs["outcome"] != "ok"]
    if bad.empty:
        return None
    frame = pd.DataFrame(
        {
            "run": bad["run_name"],
            "configuration": bad["config"],
            "seed": bad["seed"],
            "status": bad["status"],
            "outcome": bad["outcome"],
            "reason": bad["reason"].str.slice(0, 200),
        }
    )
    return Section(TITLE, [f"{len(bad)} of {len(runs)} runs are left out of the ranking.", Table(frame)])
