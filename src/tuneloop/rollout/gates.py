"""The gates a variant passes on its way to the public: evaluation, approvals, who may act.

Reaching `public` or `all` needs the variant's latest evaluation to have passed its gates and, for
a Tier 2 variant, a live `deploy-public` approval; only an internal developer or admin changes a
rollout. Every refusal is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tuneloop.errors import GateFailed, NotFound, PermissionDenied
from tuneloop.governance import approvals, audit, principals, require
from tuneloop.governance.tiers import Actor, Resource, covering_grant
from tuneloop.project import Project
from tuneloop.store.models import utcnow
from tuneloop.store.serving import Rollout

PUBLIC_STAGES = ("public", "all")


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


def check_actor(project: Project, actor: Actor, alias: str, action: str) -> None:
    if actor.role in ("developer", "admin") and actor.audience == "internal":
        return
    why = f"{actor.name} ({actor.role}, {actor.audience}) may not change rollouts"
    audit.record_now(project.store, actor=actor.name, action="rollout.refused",
                     target=f"alias:{alias}", details={"attempted": action, "why": why})
    raise PermissionDenied(why, hint="an internal developer or admin changes rollouts")


def check_gates(project: Project, actor: Actor, variant: str) -> dict[str, Any]:
    """Refuse (audited) unless the variant may reach the public; returns the evidence."""
    from tuneloop.rollout.members import resource_of

    resource = resource_of(project, variant)
    gate = latest_gate_status(project, variant)
    if not gate.passed:
        audit.record_now(project.store, actor=actor.name, action="rollout.refused",
                         target=f"variant:{variant}", tier=resource.tier,
                         details={"why": "evaluation gates", "detail": gate.detail,
                                  "run": gate.run_id})
        raise GateFailed(
            f"variant {variant!r} cannot go public: its latest evaluation did not pass its gates"
            + (f" ({gate.detail})" if gate.detail else ""),
            hint=f"run `tuneloop eval --variants {variant}` and fix what fails first")
    approvals: list[int] = []
    if resource.tier >= 2:
        # A Tier 2 variant in front of customers is a use of customer data: the one gate decides.
        approvals = require(project.store, actor, "deploy-public", [resource],
                            purpose=f"serve variant {variant} to the public")
    return {"eval_run": gate.run_id, "approvals": approvals, "tier": resource.tier}


