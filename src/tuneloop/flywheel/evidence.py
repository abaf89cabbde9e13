"""Online evidence for promotion: before a variant leaves the internal stage for the public, the
internal users it served must have rated enough of its answers, and liked them not significantly
less than the answers of the variant it would replace.

Satisfaction is the share of rated requests rated up (rating > 0). "Significantly worse" is a
one-sided Fisher exact test at `alpha`: small samples are judged fairly, without a normal
approximation. Only requests answered since the candidate first served are compared, so both
variants are judged on the same period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, func, or_, select

from tuneloop.errors import GateFailed
from tuneloop.store.serving import Feedback, RequestLog

if TYPE_CHECKING:
    from tuneloop.project import Project

@dataclass(frozen=True)
class Satisfaction:
    """Rated requests of one variant and how many were rated up."""

    variant: str
    rated: int
    up: int

    @property
    def rate(self) -> float | None:
        return self.up / self.rated if self.rated else None

    def __str__(self) -> str:
        rate = "n/a" if self.rate is None else f"{self.rate:.0%}"
        return f"{self.variant}: {self.up}/{self.rated} rated up ({rate})"


@dataclass(frozen=True)
class Evidence:
    """The verdict on a candidate and the figures behind it (kept in the rollout's audit event)."""

    passed: bool
    candidate: Satisfaction
    incumbent: Satisfaction | None
    p_value: float | None
    detail: str

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"passed": self.passed, "detail": self.detail,
                                  "candidate": vars(self.candidate), "p_value": self.p_value}
        if self.incumbent is not None:
            out["incumbent"] = vars(self.incumbent)
        return out


def served_by(name: str) -> ColumnElement[bool]:
    """Requests `name` answered: a variant's own (not through a routed variant), or every
    request a routed variant of that name sent to one of its variants."""
    return or_(and_(RequestLog.variant == name, RequestLog.routed_by.is_(None)),
               RequestLog.routed_by == name)


def satisfaction(project: Project, variant: str, *, audience: str | None = "internal",
                 since: object = None) -> Satisfaction:
    """Rated requests of `variant` (latest rating per request), optionally since a time."""
    latest = (select(Feedback.request_id, func.max(Feedback.id).label("fid"))
              .where(Feedback.rating.is_not(None)).group_by(Feedback.request_id).subquery())
    query = (select(Feedback.rating).join(latest, latest.c.fid == Feedback.id)
             .join(RequestLog, RequestLog.id == Feedback.request_id)
             .where(served_by(variant), RequestLog.shadow_of.is_(None)))
    if audience:
        query = query.where(RequestLog.audience == audience)
    if since is not None:
        query = query.where(RequestLog.created_at >= since)
    with project.store.session(write=False) as session:
        ratings = list(session.execute(query).scalars())
    return Satisfaction(variant, len(ratings),
                        sum(1 for r in ratings if r is not None and r > 0))


def evaluate_promotion(project: Project, variant: str, incumbent: str | None, *,
                       min_rated: int | None = None, alpha: float | None = None) -> Evidence:
    """Whether the internal stage's evidence lets `variant` replace `incumbent`.

    `min_rated` and `alpha` default to `rollout.min_rated_requests` and
    `rollout.satisfaction_alpha` in `tuneloop.yaml`.
    """
    settings = project.config.rollout
    min_rated = settings.min_rated_requests if min_rated is None else min_rated
    alpha = settings.satisfaction_alpha if alpha is None else alpha
    with project.store.session(write=False) as session:
        first = session.scalar(select(func.min(RequestLog.created_at)).where(
            served_by(variant), RequestLog.shadow_of.is_(None)))
    candidate = satisfaction(project, variant)
    if candidate.rated < min_rated:
        return Evidence(False, candidate, None, None,
                        f"only {candidate.rated} rated internal requests for {variant!r}; "
                        f"at least {min_rated} are needed")
    if incumbent is None or incumbent == variant:
        return Evidence(True, candidate, None, None, f"{candidate}; nothing to compare with")
    other = satisfaction(project, incumbent, audience=None, since=first)
    if other.rated == 0:
        return Evidence(True, candidate, other, None,
                        f"{candidate}; {incumbent!r} has no ratings in the same period")
    from scipy.stats import fisher_exact

    table = [[candidate.up, candidate.rated - candidate.up], [other.up, other.rated - other.up]]
    p_value = float(fisher_exact(table, alternative="less").pvalue)
    worse = p_value < alpha
    verdict = "significantly worse than" if worse else "not significantly worse than"
    return Evidence(not worse, candidate, other, p_value,
                    f"{candidate} is {verdict} {other} (one-sided Fisher p={p_value:.3g})")


def require_evidence(project: Project, variant: str, incumbent: str | None, *,
                     min_rated: int | None = None, alpha: float | None = None) -> Evidence:
    """`evaluate_promotion`, raising `GateFailed` when the evidence does not allow promotion."""
    evidence = evaluate_promotion(project, variant, incumbent, min_rated=min_rated, alpha=alpha)
    if not evidence.passed:
        raise _refusal(evidence, variant)
    return evidence


def gate_promotion(project: Project, actor: str, alias: str, variant: str,
                   incumbent: str | None) -> dict[str, object]:
    """The rollout's online-evidence gate: an audited refusal, or the evidence to audit."""
    from tuneloop.governance import audit

    evidence = evaluate_promotion(project, variant, incumbent)
    if not evidence.passed:
        audit.record_now(project.store, actor=actor, action="rollout.refused",
                         target=f"variant:{variant}",
                         details={"why": "online evidence", "alias": alias, **evidence.as_dict()})
        raise _refusal(evidence, variant)
    audit.record_now(project.store, actor=actor, action="rollout.evidence",
                     target=f"variant:{variant}", details={"alias": alias, **evidence.as_dict()})
    return evidence.as_dict()


def _refusal(evidence: Evidence, variant: str) -> GateFailed:
    return GateFailed(f"variant {variant!r} cannot leave the internal stage: {evidence.detail}",
                      hint="let internal users rate more answers (POST /v1/feedback), or fix "
                           "what they dislike and try again")
