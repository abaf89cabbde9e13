"""The structure of a document: its blocks (paragraphs, lists, tables, code) under their headings.

Markdown is parsed with markdown-it-py, HTML with Beautiful Soup; plain text and PDF text are split
into paragraphs at blank lines. Reading files (decoding, PDF text) is `tuneloop.data.readers`'
job; this module only finds where one idea ends and the next begins, so chunks follow them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
HTML_BLOCKS = ("p", "li", "pre", "table", "blockquote", "dt", "dd", "figcaption")


@dataclass(frozen=True)
class Block:
    """One unit of text that should not be split unless it is too long, with its heading path."""

    text: str
    headings: tuple[str, ...] = ()


def blocks_of(text: str, fmt: str, path: Path | None = None) -> list[Block]:
    """The blocks of a document in reading order; `fmt` is markdown, html, text or pdf."""
    if fmt == "markdown":
        return _markdown_blocks(text)
    if fmt == "html" and path is not None and path.suffix.lower() in (".html", ".htm"):
        return _html_blocks(path.read_text(encoding="utf-8", errors="replace"))
    return _paragraph_blocks(text)


def _markdown_blocks(text: str) -> list[Block]:
    from markdown_it import MarkdownIt

    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    stack: list[tuple[int, str]] = []
    blocks: list[Block] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            level = int(tok.tag[1])
            title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, title)]
            i = _skip_to_close(tokens, i)
            continue
        if tok.level == 0 and tok.map is not None and tok.nesting in (0, 1):
            start, end = tok.map
            body = "\n".join(lines[start:end]).strip()
            if body:
                blocks.append(Block(body, tuple(t for _, t in stack)))
            i = _skip_to_close(tokens, i) if tok.nesting == 1 else i + 1
            continue
        i += 1
    return blocks


def _skip_to_close(tokens: list, i: int) -> int:
    """The index after the token that closes the one opened at `i`."""
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j + 1
    return len(tokens)


def _html_blocks(html: str) -> list[Block]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "head"]):
        tag.decompose()
    stack: list[tuple[int, str]] = []
    blocks: list[Block] = []
    wanted = set(HTML_HEADINGS) | set(HTML_BLOCKS)
    for el in soup.find_all(list(wanted)):
        if el.name in HTML_HEADINGS:
            level = int(el.name[1])
            stack = [(lvl, t) for lvl, t in stack if lvl < level]
            stack.append((level, el.get_text(" ", strip=True)))
            continue
        # A paragraph inside a list item or table is already part of that block.
        if any(parent.name in HTML_BLOCKS for parent in el.parents):
            continue
        separator = "\n" if el.name in ("pre", "table") else " "
        body = el.get_text(separator, strip=True)
        if el.name == "li":
            body = "- " + body
        if body:
            blocks.append(Block(body, tuple(t for _, t in stack)))
    return blocks


def _paragraph_blocks(text: str) -> list[Block]:
    return [Block(p.strip()) for p in re.split(r"\n\s*\n", text) if p.strip()]
