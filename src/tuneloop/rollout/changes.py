"""Changing a rollout: set a stage, promote, roll back, withdraw; each change audited and kept.

Every change is kept with the whole state before it, so `rollback` restores exactly what was
there. Going public passes `rollout.gates`; leaving `internal` also needs online evidence
(`flywheel.evidence`), and a variant derived from erased data stays internal (`flywheel.marks`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from tuneloop.errors import NotFound, TuneloopError
from tuneloop.governance import audit
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.rollout import members
from tuneloop.rollout.gates import PUBLIC_STAGES, check_actor, check_gates
from tuneloop.rollout.state import AliasState, Entry, aliases, state
from tuneloop.store.models import utcnow
from tuneloop.store.serving import STAGES, Rollout, RolloutChange

DEFAULT_PUBLIC_PERCENT = 10.0


def _apply(project: Project, actor: Actor, alias: str, action: str, variant: str,
           after: list[Entry], reason: str, evidence: dict[str, Any] | None = None,
           undo: int | None = None) -> AliasState:
    with project.store.session() as session:
        rows = session.execute(select(Rollout).where(Rollout.alias == alias)).scalars().all()
        before = [Entry(r.variant, r.stage, r.percent).as_dict() for r in rows]
        previous = {r.variant: r for r in rows}
        session.execute(delete(Rollout).where(Rollout.alias == alias,
                                              Rollout.variant.not_in([e.variant for e in after])))
        now = utcnow()
        for entry in after:
            row = previous.get(entry.variant)
            if row is None:
                session.add(Rollout(alias=alias, variant=entry.variant, stage=entry.stage,
                                    percent=entry.percent, updated_by=actor.name, updated_at=now))
            elif (row.stage, row.percent) != (entry.stage, entry.percent):
                row.stage, row.percent = entry.stage, entry.percent
                row.updated_by, row.updated_at = actor.name, now
        if undo is not None:
            undone = session.get(RolloutChange, undo)
            if undone is not None:
                undone.rolled_back = True
        change = RolloutChange(alias=alias, action=action, variant=variant, before=before,
                               after=[e.as_dict() for e in after], actor=actor.name, reason=reason)
        session.add(change)
        session.flush()
        audit.record(session, actor=actor.name, action=f"rollout.{action}",
                     target=f"alias:{alias}", tier=(evidence or {}).get("tier"),
                     details={"variant": variant, "before": before,
                              "after": [e.as_dict() for e in after], "reason": reason,
                              "change": change.id, **(evidence or {})})
    return state(project, alias)


def set_stage(project: Project, actor: Actor, alias: str, variant: str, stage: str, *,
              percent: float | None = None, reason: str = "") -> AliasState:
    """Put `variant` at `stage` for `alias` (`off` removes it). Going public passes the gates.

    At `all` the variant becomes the stable one: the previous `all` variant leaves the rollout.
    """
    return _set(project, actor, alias, variant, stage, percent, reason, "set")


def _set(project: Project, actor: Actor, alias: str, variant: str, stage: str,
         percent: float | None, reason: str, action: str) -> AliasState:
    if stage not in (*STAGES, "off"):
        raise TuneloopError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}, off")
    members.check_exists(project, variant)  # NotFound names the variants that exist
    check_actor(project, actor, alias, f"set {variant} {stage}")
    if stage == "public":
        percent = DEFAULT_PUBLIC_PERCENT if percent is None else percent
        if not 0 < percent <= 100:
            raise TuneloopError(f"public traffic share must be in (0, 100], got {percent:g}")
    else:
        percent = 100.0 if stage == "all" else 0.0
    members.check_stage(project, actor, variant, stage)  # derived from erased data: internal
    evidence = check_gates(project, actor, variant) if stage in PUBLIC_STAGES else None
    current = state(project, alias)
    others = [e for e in current.entries if e.variant != variant]
    if stage == "all":
        others = [e for e in others if e.stage != "all"]
    if stage == "public":
        share = sum(e.percent for e in others if e.stage == "public") + percent
        if share > 100:
            raise TuneloopError(f"public traffic shares of {alias!r} would add up to {share:g}%")
    after = others + ([Entry(variant, stage, percent)] if stage != "off" else [])
    return _apply(project, actor, alias, action, variant, after, reason, evidence)


def withdraw(project: Project, actor: Actor, alias: str, variant: str, reason: str) -> AliasState:
    """Move `variant` back to `internal` for `alias` at once (erasure's withdrawal; audited).

    No role check: it only ever narrows who is served, and its caller (erasure) checked the role.
    """
    after = [Entry(e.variant, "internal", 0.0) if e.variant == variant else e
             for e in state(project, alias).entries]
    return _apply(project, actor, alias, "withdraw", variant, after, reason)


def withdraw_from_public(project: Project, actor: Actor, variants: list[str],
                         reason: str) -> list[str]:
    """Take `variants` off every public stage of every alias now, back to `internal` (audited).

    Erasure's step for variants derived from erased data (`flywheel.erasure.erase` takes it as
    `withdraw`); returns what moved, as "alias: variant (stage -> internal)".
    """
    moved = []
    for alias in aliases(project):
        for entry in state(project, alias).entries:
            if entry.variant in variants and entry.stage in PUBLIC_STAGES:
                withdraw(project, actor, alias, entry.variant, reason)
                moved.append(f"{alias}: {entry.variant} ({entry.stage} -> internal)")
    return moved


def promote(project: Project, actor: Actor, alias: str, variant: str, *,
            percent: float | None = None, reason: str = "") -> AliasState:
    """Move `variant` one stage on: shadow → internal → public (percent) → all.

    At `public`, giving a larger `percent` raises its share instead; 100 % means `all`.
    """
    entry = next((e for e in state(project, alias).entries if e.variant == variant), None)
    if entry is None:
        raise NotFound(f"variant {variant!r} is not in the rollout of {alias!r}",
                       hint=f"start it: `tuneloop rollout set {alias} {variant} --stage shadow`")
    if entry.stage == "all":
        raise TuneloopError(f"variant {variant!r} already serves all of {alias!r}")
    if entry.stage == "public" and percent is not None and percent < 100:
        if percent <= entry.percent:
            raise TuneloopError(f"{variant!r} already serves {entry.percent:g}% of the public; "
                                "promote to a larger share")
        new_stage = "public"
    else:
        new_stage = STAGES[STAGES.index(entry.stage) + 1]
        if new_stage == "public" and percent is not None and percent >= 100:
            new_stage = "all"
    if entry.stage == "internal" and new_stage in PUBLIC_STAGES:
        members.check_stage(project, actor, variant, new_stage)  # before the evidence
        # Leaving the internal stage also needs its online evidence (ratings by internal users).
        from tuneloop.flywheel.evidence import gate_promotion

        stable = next((e.variant for e in state(project, alias).at("all")), None)
        gate_promotion(project, actor.name, alias, variant, stable)
    return _set(project, actor, alias, variant, new_stage, percent, reason, "promote")


def rollback(project: Project, actor: Actor, alias: str, *, reason: str = "") -> AliasState:
    """Undo the latest change to `alias` that has not been undone: restore its state before."""
    check_actor(project, actor, alias, "rollback")
    with project.store.session(write=False) as session:
        last = session.execute(
            select(RolloutChange).where(RolloutChange.alias == alias,
                                        RolloutChange.action != "rollback",
                                        RolloutChange.rolled_back.is_(False))
            .order_by(RolloutChange.id.desc()).limit(1)).scalar_one_or_none()
    if last is None:
        raise NotFound(f"nothing to roll back for {alias!r}",
                       hint=f"`tuneloop rollout status {alias}` shows its history")
    restored = [Entry(e["variant"], e["stage"], e["percent"]) for e in last.before]
    return _apply(project, actor, alias, "rollback", last.variant, restored,
                  reason or f"undo change #{last.id}", undo=last.id)
