"""The warnings, right after the answer: each check of :mod:`sweeper.report.checks` that fired."""

from __future__ import annotations

from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Bullets, Section

__all__ = ["TITLE", "build"]

TITLE = "Warnings"


def build(inputs: ReportInputs) -> Section | None:
    """A list of the warnings, most important first; None when there is none."""
    if not inputs.warnings:
        return None
    return Section(TITLE, [Bullets([w.markdown() for w in inputs.warnings])])
