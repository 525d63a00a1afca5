"""Markdown and self-contained HTML from one list of sections (text, tables, images).

Text blocks use a tiny subset of Markdown (``**bold**``, ```code```); HTML embeds every
PNG as base64, so ``report.html`` can be mailed or logged as a single file.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["Image", "Section", "Table", "render_html", "render_markdown"]


@dataclass
class Table:
    """A table of already formatted cells."""

    frame: pd.DataFrame
    caption: str = ""


@dataclass
class Image:
    """A PNG file next to the report."""

    path: Path
    caption: str


@dataclass
class Section:
    """A titled part of the report: paragraphs (str), tables and images, in order."""

    title: str
    blocks: list[str | Table | Image] = field(default_factory=list)


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    frame = table.frame
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(_md_cell(c) for c in frame.columns) + " |")
    lines.append("|" + "|".join("---" for _ in frame.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _blocks(
    sections: list[Section],
    heading: Callable[[str], str],
    table: Callable[[Table], str],
    image: Callable[[Image], str],
    text: Callable[[str], str],
) -> list[str]:
    """Each section's heading, then its blocks, each rendered by the function for its kind."""
    parts = []
    for section in sections:
        parts.append(heading(section.title))
        for block in section.blocks:
            parts.append(
                table(block) if isinstance(block, Table) else image(block) if isinstance(block, Image) else text(block)
            )
    return parts


def render_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown; images are linked by file name (they sit next to it)."""
    body = _blocks(
        sections,
        lambda t: f"## {t}",
        _md_table,
        lambda i: f"![{i.caption}]({i.path.name})\n\n*{i.caption}*",
        lambda text: text,
    )
    return "\n\n".join([f"# {title}", *body]) + "\n"


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; max-width: 1150px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .88em; }
th, td { border: 1px solid #ccc; padding: .3em .55em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; white-space: nowrap; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-style: italic; color: #555; } code { background: #f5f5f5; padding: 0 .2em; }
"""


_NUMBER = re.compile(r"^[-+#]?[\d.,]+(x| %)?( ± [\d.,]+| \[[-+\d.]+, [-+\d.]+\])?( \(.*\))?$|^—$")


def _html_table(table: Table) -> str:
    """A plain HTML table; cells that read as numbers are right-aligned."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.frame.columns)
    rows = []
    for row in table.frame.itertuples(index=False):
        cells = [str(v) for v in row]
        rows.append(
            "<tr>"
            + "".join(
                f'<td class="num">{html.escape(v)}</td>' if _NUMBER.match(v) else f"<td>{html.escape(v)}</td>"
                for v in cells
            )
            + "</tr>"
        )
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html_image(image: Image) -> str:
    data = base64.b64encode(image.path.read_bytes()).decode("ascii")
    caption = html.escape(image.caption)
    image_tag = f'<img alt="{caption}" src="data:image/png;base64,{data}">'
    return f"<figure>{image_tag}<figcaption>{caption}</figcaption></figure>"


def render_html(title: str, sections: list[Section]) -> str:
    """The report as one self-contained HTML page (CSS inline, PNGs embedded as base64)."""
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += _blocks(
        sections,
        lambda t: f"<h2>{html.escape(t)}</h2>",
        _html_table,
        _html_image,
        lambda text: f"<p>{_inline(text)}</p>",
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
