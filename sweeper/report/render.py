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

__all__ = [
    "Block",
    "Bullets",
    "Image",
    "Section",
    "Table",
    "markdown_block",
    "render_description",
    "render_html",
    "render_markdown",
]


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
class Bullets:
    """A list of short paragraphs (the warnings)."""

    items: list[str]


Block = str | Table | Image | Bullets


@dataclass
class Section:
    """A titled part of the report: paragraphs (str), tables, images and lists, in order."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def text(self) -> str:
        """Every word of the section (title, paragraphs, table headers and cells, captions), for searching."""
        parts = [self.title]
        for block in self.blocks:
            if isinstance(block, Table):
                parts += [block.caption, *map(str, block.frame.columns), *map(str, block.frame.to_numpy().ravel())]
            elif isinstance(block, Image):
                parts.append(block.caption)
            elif isinstance(block, Bullets):
                parts += block.items
            else:
                parts.append(block)
        return "\n".join(parts)


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    frame = table.frame
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(_md_cell(c) for c in frame.columns) + " |")
    lines.append("|" + "|".join("---" for _ in frame.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


@dataclass(frozen=True)
class _Format:
    """How one output format renders each kind of block."""

    heading: Callable[[str], str]
    table: Callable[[Table], str]
    image: Callable[[Image], str]
    bullets: Callable[[Bullets], str]
    text: Callable[[str], str]

    def block(self, block: Block) -> str:
        if isinstance(block, Table):
            return self.table(block)
        if isinstance(block, Image):
            return self.image(block)
        if isinstance(block, Bullets):
            return self.bullets(block)
        return self.text(block)


def _blocks(sections: list[Section], fmt: _Format) -> list[str]:
    """Each section's heading, then its blocks, each rendered by the function for its kind."""
    parts = []
    for section in sections:
        parts.append(fmt.heading(section.title))
        parts += [fmt.block(block) for block in section.blocks]
    return parts


_MARKDOWN = _Format(
    heading=lambda t: f"## {t}",
    table=_md_table,
    image=lambda i: f"![{i.caption}]({i.path.name})\n\n*{i.caption}*",
    bullets=lambda b: "\n".join(f"- {item}" for item in b.items),
    text=lambda text: text,
)


def markdown_block(block: Block) -> str:
    """One block as the Markdown report writes it (a notebook displays the report's sections block by block)."""
    return _MARKDOWN.block(block)


def render_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown; images are linked by file name (they sit next to it)."""
    return "\n\n".join([f"# {title}", *_blocks(sections, _MARKDOWN)]) + "\n"


def render_description(title: str, sections: list[Section], *, link: str = "report.html") -> str:
    """The MLflow description of a sweep's parent run: the same sections as Markdown, pointing to the rest."""
    return "\n\n".join([f"**{title}**", *_blocks(sections, _MARKDOWN), f"The full report: `{link}` (artifacts)."])


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; max-width: 1150px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; overflow-wrap: anywhere; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
section.answer { background: #f2f7ff; border: 1px solid #b9d1f0; border-radius: 6px; padding: .2em 1.1em .6em;
                 font-size: 1.08em; }
section.answer h2 { border: none; margin-top: .6em; }
section.warnings li { margin: .35em 0; }
table { border-collapse: collapse; margin: .8em 0; font-size: .88em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: .3em .55em; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
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


_HTML = _Format(
    heading=lambda t: f"<h2>{html.escape(t)}</h2>",
    table=_html_table,
    image=_html_image,
    bullets=lambda b: "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in b.items) + "</ul>",
    text=lambda text: f"<p>{_inline(text)}</p>",
)


def render_html(title: str, sections: list[Section]) -> str:
    """The report as one self-contained HTML page (CSS inline, PNGs embedded as base64)."""
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        css = re.sub(r"[^a-z]+", "-", section.title.lower()).strip("-")
        parts.append(f'<section class="{css}">' + "\n".join(_blocks([section], _HTML)) + "</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
