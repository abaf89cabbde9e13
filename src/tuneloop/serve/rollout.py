"""Rollout: which variant serves which audience of an application alias, and how it advances.

Stages, in order: `shadow` (gets a copy of internal traffic; its answers are logged, never
returned), `internal` (serves every internal caller), `public` (also serves `percent` % of public
callers, chosen by a sticky hash of caller and alias), `all` (serves everyone not sent elsewhere).
Reaching `public` or `all` needs the variant's latest evaluation to have passed its gates and, for
a Tier 2 variant, a live `deploy-public` approval. Every change is audited and kept with the whole
state before it, so `rollback` restores exactly what was there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select

from tuneloop.errors import GateFailed, NotFound, PermissionDenied, TuneloopError
from tuneloop.governance import approvals, audit, principals, require
from tuneloop.governance.tiers import Actor, Resource, covering_grant
from tuneloop.project import Project
from tuneloop.store.models import utcnow
from tuneloop.store.serving import STAGES, Rollout, RolloutChange

PUBLIC_STAGES = ("public", "all")
DEFAULT_PUBLIC_PERCENT = 10.0


@dataclass(frozen=True)
class GateStatus:
    """Whether a variant's latest evaluation passed its gates, and which run said so."""

    passed: bool
    run_id: int | None = None
    detail: str = ""


def latest_gate_status(project: Project, variant: str) -> GateStatus:
    """The seam to the evaluation stage: did `variant`'s latest evaluation pass its gates?

    Reads the newest completed run in `eval_runs` that evaluated the variant (its summary's
    `per_variant[variant].passed`); a variant never evaluated has not passed.
    """
    from tuneloop.store.evals import EvalRun

    with project.store.session(write=False) as session:
        runs = session.execute(select(EvalRun).where(EvalRun.status == "completed")
                               .order_by(EvalRun.id.desc()).limit(500)).scalars()
        for run in runs:
            if variant not in (run.variants or []):
                continue
            result = (run.summary or {}).get("per_variant", {}).get(variant, {})
            failed = [str(g.get("gate", "?")) for g in result.get("gates", [])
                      if isinstance(g, dict) and g.get("required") and g.get("status") == "fail"]
            detail = f"eval run #{run.id}" + (f": failed {', '.join(failed)}"
                                              if failed else "")
            return GateStatus(bool(result.get("passed")), run.id, detail)
    return GateStatus(False, None, "no completed evaluation of this variant was found")


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


def public_approval_live(project: Project, alias: str, variant: str,
                         resource: Resource) -> bool:
    """Whether a Tier 2 variant may still be served to the public through `alias`.

    Going public needed a live `deploy-public` approval held by whoever put the variant there;
    this asks the same rule again, so a revoked or expired approval stops public traffic.
    """
    if resource.tier < 2:
        return True
    with project.store.session(write=False) as session:
        row = session.execute(select(Rollout).where(
            Rollout.alias == alias, Rollout.variant == variant)).scalar_one_or_none()
    if row is None or row.stage not in PUBLIC_STAGES:
        return False
    try:
        deployer = principals.get_actor(project.store, row.updated_by)
    except NotFound:
        return False
    grants = approvals.grants_for(project.store, deployer)
    return covering_grant(deployer, resource, "deploy-public", grants, utcnow()) is not None


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


def _check_actor(project: Project, actor: Actor, alias: str, action: str) -> None:
    if actor.role in ("developer", "admin") and actor.audience == "internal":
        return
    why = f"{actor.name} ({actor.role}, {actor.audience}) may not change rollouts"
    audit.record_now(project.store, actor=actor.name, action="rollout.refused",
                     target=f"alias:{alias}", details={"attempted": action, "why": why})
    raise PermissionDenied(why, hint="an internal developer or admin changes rollouts")


def _check_gates(project: Project, actor: Actor, variant: str) -> dict[str, Any]:
    """Refuse (audited) unless the variant may reach the public; returns the evidence."""
    from tuneloop.variants import get_variant

    resource = get_variant(project, variant).resource
    gate = latest_gate_status(project, variant)
    if not gate.passed:
        audit.record_now(project.store, actor=actor.name, action="rollout.refused",
                         target=f"variant:{variant}", tier=resource.tier,
                         details={"why": "evaluation gates", "detail": gate.detail,
                                  "run": gate.run_id})
        raise GateFailed(
            f"variant {variant!r} cannot go public: its latest evaluation did not pass its gates"
            + (f" ({gate.detail})" if gate.detail else ""),
            hint=f"run `tuneloop evaluate --variant {variant}` and fix what fails first")
    approvals: list[int] = []
    if resource.tier >= 2:
        # A Tier 2 variant in front of customers is a use of customer data: the one gate decides.
        approvals = require(project.store, actor, "deploy-public", [resource],
                            purpose=f"serve variant {variant} to the public")
    return {"eval_run": gate.run_id, "approvals": approvals, "tier": resource.tier}


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
    from tuneloop.variants import get_variant

    get_variant(project, variant)  # NotFound names the variants that exist
    _check_actor(project, actor, alias, f"set {variant} {stage}")
    if stage == "public":
        percent = DEFAULT_PUBLIC_PERCENT if percent is None else percent
        if not 0 < percent <= 100:
            raise TuneloopError(f"public traffic share must be in (0, 100], got {percent:g}")
    else:
        percent = 100.0 if stage == "all" else 0.0
    from tuneloop.flywheel.marks import check_stage

    check_stage(project, actor, variant, stage)  # derived from erased data: internal at most
    evidence = _check_gates(project, actor, variant) if stage in PUBLIC_STAGES else None
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
        from tuneloop.flywheel.marks import check_stage

        check_stage(project, actor, variant, new_stage)  # before the evidence: the first reason
        # Leaving the internal stage also needs its online evidence (ratings by internal users).
        from tuneloop.flywheel.evidence import gate_promotion

        stable = next((e.variant for e in state(project, alias).at("all")), None)
        gate_promotion(project, actor.name, alias, variant, stable)
    return _set(project, actor, alias, variant, new_stage, percent, reason, "promote")


def rollback(project: Project, actor: Actor, alias: str, *, reason: str = "") -> AliasState:
    """Undo the latest change to `alias` that has not been undone: restore its state before."""
    _check_actor(project, actor, alias, "rollback")
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
