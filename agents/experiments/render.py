"""A document as a list of blocks, rendered twice: Markdown (PNGs beside it) and one self-contained HTML page.

Both renderings hold the same text and numbers. User-controlled text (env ids, core labels, shift names,
paths) is escaped in both: HTML-escaped in the page, Markdown-escaped in report.md, so a name such as
``<img src=x onerror=...>`` or ``a|b`` is shown as written and never interpreted. Text may mark code
with backticks: the page shows it as ``<code>``.
"""
from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

_MARKDOWN_SPECIAL = re.compile(r"([\\`*<>|~]|\]\(|!\[|^#)")


@dataclass
class Block:
    """One piece of a document.

    :param kind: heading (``text``, ``level``), text, table (``header``, ``rows``), image (``path``, ``text``)
        or details (``text`` as the summary over ``children``, collapsed in HTML).
    """

    kind: str
    text: str = ""
    level: int = 2
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    path: Path | None = None
    children: list["Block"] = field(default_factory=list)


def escape_markdown(text: str) -> str:
    """``text`` with the Markdown that could change what is shown escaped: HTML tags, emphasis, table
    pipes, links and images, a leading ``#``. Brackets of CIs (``[0.2, 0.8]``) stay readable."""
    return _MARKDOWN_SPECIAL.sub(lambda m: "\\" + m.group(1), text)


def code(text: str) -> str:
    """``text`` marked as code: backticks in Markdown, <code> in HTML (its backticks removed)."""
    return f"`{text.replace('`', '')}`"


def _markdown_text(text: str) -> str:
    """Escape everything outside backtick code spans; code spans pass as they are."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1 else escape_markdown(p) for p in parts)


def _html_text(text: str) -> str:
    """HTML-escape ``text``; backtick code spans become <code>."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(f"<code>{html.escape(p[1:-1])}</code>" if p.startswith("`") and p.endswith("`") and len(p) > 1
                   else html.escape(p) for p in parts)


def render_markdown(blocks: list[Block], image_dir: Path) -> str:
    """Markdown with images referenced by their path relative to ``image_dir``."""
    lines: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            lines += ["#" * b.level + " " + _markdown_text(b.text), ""]
        elif b.kind == "text":
            bullet = b.text.startswith("- ")
            lines += [("- " if bullet else "") + _markdown_text(b.text[2:] if bullet else b.text), ""]
        elif b.kind == "table":
            lines.append("| " + " | ".join(_markdown_text(h) for h in b.header) + " |")
            lines.append("|" + "---|" * len(b.header))
            lines += ["| " + " | ".join(_markdown_text(c) for c in row) + " |" for row in b.rows]
            lines.append("")
        elif b.kind == "image" and b.path is not None:
            caption = _markdown_text(b.text)
            lines += [f"![{caption}]({os.path.relpath(b.path, image_dir)})", "", f"*{caption}*", ""]
        elif b.kind == "details":
            lines += [f"### {_markdown_text(b.text)}", "", render_markdown(b.children, image_dir)]
    return "\n".join(lines)


def _html_body(blocks: list[Block]) -> list[str]:
    body = []
    for b in blocks:
        if b.kind == "heading":
            body.append(f"<h{b.level}>{_html_text(b.text)}</h{b.level}>")
        elif b.kind == "text":
            if b.text.startswith("- "):
                body.append(f"<p class='note'>{_html_text(b.text[2:])}</p>")
            else:
                body.append(f"<p>{_html_text(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{_html_text(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{_html_text(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>")
        elif b.kind == "image" and b.path is not None:
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            body.append(f"<figure><img alt='{html.escape(b.text)}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{_html_text(b.text)}</figcaption></figure>")
        elif b.kind == "details":
            body.append(f"<details><summary>{_html_text(b.text)}</summary>\n" + "\n".join(_html_body(b.children))
                        + "\n</details>")
    return body


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}th{background:#f3f3f3}"
         "td:first-child,th:first-child{text-align:left}img{max-width:100%}div.scroll{overflow-x:auto}"
         "p.note{background:#fff6e0;border-left:4px solid #e0a000;padding:6px 10px}"
         "details{margin:0.6em 0}summary{font-weight:bold;cursor:pointer;font-size:110%}"
         "code{background:#f3f3f3;padding:0 3px}figcaption{font-size:90%;color:#555}")


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained HTML page: PNGs embedded as base64 data URIs, inline CSS, no external links."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(_html_body(blocks)) + "\n</body></html>\n")
