"""Retraining marks, enforced: a model derived from erased data does not reach the public.

An erasure marks every model trained on a dataset version that held the subject, and every variant
serving such a model (`retraining_marks`). A marked variant may serve internal callers (people who
can judge it) but not the public: rollout asks `check_stage` before any stage past `internal`, and
erasure takes it off the public stages at once through the `withdraw` step its caller passes in
(`rollout.withdraw_from_public`: rollout sits above flywheel), audited, the reason kept in the
rollout's history (so `rollout status` and the dashboard show it).

A mark clears itself when it no longer holds (`refresh`): a model re-registered under its name and
trained only on dataset versions made after the erasure that hold no record of the subject, or a
variant that now serves an unmarked model. Clearing a mark by hand (a model retired, a legal
decision) is for the privacy team only: `clear`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tuneloop.errors import GateFailed, NotFound, PermissionDenied
from tuneloop.governance import audit
from tuneloop.governance.tiers import Actor
from tuneloop.store.flywheel import Erasure, RetrainingMark
from tuneloop.store.models import utcnow

if TYPE_CHECKING:
    from tuneloop.project import Project

PUBLIC_STAGES = ("public", "all")
CLEAR_ROLES = ("privacy",)


@dataclass(frozen=True)
class OpenMark:
    """One open mark, with what the erasure replaced (to tell a retrained model apart)."""

    id: int
    kind: str  # model | variant
    name: str
    erasure_id: int
    reason: str
    created_at: Any


def refresh(project: Project) -> list[OpenMark]:
    """Clear the marks that no longer hold, then return the open ones (newest first)."""
    marks = _open(project)
    if not marks:
        return []
    erasures = _erasures(project, {m.erasure_id for m in marks})
    models = {r.name: r for r in _registered(project)}
    cleared: dict[int, str] = {}
    for mark in marks:
        if mark.kind == "model" and mark.name in models:
            why = _retrained(project, models[mark.name], erasures[mark.erasure_id])
            if why:
                cleared[mark.id] = why
    still_marked = {m.name for m in marks if m.kind == "model" and m.id not in cleared}
    for mark in marks:
        if mark.kind != "variant":
            continue
        variant = project.config.variant(mark.name)
        model = variant.model if variant is not None else None
        if variant is None:
            cleared[mark.id] = "the variant was removed from tuneloop.yaml"
        elif model not in still_marked:
            cleared[mark.id] = f"the variant now serves model {model!r}, not derived from it"
    if cleared:
        _clear(project, cleared, actor="tuneloop")
    return [m for m in marks if m.id not in cleared]


def variant_mark(project: Project, variant: str) -> OpenMark | None:
    """The open mark that keeps `variant` from the public: its own, or its model's."""
    config = project.config.variant(variant)
    model = config.model if config is not None else None
    for mark in refresh(project):
        if (mark.kind, mark.name) in (("variant", variant), ("model", model)):
            return mark
    return None


def check_stage(project: Project, actor: Actor, variant: str, stage: str) -> None:
    """Refuse (audited) a stage past `internal` for a variant derived from erased data."""
    if stage not in PUBLIC_STAGES:
        return
    mark = variant_mark(project, variant)
    if mark is None:
        return
    why = (f"{mark.kind} {mark.name!r} is derived from data erased by erasure #{mark.erasure_id}"
           " and must be retrained first")
    audit.record_now(project.store, actor=actor.name, action="rollout.refused",
                     target=f"variant:{variant}",
                     details={"why": "retraining mark", "mark": mark.id, "detail": why})
    raise GateFailed(f"variant {variant!r} cannot go past internal: {why}",
                     hint="retrain on a dataset version made after the erasure (`tuneloop train`)"
                          "; `tuneloop erase status` lists the open marks")


def clear(project: Project, actor: Actor, mark_id: int, reason: str) -> None:
    """Clear one mark by hand (the privacy team only; audited with the reason)."""
    if actor.role not in CLEAR_ROLES:
        audit.record_now(project.store, actor=actor.name, action="erasure.mark.refused",
                         target=f"mark:{mark_id}", details={"why": f"role {actor.role}"})
        raise PermissionDenied(f"{actor.name} ({actor.role}) may not clear retraining marks",
                               hint="only a key with the privacy role clears a mark by hand")
    if not reason.strip():
        raise PermissionDenied("clearing a mark needs a reason", hint="pass --reason '...'")
    if mark_id not in {m.id for m in _open(project)}:
        raise NotFound(f"no open retraining mark #{mark_id}",
                       hint="`tuneloop erase status` lists the open marks")
    _clear(project, {mark_id: reason}, actor=actor.name)


def _clear(project: Project, reasons: dict[int, str], actor: str) -> None:
    with project.store.session() as session:
        for mark_id, why in reasons.items():
            row = session.get(RetrainingMark, mark_id)
            if row is None or row.cleared_at is not None:
                continue
            row.cleared_at = utcnow()
            row.reason = f"{row.reason}; cleared: {why}"
            audit.record(session, actor=actor, action="erasure.mark.cleared",
                         target=f"{row.kind}:{row.name}",
                         details={"mark": row.id, "erasure": row.erasure_id, "why": why})


def _open(project: Project) -> list[OpenMark]:
    with project.store.session(write=False) as session:
        rows = session.execute(select(RetrainingMark).where(
            RetrainingMark.cleared_at.is_(None)).order_by(RetrainingMark.id.desc())).scalars()
        return [OpenMark(r.id, r.kind, r.name, r.erasure_id, r.reason, r.created_at)
                for r in rows]


def _erasures(project: Project, ids: set[int]) -> dict[int, Erasure]:
    with project.store.session(write=False) as session:
        rows = session.execute(select(Erasure).where(Erasure.id.in_(sorted(ids)))).scalars()
        out = {r.id: r for r in rows}
        session.expunge_all()
    return out


def _retrained(project: Project, record: Any, erasure: Erasure) -> str | None:
    """Why a registered model no longer derives from the erasure's data (None if it may)."""
    from tuneloop.data.versions import get_version

    refs = list((getattr(record, "lineage", None) or {}).get("dataset_versions") or [])
    replaced = {d.split(" -> ")[0] for d in erasure.datasets or []}
    if not refs or set(refs) & replaced:
        return None
    for ref in refs:
        try:
            version = get_version(project, ref)
        except NotFound:
            return None
        made = version.created_at
        if made is None or _naive(made) < _naive(erasure.created_at):
            return None
        if _holds_subject(version.path, erasure.subject):
            return None
    return f"retrained on {', '.join(refs)}, made after erasure #{erasure.id} without the subject"


def _holds_subject(folder: Any, subject_hash: str) -> bool:
    needle = subject_hash.encode()
    for path in sorted(folder.glob("*.jsonl")):
        with path.open("rb") as handle:
            if any(needle in line for line in handle):
                return True
    return False


def _naive(moment: Any) -> Any:
    return moment.replace(tzinfo=None) if getattr(moment, "tzinfo", None) else moment


def _registered(project: Project) -> list[Any]:
    from tuneloop.engines.registry import list_models

    return [r for r in list_models(project) if getattr(r, "registered", True)]
