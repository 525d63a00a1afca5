"""The one list of the report's sections, in order, and the function that builds them."""

from __future__ import annotations

from collections.abc import Callable

from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Section
from sweeper.report.sections import (
    answer,
    choice,
    failures,
    families,
    front,
    glossary,
    layers,
    optimizers,
    ranking,
    ratios,
    runtimes,
    strategies,
    sweep,
    warnings,
)

__all__ = ["SECTIONS", "SUMMARY", "build_sections"]

Builder = Callable[[ReportInputs], "Section | None"]

SECTIONS: tuple[Builder, ...] = (
    answer.build,
    warnings.build,
    sweep.build,
    choice.build,
    ranking.build,
    front.build,
    families.build,
    ratios.build,
    layers.build,
    runtimes.build,
    optimizers.build,
    strategies.build,
    failures.build,
    glossary.build,
)
SUMMARY = (answer.TITLE, warnings.TITLE)  # the sections the MLflow description holds


def build_sections(inputs: ReportInputs) -> list[Section]:
    """Every section that applies to this sweep, in order (also kept in ``inputs.written``)."""
    inputs.written.clear()
    for builder in SECTIONS:
        section = builder(inputs)
        if section is not None:
            inputs.written.append(section)
    return list(inputs.written)
