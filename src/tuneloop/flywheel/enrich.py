"""Enrich: turn what users asked and how they rated it into a new dataset version.

For each selected request (answered, not a shadow copy):

- a corrected answer (from feedback, or a reviewer's edit) replaces the model's output;
- an answer rated up (rating > 0) or accepted by a reviewer is kept as it is;
- an answer rated down (rating < 0) without a correction goes to the review queue, not the data;
- unrated answers are skipped unless asked for.

The new version holds the previous version of the same name plus the new examples (a version is
immutable, so enriching again makes a new one). Near duplicates of the examples already in the
datasets compared against (and of each other) are dropped. Each record's `metadata.request_id`
(and the manifest's `lineage.request_ids`) point back to the log. Using Tier 2 logs is a `train`
use of `logs:VARIANT`, so it needs an approval.
The version is then trained and evaluated like any other (`tuneloop train NAME`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tuneloop.data.dedup import NearDuplicates
from tuneloop.data.records import record_id
from tuneloop.data.versions import SPLITS, DatasetVersion, datasets_dir, get_version, publish
from tuneloop.errors import DataError, NotFound
from tuneloop.flywheel import review
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor
from tuneloop.store.flywheel import ReviewItem
from tuneloop.store.serving import Feedback, RequestLog

if TYPE_CHECKING:
    from tuneloop.project import Project

SPLIT_SHARES = (("train", 0.8), ("validation", 0.1), ("test", 0.1))


@dataclass(frozen=True)
class Filters:
    """Which logged requests to consider. `slice` keeps requests whose predicted slice it is
    (routed requests) or whose prompt mentions it."""

    variant: str | None = None
    audience: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    min_rating: int | None = None
    slice: str | None = None
    include_unrated: bool = False


@dataclass
class EnrichReport:
    """What `enrich` did: the version written (None when nothing qualified) and the counts."""

    version: DatasetVersion | None
    counts: Counter[str] = field(default_factory=Counter)
    queued: list[str] = field(default_factory=list)  # request ids sent to review
    request_ids: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    log: RequestLog
    answer: str
    how: str  # correction | review-edit | review-accept | rated | unrated
    feedback_id: int | None


def enrich(project: Project, actor: Actor, name: str, *, filters: Filters | None = None,
           against: Iterable[str] | None = None, threshold: float | None = None) -> EnrichReport:
    """Build dataset version `name` from the request log and feedback; see the module doc.

    `against` names datasets (`name` or `name@id`) whose examples the new ones must not nearly
    duplicate; by default every dataset of the config and `name` itself. Raises
    `ApprovalRequired` when a selected request is Tier 2 and no live `train` approval covers its
    variant's log.
    """
    filters = filters or Filters()
    report = EnrichReport(version=None)
    logs, feedback, items = _select(project, filters)
    approvals = _gate_logs(project, actor, name, logs)
    candidates = _candidates(project, logs, feedback, items, filters, report)
    previous = _previous(project, name)
    compared = _existing(project, name, against)
    if previous is not None and previous.ref not in {v.ref for v in compared}:
        compared.append(previous)
    if compared:
        # Reading the earlier versions (to extend them and to drop near duplicates) is a use of
        # their data too; the approvals relied on are the caller's own, for the new lineage.
        approvals = sorted({*approvals, *require(
            project.store, actor, "train", [v.resource for v in compared],
            purpose=f"enrich dataset {name}: the versions it extends or is compared with")})
    records = _new_records(candidates, compared, threshold or _threshold(project, name),
                           filters, report)
    _keep_predicted_slices(project, name, records, logs)
    report.request_ids = [r["metadata"]["request_id"] for r in records]
    if not records:
        return report
    kept = set(report.request_ids)
    tier, roots = _taint([log for log in logs if log.id in kept], previous)
    report.version = _write(project, actor, name, records, tier, sorted(roots), approvals,
                            filters, report, previous)
    return report


def _gate_logs(project: Project, actor: Actor, name: str, logs: list[RequestLog]) -> list[int]:
    """Every use is audited; the Tier 2 logs of a variant need a `train` approval for them."""
    if not logs:
        return []
    tiers: dict[str, int] = {}
    for log in logs:
        key = log.variant or "unrouted"
        tiers[key] = max(tiers.get(key, 1), log.tier)
    resources = [review.logs_resource(v, t) for v, t in sorted(tiers.items())]
    return require(project.store, actor, "train", resources,
                   purpose=f"enrich dataset {name} from the request log")


def _new_records(candidates: list[_Candidate], compared: list[DatasetVersion], threshold: float,
                 filters: Filters, report: EnrichReport) -> list[dict[str, Any]]:
    """The candidates as dataset records, without near duplicates of the compared versions'
    examples or of each other; counts what was kept and why in `report`."""
    dedup = NearDuplicates(threshold)
    for existing in compared:
        for split in SPLITS:
            for record in existing.iter_split(split):
                dedup.add(_text(record["messages"]))
    built = []
    for cand in candidates:
        messages = [*_messages(cand.log.prompt), {"role": "assistant", "content": cand.answer}]
        built.append((cand, messages, dedup.add(_text(messages))))
    # The existing examples were added first, so a new one whose cluster root is earlier (an
    # existing example or an earlier new one) is the near duplicate, never the other way round.
    duplicate_of = dedup.resolve().duplicate_of
    records: list[dict[str, Any]] = []
    for cand, messages, index in built:
        if duplicate_of[index] >= 0:
            report.counts["near_duplicate"] += 1
            continue
        report.counts[cand.how] += 1
        records.append({"id": record_id(messages), "messages": messages,
                        "metadata": {"source": "logs", "request_id": cand.log.id,
                                     "variant": cand.log.variant, "how": cand.how,
                                     "feedback_id": cand.feedback_id,
                                     **({"slice": filters.slice} if filters.slice else {})},
                        "subject": cand.log.subject})
    return records


def _keep_predicted_slices(project: Project, name: str, records: list[dict[str, Any]],
                           logs: list[RequestLog]) -> None:
    """Keep what a routed variant's router predicted (slice, confidence) on each new record,
    and fill the dataset's `slice_field` with it where the record has none, so a router can be
    retrained from production traffic (`metadata.slice_source` says the label is predicted)."""
    by_id = {log.id: log for log in logs}
    config = project.config.dataset(name)
    slice_field = config.slice_field if config is not None else None
    for record in records:
        log = by_id.get(record["metadata"]["request_id"])
        if log is None or log.predicted_slice is None:
            continue
        meta = record["metadata"]
        meta["predicted_slice"] = log.predicted_slice
        meta["slice_confidence"] = log.slice_confidence
        if slice_field and slice_field not in meta:
            meta[slice_field], meta["slice_source"] = log.predicted_slice, "router"


def _taint(used: list[RequestLog], previous: DatasetVersion | None) -> tuple[int, set[str]]:
    """The new version's tier and Tier 2 roots: the logs it holds, named as the approval names
    them, and the previous version it extends."""
    tier = max(log.tier for log in used)
    roots = {f"logs:{log.variant or 'unrouted'}" for log in used if log.tier >= 2}
    if previous is not None:
        tier = max(tier, previous.tier)
        roots |= previous.roots
    return tier, roots


def _select(project: Project, f: Filters) -> tuple[list[RequestLog], dict[str, list[Feedback]],
                                                   dict[str, ReviewItem]]:
    # Only answers of variants: embedding requests (no variant) have no answer to learn from.
    query = select(RequestLog).where(RequestLog.status == 200, RequestLog.shadow_of.is_(None),
                                     RequestLog.variant.is_not(None))
    if f.variant:
        query = query.where(RequestLog.variant == f.variant)
    if f.audience:
        query = query.where(RequestLog.audience == f.audience)
    if f.since:
        query = query.where(RequestLog.created_at >= f.since)
    if f.until:
        query = query.where(RequestLog.created_at < f.until)
    with project.store.session(write=False) as session:
        logs = list(session.execute(query.order_by(RequestLog.created_at, RequestLog.id))
                    .scalars())
        if f.slice:
            needle = f.slice.lower()
            logs = [log for log in logs if (log.predicted_slice or "").lower() == needle
                    or any(needle in str(m.get("content") or "").lower() for m in log.prompt)]
        ids = [log.id for log in logs]
        feedback: dict[str, list[Feedback]] = {}
        items: dict[str, ReviewItem] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for fb in session.execute(select(Feedback).where(Feedback.request_id.in_(chunk))
                                      .order_by(Feedback.id)).scalars():
                feedback.setdefault(fb.request_id, []).append(fb)
            for item in session.execute(select(ReviewItem)
                                        .where(ReviewItem.request_id.in_(chunk))).scalars():
                items[item.request_id] = item
    # Requests nobody rated or reviewed carry no signal; keep them only when asked to.
    if not f.include_unrated:
        logs = [log for log in logs if log.id in feedback or log.id in items]
    return logs, feedback, items


def _candidates(project: Project, logs: list[RequestLog], feedback: dict[str, list[Feedback]],
                items: dict[str, ReviewItem], f: Filters,
                report: EnrichReport) -> list[_Candidate]:
    out: list[_Candidate] = []
    to_queue: list[tuple[RequestLog, Feedback]] = []
    for log in logs:
        given = feedback.get(log.id, [])
        correction = next((fb for fb in reversed(given) if fb.corrected), None)
        rated = next((fb for fb in reversed(given) if fb.rating is not None), None)
        item = items.get(log.id)
        if correction is not None:
            out.append(_Candidate(log, correction.corrected or "", "correction", correction.id))
        elif item is not None and item.status == "edited" and item.answer:
            out.append(_Candidate(log, item.answer, "review-edit", item.feedback_id))
        elif item is not None and item.status == "accepted":
            out.append(_Candidate(log, log.output, "review-accept", item.feedback_id))
        elif item is not None:
            report.counts["in_review" if item.status == "open" else "rejected"] += 1
        elif rated is not None and rated.rating is not None and rated.rating < 0:
            to_queue.append((log, rated))
        elif rated is not None and rated.rating is not None:
            if f.min_rating is not None and rated.rating < f.min_rating:
                report.counts["below_min_rating"] += 1
            elif rated.rating > 0:
                out.append(_Candidate(log, log.output, "rated", rated.id))
            else:
                report.counts["neutral"] += 1
        elif f.include_unrated and f.min_rating is None:
            out.append(_Candidate(log, log.output, "unrated", None))
        else:
            report.counts["unrated"] += 1
    if to_queue:
        with project.store.session() as session:
            for log, fb in to_queue:
                review.enqueue(session, log, fb, "rated down without a correction")
                report.queued.append(log.id)
        report.counts["queued_for_review"] += len(to_queue)
    return [c for c in out if c.answer.strip()]


def _threshold(project: Project, name: str) -> float:
    recipe = project.config.dataset(name)
    return recipe.near_dup_threshold if recipe else 0.85


def _existing(project: Project, name: str, against: Iterable[str] | None) -> list[DatasetVersion]:
    refs = list(against) if against is not None else [d.name for d in project.config.datasets]
    if against is None:
        refs.append(name)
    found = []
    for ref in dict.fromkeys(refs):
        try:
            found.append(get_version(project, ref))
        except NotFound:
            if against is not None:
                raise
    return found


def _messages(prompt: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The logged prompt in the roles training records use (OpenAI's `developer` is a system
    message; tool messages carry no conversation a model should learn to write)."""
    out = []
    for m in prompt:
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role in ("system", "user", "assistant"):
            out.append({"role": str(role), "content": str(m.get("content") or "")})
    return out


