"""Training records: turning a raw row (chat `messages`, `input`/`output`, CSV or Parquet columns)
into the one shape every version holds, `{"id", "messages", "metadata", "subject"}`.

A row that cannot be turned into a record raises `RecordInvalid` with a reason a person can act on;
the build keeps it in `rejects.jsonl` with its file and line.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Any

ROLES = ("system", "user", "assistant")
# Column pairs accepted for single-turn records, in order of preference.
PAIRS = (("input", "output"), ("prompt", "completion"), ("question", "answer"))
RESERVED = {"messages", "metadata", "id", "system", *(k for pair in PAIRS for k in pair)}


class RecordInvalid(ValueError):
    """A row is not a usable training record; the message says why."""


def subject_hash(value: Any) -> str:
    """The stored stand-in for a data subject's id (an e-mail, a customer number).

    Erasure recomputes it from the id it is given, so it must not change between versions.
    """
    text = str(value).strip().lower()
    return hashlib.sha256(f"tuneloop-subject:{text}".encode()).hexdigest()[:32]


def normalise_text(text: str) -> str:
    """NFC, Unix newlines, no trailing spaces on lines, no blank lines at either end."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip()


def to_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages of a raw row, validated; raises `RecordInvalid`."""
    if "messages" in row:
        messages = row["messages"]
        if isinstance(messages, str):
            # CSV and Parquet carry nested messages as JSON text.
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError as exc:
                raise RecordInvalid(f"field 'messages' is not valid JSON ({exc.msg})") from None
        return _check_messages(messages)
    for question, answer in PAIRS:
        if question in row or answer in row:
            out = []
            system = row.get("system")
            if system not in (None, ""):
                if not isinstance(system, str):
                    raise RecordInvalid(f"field 'system' must be text, found "
                                        f"{type(system).__name__}")
                out.append({"role": "system", "content": system})
            for key, role in ((question, "user"), (answer, "assistant")):
                if key not in row or row[key] is None:
                    raise RecordInvalid(f"field {key!r} is missing")
                if not isinstance(row[key], str):
                    raise RecordInvalid(f"field {key!r} must be text, found "
                                        f"{type(row[key]).__name__}")
                out.append({"role": role, "content": row[key]})
            return out
    keys = ", ".join(sorted(map(str, row))) or "none"
    raise RecordInvalid("a record needs 'messages' (chat format) or 'input' and 'output'; "
                        f"found fields: {keys}")


def _check_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list):
        raise RecordInvalid(f"field 'messages' must be a list, found {type(messages).__name__}")
    if not messages:
        raise RecordInvalid("field 'messages' is empty")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RecordInvalid(f"messages[{i}] must be an object with role and content, found "
                                f"{type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RecordInvalid(f"messages[{i}].role is {role!r}; allowed: {', '.join(ROLES)}")
        if not isinstance(content, str):
            what = "missing" if content is None else f"{type(content).__name__}, not text"
            raise RecordInvalid(f"messages[{i}].content is {what}")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "assistant":
        raise RecordInvalid("the last message must be the assistant's answer, found "
                            f"{out[-1]['role']!r}")
    if not any(m["role"] == "user" for m in out):
        raise RecordInvalid("a record needs at least one user message")
    return out


def metadata_of(row: dict[str, Any]) -> dict[str, Any]:
    """The row's `metadata` object plus every column that is not part of the conversation."""
    meta = row.get("metadata")
    if meta is None:
        meta = {}
    elif isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {"note": meta}
    if not isinstance(meta, dict):
        raise RecordInvalid(f"field 'metadata' must be an object, found {type(meta).__name__}")
    extra = {k: v for k, v in row.items() if k not in RESERVED}
    return {**extra, **meta}


def lookup(row: dict[str, Any], dotted: str) -> Any:
    """`row["a"]["b"]` for "a.b", searching the row and then its metadata; None if absent."""
    for base in (row, row.get("metadata") if isinstance(row.get("metadata"), dict) else None):
        node: Any = base
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return None


def drop_path(meta: dict[str, Any], dotted: str) -> None:
    """Remove `a.b` from a metadata dict (the subject id is stored only as its hash)."""
    parts = dotted.split(".")
    node: Any = meta
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def record_id(messages: list[dict[str, str]]) -> str:
    """A record's id: the hash of its (normalised, redacted) conversation."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]
