"""The rollout of an alias as it stands: which variant serves which audience, and its history.

Stages, in order: `shadow` (gets a copy of internal traffic; its answers are logged, never
returned), `internal` (serves every internal caller), `public` (also serves `percent` % of public
callers, chosen by a sticky hash of caller and alias), `all` (serves everyone not sent elsewhere).
An entry names a variant or a routed variant (`rollout.members`); routing decisions here only
pick the entry, the serving layer resolves a routed one per request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from tuneloop.project import Project
from tuneloop.store.serving import Rollout, RolloutChange


@dataclass(frozen=True)
class Entry:
    """One variant's place in an alias's rollout."""

    variant: str
    stage: str
    percent: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "stage": self.stage, "percent": self.percent}


@dataclass(frozen=True)
class AliasState:
    """The rollout of one alias: every variant with its stage."""

    alias: str
    entries: tuple[Entry, ...] = field(default_factory=tuple)

    def at(self, *stages: str) -> list[Entry]:
        return [e for e in self.entries if e.stage in stages]

    def route(self, principal: str, audience: str) -> str | None:
        """The variant that answers this caller, or None when nothing serves its audience."""
        if audience == "internal":
            newest = self.at("internal") or self.at("public")
            if newest:
                return newest[0].variant
        else:
            bucket = sticky_bucket(principal, self.alias)
            edge = 0.0
            for entry in self.at("public"):
                edge += entry.percent
                if bucket < edge:
                    return entry.variant
        stable = self.at("all")
        return stable[0].variant if stable else None

    def shadows(self, audience: str) -> list[str]:
        """Variants that get a copy of this caller's request (internal traffic only)."""
        return [e.variant for e in self.at("shadow")] if audience == "internal" else []

    def serves_public(self) -> bool:
        return bool(self.at("public", "all"))


def sticky_bucket(principal: str, alias: str) -> float:
    """A stable number in [0, 100) per (caller, alias): the same caller always lands the same."""
    digest = hashlib.sha256(f"{alias}\x00{principal}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100.0


def state(project: Project, alias: str) -> AliasState:
    """The current rollout of `alias` (possibly empty)."""
    with project.store.session(write=False) as session:
        rows = session.execute(select(Rollout).where(Rollout.alias == alias)
                               .order_by(Rollout.updated_at.desc(), Rollout.id.desc())).scalars()
        return AliasState(alias, tuple(Entry(r.variant, r.stage, r.percent) for r in rows))


def aliases(project: Project) -> list[str]:
    """Every alias with a rollout, and the project's application alias."""
    with project.store.session(write=False) as session:
        names = set(session.execute(select(Rollout.alias).distinct()).scalars())
    names.add(project.config.server.app_alias)
    return sorted(names)


def history(project: Project, alias: str, limit: int = 20) -> list[RolloutChange]:
    """The newest changes to `alias` first."""
    with project.store.session(write=False) as session:
        return list(session.execute(
            select(RolloutChange).where(RolloutChange.alias == alias)
            .order_by(RolloutChange.id.desc()).limit(limit)).scalars())