def _previous(project: Project, name: str) -> DatasetVersion | None:
    try:
        return get_version(project, name)
    except NotFound:
        return None


def _text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def _split_of(rid: str) -> str:
    # Deterministic by record id, so rebuilding on the same log gives the same version.
    point = int(hashlib.sha256(rid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for split, share in SPLIT_SHARES:
        edge += share
        if point <= edge:
            return split
    return "train"


def _write(project: Project, actor: Actor, name: str, records: list[dict[str, Any]], tier: int,
           roots: list[str], approvals: list[int], f: Filters, report: EnrichReport,
           previous: DatasetVersion | None) -> DatasetVersion:
    # Earlier examples keep their split, so a test example never moves into training.
    by_split: dict[str, list[dict[str, Any]]] = {
        s: list(previous.iter_split(s)) if previous is not None else [] for s in SPLITS}
    for record in records:
        by_split[_split_of(record["id"])].append(record)
    if not by_split["train"]:
        # Too few records for the shares to fill the train split: training needs something.
        moved = by_split["validation"] or by_split["test"]
        by_split["train"].append(moved.pop())
    root = datasets_dir(project) / name
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        digest = hashlib.sha256()
        for split in SPLITS:
            lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in by_split[split]]
            text = "".join(line + "\n" for line in lines)
            digest.update(f"{split}\n{text}".encode())
            (staging / f"{split}.jsonl").write_text(text, encoding="utf-8")
        (staging / "rejects.jsonl").write_text("", encoding="utf-8")
        manifest = {
            "name": name, "id": digest.hexdigest()[:16], "tier": tier, "roots": roots,
            "approvals": approvals, "counts": {s: len(v) for s, v in by_split.items()},
            "recipe": {"kind": "enrich", "filters": _jsonable(f)},
            "steps": dict(report.counts),
            "lineage": {"request_ids": [r["metadata"]["request_id"] for s in SPLITS
                                        for r in by_split[s]
                                        if (r.get("metadata") or {}).get("request_id")],
                        "new_request_ids": report.request_ids,
                        "parent": previous.ref if previous is not None else None,
                        "queued_for_review": report.queued},
        }
        return publish(project, staging, manifest, created_by=actor.name)
    except OSError as exc:
        raise DataError(f"cannot write dataset version of {name!r}: {exc}",
                        path=str(staging)) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _jsonable(f: Filters) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in vars(f).items():
        out[key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return out


__all__ = ["EnrichReport", "Filters", "enrich"]
