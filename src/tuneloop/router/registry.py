"""Registered routers: each training adds a version `name@vN` with its tier and lineage.

    get_router(project, "support-router")      # the newest version
    get_router(project, "support-router@v2")   # one version
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tuneloop.errors import NotFound
from tuneloop.governance import audit
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.project import Project
from tuneloop.router.model import QueryRouter
from tuneloop.store.routing import QueryRouterRow


@dataclass(frozen=True)
class RouterRecord:
    """One registered router version."""

    name: str
    version: int
    path: str
    dataset_version: str
    slice_field: str
    labels: tuple[str, ...]
    tier: int
    roots: frozenset[str] = frozenset()
    lineage: dict[str, Any] = field(default_factory=dict, compare=False)
    created_by: str = ""
    created_at: dt.datetime | None = None

    @property
    def ref(self) -> str:
        """`name@vN`: what routed variants and lineage record."""
        return f"{self.name}@v{self.version}"

    @property
    def resource(self) -> Resource:
        """The router as a governed resource: it inherits its training data's tier and roots."""
        return Resource("router", self.ref, self.tier, self.roots)

    def load(self) -> QueryRouter:
        """The classifier (loaded once per process and path)."""
        return _load(self.path)


@functools.lru_cache(maxsize=16)
def _load(path: str) -> QueryRouter:
    return QueryRouter.load(Path(path))


def _record(row: QueryRouterRow) -> RouterRecord:
    return RouterRecord(row.name, row.version, row.path, row.dataset_version, row.slice_field,
                        tuple(row.labels), row.tier, frozenset(row.roots), dict(row.lineage),
                        row.created_by, row.created_at)


def next_version(project: Project, name: str) -> int:
    """The version number the next training of `name` gets."""
    with project.store.session(write=False) as session:
        latest = session.scalar(select(func.max(QueryRouterRow.version))
                                .where(QueryRouterRow.name == name))
    return int(latest or 0) + 1


def register(project: Project, actor: Actor, *, name: str, version: int, path: Path,
             dataset_version: str, slice_field: str, labels: list[str], tier: int,
             roots: frozenset[str], lineage: dict[str, Any]) -> RouterRecord:
    """Record a trained router version; audited with its tier."""
    with project.store.session() as session:
        row = QueryRouterRow(name=name, version=version, path=str(path),
                             dataset_version=dataset_version, slice_field=slice_field,
                             labels=labels, tier=tier, roots=sorted(roots), lineage=lineage,
                             created_by=actor.name)
        session.add(row)
        session.flush()
        audit.record(session, actor=actor.name, action="router.register",
                     target=f"router:{name}@v{version}", tier=tier,
                     details={"dataset_version": dataset_version, "slice_field": slice_field,
                              "labels": labels, "roots": sorted(roots),
                              "approvals": lineage.get("approvals", [])})
        return _record(row)


def get_router(project: Project, ref: str) -> RouterRecord:
    """The router `name@vN`, or the newest version of `name`."""
    name, _, wanted = ref.partition("@")
    query = select(QueryRouterRow).where(QueryRouterRow.name == name)
    if wanted:
        try:
            query = query.where(QueryRouterRow.version == int(wanted.lstrip("v")))
        except ValueError:
            raise NotFound(f"router version {wanted!r} is not of the form vN") from None
    with project.store.session(write=False) as session:
        row = session.scalars(query.order_by(QueryRouterRow.version.desc()).limit(1)).first()
        if row is None:
            known = ", ".join(sorted(set(session.scalars(select(QueryRouterRow.name))))) or "none"
            raise NotFound(f"no router {ref!r}; routers: {known}",
                           hint="train one: `tuneloop router train --dataset NAME`")
        return _record(row)


def list_routers(project: Project) -> list[RouterRecord]:
    """Every router version, newest first."""
    with project.store.session(write=False) as session:
        rows = session.scalars(select(QueryRouterRow).order_by(QueryRouterRow.id.desc()))
        return [_record(r) for r in rows]
