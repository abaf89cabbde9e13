"""Routed variants: a router, a slice -> variant map and a fallback, deployable like a variant.

    define(project, actor, "support-routed", router="support-router",
           mapping={"billing": "tuned-rag", "sync": "base-rag"}, fallback="tuned-rag")

A message whose predicted slice has no entry in the map, or whose prediction is less confident
than `min_confidence`, goes to the fallback variant. Its tier is the highest of its router and
of every variant it can send a request to.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select

from tuneloop.errors import InvalidInput, NotFound
from tuneloop.governance import audit
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.project import Project
from tuneloop.router.model import Prediction
from tuneloop.router.registry import RouterRecord, get_router
from tuneloop.store.routing import RoutedVariantRow

DEFAULT_MIN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Choice:
    """Which variant a routed variant picked for one message, and why."""

    variant: str
    slice: str
    confidence: float
    fallback: bool


@dataclass(frozen=True)
class RoutedVariant:
    """A routed variant as defined (see the module docstring)."""

    name: str
    router: str
    mapping: dict[str, str]
    fallback: str
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    source: str = ""
    created_by: str = ""
    created_at: dt.datetime | None = field(default=None, compare=False)

    @property
    def members(self) -> list[str]:
        """Every variant it may send a request to, fallback first."""
        return list(dict.fromkeys([self.fallback, *self.mapping.values()]))

    def choose(self, prediction: Prediction) -> Choice:
        """The variant for a message with this prediction."""
        target = self.mapping.get(prediction.slice)
        if target is None or prediction.confidence < self.min_confidence:
            return Choice(self.fallback, prediction.slice, prediction.confidence, True)
        return Choice(target, prediction.slice, prediction.confidence, False)

    def router_record(self, project: Project) -> RouterRecord:
        return get_router(project, self.router)

    def resource(self, project: Project) -> Resource:
        """The routed variant as a governed resource: the union of its router and members."""
        from tuneloop.variants import get_variant

        parts = [self.router_record(project).resource,
                 *(get_variant(project, v).resource for v in self.members)]
        return Resource("routed", self.name, max(p.tier for p in parts),
                        frozenset().union(*(p.roots for p in parts)))


def _from_row(row: RoutedVariantRow) -> RoutedVariant:
    return RoutedVariant(row.name, row.router, dict(row.mapping), row.fallback,
                         row.min_confidence, row.source, row.created_by, row.created_at)


def define(project: Project, actor: Actor, name: str, *, router: str, mapping: dict[str, str],
           fallback: str, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
           source: str = "by hand") -> RoutedVariant:
    """Create or replace the routed variant `name` (audited); checks every name it uses."""
    from tuneloop.variants import get_variant

    if project.config.variant(name) is not None:
        raise InvalidInput(f"{name!r} already names a variant in tuneloop.yaml",
                           hint="give the routed variant a name of its own, e.g. NAME-routed")
    record = get_router(project, router)
    unknown = sorted(set(mapping) - set(record.labels))
    if unknown:
        raise InvalidInput(f"router {record.ref} never predicts {', '.join(unknown)}; its slices: "
                           f"{', '.join(record.labels)}")
    if not 0 <= min_confidence <= 1:
        raise InvalidInput(f"min_confidence must be in [0, 1], got {min_confidence:g}")
    for variant in {fallback, *mapping.values()}:
        get_variant(project, variant)  # NotFound names the variants that exist
    with project.store.session() as session:
        row = session.scalar(select(RoutedVariantRow).where(RoutedVariantRow.name == name))
        if row is None:
            row = RoutedVariantRow(name=name)
            session.add(row)
        row.router, row.mapping, row.fallback = record.ref, dict(mapping), fallback
        row.min_confidence, row.source, row.created_by = min_confidence, source, actor.name
        session.flush()
        audit.record(session, actor=actor.name, action="routed.define", target=f"routed:{name}",
                     tier=record.tier, details={"router": record.ref, "mapping": dict(mapping),
                                                "fallback": fallback, "source": source,
                                                "min_confidence": min_confidence})
        return _from_row(row)


def find_routed(project: Project, name: str) -> RoutedVariant | None:
    """The routed variant `name`, or None."""
    with project.store.session(write=False) as session:
        row = session.scalar(select(RoutedVariantRow).where(RoutedVariantRow.name == name))
        return _from_row(row) if row is not None else None


def get_routed(project: Project, name: str) -> RoutedVariant:
    """The routed variant `name`, or NotFound naming those that exist."""
    found = find_routed(project, name)
    if found is None:
        known = ", ".join(r.name for r in list_routed(project)) or "none"
        raise NotFound(f"no routed variant {name!r}; routed variants: {known}",
                       hint="`tuneloop router evaluate` or `tuneloop router define` makes one")
    return found


def list_routed(project: Project) -> list[RoutedVariant]:
    """Every routed variant, by name."""
    with project.store.session(write=False) as session:
        return [_from_row(r) for r in session.scalars(
            select(RoutedVariantRow).order_by(RoutedVariantRow.name))]
