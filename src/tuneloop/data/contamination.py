"""Contamination check: no generated training question may be a near duplicate of a test record.

Evaluation questions must never enter training data. Every published dataset version's test split
is read (through the gate, as an `evaluate` use: the records are read to protect an evaluation),
and each generated question is compared with each test record's user text and with each question
sentence inside it ("... What is your breach notification SLA? ..."), by MinHash over word pairs,
so that a short question that rewords one word of a test question is still caught.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tuneloop.data.dedup import NearDuplicates
from tuneloop.data.versions import list_versions
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project

THRESHOLD = 0.6
_QUESTION = re.compile(r"[^.!?\n]*\?")


@dataclass(frozen=True)
class TestTexts:
    """The user texts of every test record, each with the `dataset@id:record` it came from."""

    texts: list[str]
    refs: list[str]
    versions: list[str]


def load_test_texts(project: Project, actor: Actor, *, purpose: str) -> TestTexts:
    """The user side of every test record of every dataset version (all versions, deduplicated)."""
    versions = list_versions(project)
    if versions:
        require(project.store, actor, "evaluate", [v.resource for v in versions], purpose=purpose)
    texts: list[str] = []
    refs: list[str] = []
    seen: set[str] = set()
    for version in versions:
        for record in version.iter_split("test"):
            user = "\n".join(m["content"] for m in record.get("messages", [])
                             if m.get("role") == "user")
            for text in (user, *(q.strip() for q in _QUESTION.findall(user))):
                key = " ".join(text.lower().split())
                if len(key.split()) < 3 or key in seen:
                    continue
                seen.add(key)
                texts.append(text)
                refs.append(f"{version.ref}:{record.get('id', '')}")
    return TestTexts(texts, refs, [v.ref for v in versions])


def contaminated(questions: Sequence[str], tests: TestTexts,
                 threshold: float = THRESHOLD) -> list[str | None]:
    """For each question, the test record it nearly duplicates (`dataset@id:record`), or None."""
    if not tests.texts or not questions:
        return [None] * len(questions)
    near = NearDuplicates(threshold, shingle_size=2)
    for text in tests.texts:
        near.add(text)
    for question in questions:
        near.add(question)
    duplicate_of = near.resolve().duplicate_of
    offset = len(tests.texts)
    out: list[str | None] = []
    for i in range(len(questions)):
        root = int(duplicate_of[offset + i])
        out.append(tests.refs[root] if 0 <= root < offset else None)
    return out
