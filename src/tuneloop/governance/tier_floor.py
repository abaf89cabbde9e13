"""Tiers only go up by themselves.

Data once known as Tier 2 (by its path, or by its content hash) is never registered again with a
lower tier, under any name, from the CLI or from `tuneloop.yaml`; a registered name never loses
its tier. Lowering a tier is a privacy-team decision, taken with a privacy officer's key and a
reason, and audited.

What is known as Tier 2 is read from the sources table and from the audit chain: every Tier 2
registration records the data's absolute path and content hash in its audit event, so that
renaming or deleting a source row forgets nothing, and a lowering event is the only thing that
unmarks them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneloop.errors import PermissionDenied, TuneloopError
from tuneloop.governance import audit
from tuneloop.governance.tiers import Actor
from tuneloop.store import AuditEvent, Source

MARKING_ACTIONS = ("source.add", "source.sync", "source.tier")
NOTHING = hashlib.sha256(b"").hexdigest()  # the hash of a missing or empty path marks nothing


class TierLowered(PermissionDenied):
    """A registration would give Tier 2 data a lower tier."""


@dataclass(frozen=True)
class Registration:
    """A source about to be registered: its name, absolute path, tier and content hash (computed
    only when needed, since hashing a large folder takes a while)."""

    name: str
    path: Path
    tier: int
    digest: Callable[[], str]


@dataclass
class _Marks:
    paths: dict[Path, str]  # absolute path -> the source name it was known as Tier 2 under
    digests: dict[str, str]  # content hash -> the same


def mark_details(path: Path, digest: str | None) -> dict[str, str]:
    """What a Tier 2 registration records in its audit event, so the data stays known."""
    details = {"abs_path": str(path)}
    if digest and digest != NOTHING:
        details["content_hash"] = digest
    return details


def check_registration(session: Session, new: Registration,
                       resolve: Callable[[str], Path]) -> None:
    """Refuse (TierLowered) a registration that would lower the tier of known data.

    `resolve(stored_path)` turns a path as stored in the sources table into an absolute one.
    """
    row = session.execute(select(Source).where(Source.name == new.name)).scalar_one_or_none()
    if row is not None and row.tier > new.tier:
        raise TierLowered(
            f"source {new.name!r} is Tier {row.tier}; registering it again never lowers its tier",
            hint=f"a privacy officer lowers it with `tuneloop --key KEY data tier {new.name} "
                 f"{new.tier} --reason \"...\"`")
    if new.tier >= 2:
        return
    marks = _known_tier2(session, resolve)
    for known, name in marks.paths.items():
        if _overlaps(new.path, known):
            raise TierLowered(
                f"{new.path} is Tier 2 data (source {name!r} at {known}); it cannot be "
                f"registered as Tier {new.tier} under any name",
                hint=f"register it with --tier 2, or ask a privacy officer to lower {name!r} "
                     f"with `tuneloop data tier {name} 1 --reason \"...\"`")
    if marks.digests:
        digest = new.digest()
        same = marks.digests.get(digest) if digest != NOTHING else None
        if same is not None:
            raise TierLowered(
                f"{new.path} has the same content as Tier 2 source {same!r}; it cannot be "
                f"registered as Tier {new.tier}",
                hint="register the copy with --tier 2")


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _mark(marks: _Marks, facts: dict[str, str], name: str) -> None:
    if "abs_path" in facts:
        marks.paths[Path(facts["abs_path"])] = name
    if "content_hash" in facts:
        marks.digests[facts["content_hash"]] = name


def _unmark(marks: _Marks, facts: dict[str, str]) -> None:
    if "abs_path" in facts:
        marks.paths.pop(Path(facts["abs_path"]), None)
    if "content_hash" in facts:
        marks.digests.pop(facts["content_hash"], None)


def _known_tier2(session: Session, resolve: Callable[[str], Path]) -> _Marks:
    marks = _Marks({}, {})
    events = session.execute(
        select(AuditEvent.action, AuditEvent.tier, AuditEvent.target, AuditEvent.details)
        .where(AuditEvent.action.in_(MARKING_ACTIONS)).order_by(AuditEvent.seq)
    ).all()
    for action, tier, target, details in events:
        facts = json.loads(details or "{}")
        name = target.split(":", 1)[-1]
        if tier == 2:
            _mark(marks, facts, name)
        elif action == "source.tier":
            _unmark(marks, facts)
    for row in session.execute(select(Source).where(Source.tier >= 2)).scalars():
        marks.paths[resolve(row.path)] = row.name
    return marks


def lower_source_tier(session: Session, by: Actor, name: str, tier: int, reason: str, *,
                      path: Path, digest: str) -> int:
    """Lower a source's tier: a privacy officer's decision, with their key and a reason.

    Returns the tier it had. Audited with the data's path and content hash, which unmarks them.
    """
    if by.local or by.role != "privacy":
        raise PermissionDenied(
            f"lowering a tier is a privacy-team decision taken with a privacy officer's own key; "
            f"{by.name} acts as {'the local account' if by.local else repr(by.role)}",
            hint="the privacy officer runs `tuneloop --key KEY data tier NAME 1 --reason ...`")
    if not reason.strip():
        raise TuneloopError("lowering a tier needs a reason (--reason) that the audit keeps")
    if tier not in (1, 2):
        raise TuneloopError(f"tier must be 1 or 2, found {tier}")
    row = session.execute(select(Source).where(Source.name == name)).scalar_one_or_none()
    if row is None:
        raise TuneloopError(f"no source named {name!r}", hint="`tuneloop data sources`")
    before = row.tier
    if tier >= before:
        raise TuneloopError(f"source {name!r} is already Tier {before}; raising a tier needs no "
                            "decision: register it again with the higher tier")
    row.tier = tier
    audit.record(session, actor=by.name, action="source.tier", target=f"source:{name}",
                 tier=tier, details={**mark_details(path, digest), "from": before, "to": tier,
                                     "reason": reason.strip()})
    return before
