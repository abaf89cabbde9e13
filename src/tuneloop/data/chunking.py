"""Chunking: a document's blocks grouped into passages that fit a token budget, with overlap.

A chunk never spans two sections: a new heading starts a new chunk, so a passage is about one
thing. Inside a section, blocks are packed up to the budget; a block too long on its own is split
at sentences, and a sentence too long at words. When a chunk closes because it is full, the next
one repeats its last sentences (up to `overlap_tokens`) so that an answer straddling the cut is
still found whole. Each chunk starts with its heading path, which helps both retrievers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tuneloop.data.structure import Block

HEADING_SEPARATOR = " › "
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])|\n+")


@dataclass(frozen=True)
class ChunkText:
    """A passage ready to embed: text (heading path first), the heading path, its token count."""

    text: str
    heading: str
    n_tokens: int


def chunk_blocks(blocks: Sequence[Block], count_tokens: Callable[[str], int], *,
                 chunk_tokens: int = 256, overlap_tokens: int = 32,
                 title: str = "") -> list[ChunkText]:
    """Group `blocks` into chunks of at most about `chunk_tokens` tokens (see the module doc)."""
    if overlap_tokens >= chunk_tokens:
        raise ValueError("overlap_tokens must be smaller than chunk_tokens")
    chunks: list[ChunkText] = []
    section: tuple[str, ...] | None = None
    current: list[tuple[str, int]] = []
    heading = ""
    budget = chunk_tokens

    def flush(carry: bool) -> None:
        nonlocal current
        if not current:
            return
        body = "\n\n".join(text for text, _ in current)
        text = f"{heading}\n\n{body}" if heading else body
        chunks.append(ChunkText(text, heading, count_tokens(text)))
        kept: list[tuple[str, int]] = []
        if carry:
            total = 0
            for piece in reversed(current):
                if total + piece[1] > overlap_tokens:
                    break
                kept.insert(0, piece)
                total += piece[1]
            # Carrying everything would repeat the chunk forever.
            if len(kept) == len(current):
                kept = []
        current = kept

    for block in blocks:
        if block.headings != section:
            flush(carry=False)
            section = block.headings
            path = [h for h in (title, *block.headings) if h]
            # The document title is often the first heading too: do not say it twice.
            path = [h for i, h in enumerate(path) if i == 0 or h != path[i - 1]]
            heading = HEADING_SEPARATOR.join(path)
            budget = max(16, chunk_tokens - (count_tokens(heading) + 2 if heading else 0))
        for piece in _pieces(block.text, count_tokens, budget):
            used = sum(n for _, n in current)
            if current and used + piece[1] > budget:
                flush(carry=True)
                used = sum(n for _, n in current)
                if current and used + piece[1] > budget:
                    current = []
            current.append(piece)
    flush(carry=False)
    return chunks


def _pieces(text: str, count_tokens: Callable[[str], int], budget: int) -> list[tuple[str, int]]:
    """The block whole if it fits, else its sentences; a sentence too long is cut at words."""
    n = count_tokens(text)
    if n <= budget:
        return [(text, n)]
    out: list[tuple[str, int]] = []
    for sentence in (s.strip() for s in _SENTENCE.split(text)):
        if not sentence:
            continue
        m = count_tokens(sentence)
        if m <= budget:
            out.append((sentence, m))
        else:
            out.extend(_word_windows(sentence, count_tokens, budget))
    return out


def _word_windows(text: str, count_tokens: Callable[[str], int],
                  budget: int) -> list[tuple[str, int]]:
    words = text.split()
    out: list[tuple[str, int]] = []
    start = 0
    while start < len(words):
        # Grow a window word by word estimate, then shrink until it fits exactly.
        end = min(len(words), start + max(1, budget // 2))
        while end < len(words) and count_tokens(" ".join(words[start:end + 1])) <= budget:
            end += 1
        while end - start > 1 and count_tokens(" ".join(words[start:end])) > budget:
            end -= 1
        piece = " ".join(words[start:end])
        out.append((piece, count_tokens(piece)))
        start = end
    return out
