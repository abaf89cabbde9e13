"""Checks and helpers every engine shares: request validation, stop strings, thread count.

Validation happens before a request reaches an engine's library, so bad input is a clear
InvalidRequest rather than a crash deep inside llama.cpp or torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from tuneloop.engines.base import GenerationParams, Message
from tuneloop.errors import InvalidRequest

ROLES = ("system", "user", "assistant", "tool")
MAX_STOPS = 8


def validate_request(messages: Sequence[Message], params: GenerationParams) -> None:
    """Raise InvalidRequest for empty conversations, unknown roles or out-of-range parameters."""
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes) or not messages:
        raise InvalidRequest("messages must be a non-empty list of {role, content} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role is {role!r}; expected one of "
                                 f"{', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}].content must be a string")
    if not any(m["content"].strip() for m in messages if m["role"] == "user"):
        raise InvalidRequest("the conversation has no non-empty user message")
    validate_params(params)


def validate_params(params: GenerationParams) -> None:
    """Raise InvalidRequest when a generation parameter is out of range."""
    if not isinstance(params.max_tokens, int) or params.max_tokens < 1:
        raise InvalidRequest(f"max_tokens must be a positive integer, got {params.max_tokens!r}")
    if not 0.0 <= float(params.temperature) <= 2.0:
        raise InvalidRequest(f"temperature must be between 0 and 2, got {params.temperature!r}")
    if not 0.0 < float(params.top_p) <= 1.0:
        raise InvalidRequest(f"top_p must be in (0, 1], got {params.top_p!r}")
    if len(params.stop) > MAX_STOPS or any(not isinstance(s, str) or not s for s in params.stop):
        raise InvalidRequest(f"stop must be at most {MAX_STOPS} non-empty strings")
    if params.seed is not None and not isinstance(params.seed, int):
        raise InvalidRequest(f"seed must be an integer, got {params.seed!r}")


def check_context(prompt_tokens: int, context_length: int, model: str) -> None:
    """Raise InvalidRequest when the prompt leaves no room to generate a single token."""
    if prompt_tokens >= context_length:
        raise InvalidRequest(
            f"the prompt takes {prompt_tokens} tokens but {model} has a context window of "
            f"{context_length} tokens",
            hint="shorten the conversation or the retrieved context")


class StopMatcher:
    """Cuts streamed text at the first stop string, holding back text that might start one.

    `feed(piece)` returns the text that is safe to emit now; `stopped` turns true once a stop
    string appeared (the stop string itself is never emitted); `flush()` returns the rest.

    With `repeats`, every sentence of `REPEAT_WORDS` words or more that the answer completes
    becomes a stop string too: a small model at temperature 0 can fall into a loop that says
    the same sentence until `max_tokens`, and the loop ends at its first repetition. Text is
    held back only while it reads as the start of a sentence already said.
    """

    def __init__(self, stops: Sequence[str], *, repeats: bool = False) -> None:
        self.stops = tuple(stops)
        self.repeats = repeats
        self._held = ""
        self._said = ""
        self._sentences = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return self._said_now(piece)
        text = self._held + piece
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return self._said_now(text[:cut])
        keep = 0  # longest tail of `text` that is a prefix of some stop string
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        self._held = text[len(text) - keep:] if keep else ""
        return self._said_now(text[:len(text) - keep])

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _said_now(self, text: str) -> str:
        """Record emitted text; with `repeats`, each newly completed sentence becomes a stop,
        and a new sentence that starts like one already said waits (as a stop's start does)."""
        if not self.repeats or not text or self.stopped:
            return text
        said = self._said + text
        *complete, tail = _SENTENCE_BREAK.split(said)
        for sentence in complete[self._sentences:]:
            sentence = sentence.strip()
            if len(sentence.split()) >= REPEAT_WORDS and sentence not in self.stops:
                self.stops = (*self.stops, sentence)
        self._sentences = len(complete)
        lead = tail.lstrip()
        if lead and len(tail) <= len(text) and any(s.startswith(lead) for s in self.stops):
            self._held = tail + self._held
            text, said = text[:len(text) - len(tail)], said[:len(said) - len(tail)]
        self._said = said
        return text

REPEAT_WORDS = 4
# where a sentence ends: ".", "!" or "?" then white space, or a line break
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")


def physical_cores() -> int:
    """Physical CPU cores this process may use (llama.cpp runs best with one thread per core)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores: set[tuple[str, str]] = set()
    try:
        physical = core = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                physical = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                core = line.split(":", 1)[1].strip()
                cores.add((physical, core))
    except OSError:
        pass
    n = len(cores) or (usable or 1)
    return max(1, min(n, usable or n))
