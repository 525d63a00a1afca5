"""The report's sections, in the order a reader meets them: one module each, one ``build(inputs)``.

Each module's ``build(inputs: ReportInputs) -> Section | None`` returns its section, or ``None``
when the sweep did not vary what the section is about (no optimizer section when one optimizer
at one learning rate ran). :data:`SECTIONS` is the one list; Markdown, HTML and the MLflow
description are rendered from what it builds (:mod:`sweeper.report.render`).
"""

from __future__ import annotations

from sweeper.report.sections.registry import SECTIONS, SUMMARY, build_sections

__all__ = ["SECTIONS", "SUMMARY", "build_sections"]
