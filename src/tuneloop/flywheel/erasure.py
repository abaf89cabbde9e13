"""Erasure: remove one data subject from the request log, feedback, review queue, dataset
versions, evaluation outputs and the retrieval index; mark every model and variant derived from
the affected data as needing retraining; purge the database files; verify nothing is left.

The subject is found by the hash records carry (`subject`, from the source's `subject_field` or
the API's `user` field), by being the principal who made a request, and by any of the identifying
strings given (the id itself, a name, ...) appearing in stored text. Only the privacy team and
admins may erase; every erasure is audited with the subject's hash, never the id in clear.

Marked variants leave the public at once through the `withdraw` step the caller passes in
(`rollout.withdraw_from_public`): rollout sits above flywheel and reads its marks, so erasure
does not import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from tuneloop.data.versions import MANIFEST, list_versions
from tuneloop.engines.registry import list_models
from tuneloop.errors import PermissionDenied
from tuneloop.flywheel import erase_files, marks
from tuneloop.flywheel.purge import PurgeReport, purge
from tuneloop.flywheel.retention import BATCH, delete_logs, deleted
from tuneloop.flywheel.subject import Subject
from tuneloop.governance import audit
from tuneloop.governance.tiers import Actor
from tuneloop.store.evals import EvalOutput
from tuneloop.store.flywheel import Erasure, RetrainingMark, ReviewDecision, ReviewItem
from tuneloop.store.models import utcnow
from tuneloop.store.rag import RagChunk, RagDocument, RagIndexState
from tuneloop.store.runs import Run
from tuneloop.store.serving import Feedback, RequestLog

if TYPE_CHECKING:
    from tuneloop.project import Project

ROLES = ("privacy", "admin")
TOUCHED_TABLES = [RequestLog.__tablename__, Feedback.__tablename__, ReviewItem.__tablename__,
                  ReviewDecision.__tablename__, EvalOutput.__tablename__,
                  RagChunk.__tablename__, RagDocument.__tablename__]


class Withdraw(Protocol):
    """Takes `variants` off every public stage now (audited with `reason`); returns what moved,
    as "alias: variant (stage -> internal)". `rollout.withdraw_from_public` is the one."""

    def __call__(self, project: Project, actor: Actor, variants: list[str],
                 reason: str) -> list[str]: ...


@dataclass
class ErasureReport:
    """What one erasure removed, what it marked, and what it could not reach."""

    id: int
    subject_hash: str
    counts: dict[str, int] = field(default_factory=dict)
    datasets: list[erase_files.DatasetRewrite] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    files_removed: list[Path] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    purge: PurgeReport = field(default_factory=PurgeReport)
    residue: list[Path] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)  # "alias: variant (public -> internal)"
    artefacts: list[Path] = field(default_factory=list)  # model files naming them: kept, marked
    exports: list[str] = field(default_factory=list)  # copies that left the project


def erase(project: Project, actor: Actor, subject_id: str, *, withdraw: Withdraw,
          also: list[str] | tuple[str, ...] = ()) -> ErasureReport:
    """Erase the subject `subject_id` (also known by the strings in `also`); see the module doc.

    `withdraw` takes the variants it marks off the public (`rollout.withdraw_from_public`).
    """
    if actor.role not in ROLES:
        audit.record_now(project.store, actor=actor.name, action="erasure.refused",
                         target="subject", details={"why": f"role {actor.role}"})
        raise PermissionDenied(f"{actor.name} ({actor.role}) may not erase data subjects",
                               hint="the privacy team or an admin runs `tuneloop erase`")
    subject = Subject.of(subject_id, also)
    with project.store.session() as session:
        receipt = Erasure(subject=subject.hash, actor=actor.name, counts={}, datasets=[],
                          models=[], variants=[])
        session.add(receipt)
        session.flush()
        report = ErasureReport(id=receipt.id, subject_hash=subject.hash)
    report.datasets = erase_files.rewrite_datasets(project, subject, report.id, actor.name)
    report.counts["dataset_records"] = sum(d.removed for d in report.datasets)
    erased_texts = [t for d in report.datasets for t in d.texts]
    with project.store.session() as session:
        counts, texts = _erase_logs(session, subject)
        report.counts.update(counts)
        erased_texts += texts
        record_ids = {rid for d in report.datasets for rid in d.record_ids if rid}
        report.counts["eval_outputs"] = _erase_eval_outputs(session, subject, record_ids)
        report.counts["chunks"], texts = _erase_chunks(session, subject)
        erased_texts += texts
    report.models, report.variants = _derived(project, {d.old for d in report.datasets})
    report.exports = exports_of(project, [d.old for d in report.datasets], report.models)
    with project.store.session() as session:
        for kind, names in (("model", report.models), ("variant", report.variants)):
            for name in names:
                session.add(RetrainingMark(kind=kind, name=name, erasure_id=report.id,
                                           reason="trained on or serving data since erased"))
        row = session.get(Erasure, report.id)
        assert row is not None  # written above, never deleted
        row.counts = dict(report.counts)
        row.datasets = [f"{d.old} -> {d.new}" for d in report.datasets]
        row.models, row.variants = report.models, report.variants
        audit.record(session, actor=actor.name, action="erasure", target=f"subject:{subject.hash}",
                     tier=2, details={"erasure": report.id, "counts": report.counts,
                                      "datasets": row.datasets, "models": report.models,
                                      "variants": report.variants,
                                      "exports_outside": report.exports})
    report.withdrawn = withdraw(project, actor, report.variants,
                                reason=f"withdrawn from the public by erasure #{report.id}: "
                                       "derived from erased data, needs retraining")
    if report.counts["chunks"]:
        _rebuild_index(project)
    # Derived files are also looked for by what the erased records said, not only by name.
    known = subject.with_fragments(erased_texts)
    report.files_removed = erase_files.sweep(project, known)
    report.sources = erase_files.sources_mentioning(project, subject)
    report.purge = purge(project.store, TOUCHED_TABLES)
    report.residue = erase_files.scan(project, known)
    report.artefacts = erase_files.artefacts_mentioning(project, subject)
    return report


def exports_of(project: Project, refs: list[str],
               models: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Recorded exports of these dataset versions, and model exports made from them or from
    these models: copies that left the project, by path."""
    from tuneloop.data.export import list_exports
    from tuneloop.flywheel.model_exports import describe, list_model_exports

    found = [f"{e.path} ({e.format} of {e.dataset_version}, by {e.actor}, "
             f"{e.created_at:%Y-%m-%d %H:%M} UTC)" for e in list_exports(project, refs)]
    return found + [describe(m) for m in list_model_exports(project, refs, list(models))]


def _log_ids(session: Session, subject: Subject) -> set[str]:
    """The requests the subject made, was made for, or is named in (and their shadow copies)."""
    ids = set(session.execute(select(RequestLog.id).where(
        or_(RequestLog.subject == subject.hash, RequestLog.principal == subject.id))).scalars())
    # Free text: the subject may be named in anyone's request (a colleague asking about them).
    for rid, prompt, output, error in _batches(session, select(
            RequestLog.id, RequestLog.prompt, RequestLog.output, RequestLog.error), RequestLog.id):
        if subject.matches(prompt, output, error):
            ids.add(rid)
    # Shadow copies carry the same prompt as the request they copied.
    found = sorted(ids)
    for start in range(0, len(found), BATCH):
        ids |= set(session.execute(select(RequestLog.id).where(
            RequestLog.shadow_of.in_(found[start:start + BATCH]))).scalars())
    return ids


def _erase_logs(session: Session, subject: Subject) -> tuple[dict[str, int], list[str]]:
    ids = _log_ids(session, subject)
    feedback_ids = [fid for fid, comment, corrected in _batches(
        session, select(Feedback.id, Feedback.comment, Feedback.corrected), Feedback.id)
        if subject.matches(comment, corrected)]
    items = [iid for iid, answer in _batches(session, select(ReviewItem.id, ReviewItem.answer),
                                             ReviewItem.id) if subject.matches(answer)]
    counts = {"request_logs": 0, "feedback": 0, "review_items": 0}
    ordered = sorted(ids)
    texts: list[str] = []
    for start in range(0, len(ordered), BATCH):
        for (prompt,) in session.execute(select(RequestLog.prompt).where(
                RequestLog.id.in_(ordered[start:start + BATCH]))):
            # What the subject wrote; answers are often generic and shared with others.
            texts += [str(m.get("content") or "") for m in prompt or []
                      if m.get("role") == "user"]
    for start in range(0, len(ordered), BATCH):
        done = delete_logs(session, ordered[start:start + BATCH])
        for key in ("feedback", "review_items"):
            counts[key] += done[key]
        counts["request_logs"] += done["logs"]
    if feedback_ids:
        counts["feedback"] += deleted(session, delete(Feedback).where(
            Feedback.id.in_(feedback_ids)))
    notes = [did for did, note in _batches(session, select(ReviewDecision.id, ReviewDecision.note),
                                           ReviewDecision.id) if subject.matches(note)]
    if notes:
        # The decision stays recorded; only what the reviewer wrote about the subject goes.
        session.execute(update(ReviewDecision).where(ReviewDecision.id.in_(notes))
                        .values(note="[erased]"))
    if items:
        session.execute(delete(ReviewDecision).where(ReviewDecision.item_id.in_(items)))
        counts["review_items"] += deleted(session, delete(ReviewItem).where(
            ReviewItem.id.in_(items)))
    return counts, texts


def _erase_eval_outputs(session: Session, subject: Subject, record_ids: set[str]) -> int:
    doomed = [oid for oid, rid, prompt, reference, output in _batches(
        session, select(EvalOutput.id, EvalOutput.record_id, EvalOutput.prompt,
                        EvalOutput.reference, EvalOutput.output), EvalOutput.id)
        if rid in record_ids or subject.matches(prompt, reference, output)]
    for start in range(0, len(doomed), BATCH):
        session.execute(delete(EvalOutput).where(EvalOutput.id.in_(doomed[start:start + BATCH])))
    return len(doomed)


def _erase_chunks(session: Session, subject: Subject) -> tuple[int, list[str]]:
    doomed: list[tuple[int, int, str]] = [(cid, doc, text) for cid, doc, text, heading in _batches(
        session, select(RagChunk.id, RagChunk.document_id, RagChunk.text, RagChunk.heading),
        RagChunk.id) if subject.matches(text, heading)]
    if not doomed:
        return 0, []
    ids = [cid for cid, _, _ in doomed]
    for start in range(0, len(ids), BATCH):
        session.execute(delete(RagChunk).where(RagChunk.id.in_(ids[start:start + BATCH])))
    for doc in {d for _, d, _ in doomed}:
        left = session.scalar(select(func.count()).select_from(RagChunk)
                              .where(RagChunk.document_id == doc)) or 0
        session.execute(update(RagDocument).where(RagDocument.id == doc).values(n_chunks=left))
    state = session.get(RagIndexState, 1)
    if state is not None:
        # A new generation makes every replica drop its in-memory index and rebuild from the store.
        state.generation += 1
        state.updated_at = utcnow()
    return len(ids), [t for _, _, t in doomed]


def _rebuild_index(project: Project) -> None:
    import shutil

    from tuneloop.rag import snapshot

    snapshot.forget(project.state_dir)
    shutil.rmtree(project.state_dir / snapshot.INDEX_DIR, ignore_errors=True)
    snapshot.build_files(project.store, project.state_dir)


def _derived(project: Project, refs: set[str]) -> tuple[list[str], list[str]]:
    """Models trained on any of these dataset versions, and the variants that serve them."""
    if not refs:
        return [], []
    models: set[str] = set()
    with project.store.session(write=False) as session:
        for name in session.execute(select(Run.output_model).where(
                Run.dataset_version.in_(sorted(refs)), Run.output_model.is_not(None))).scalars():
            if name:
                models.add(name)
    for record in _registered_models(project):
        lineage = getattr(record, "lineage", None) or {}
        if set(lineage.get("dataset_versions", [])) & refs:
            models.add(record.name)
    # A model made from a marked model (a merge, an export) inherits the mark.
    for record in _registered_models(project):
        base = getattr(record, "base_model", None)
        if base in models:
            models.add(record.name)
    variants = {v.name for v in project.config.variants if v.model in models}
    return sorted(models), sorted(variants)


def _registered_models(project: Project) -> list[Any]:
    return list(list_models(project))


def _batches(session: Session, query: Any, key: Any, size: int = 1000) -> Any:
    """Rows of `query` in pages ordered by `key` (its first column), so memory stays flat."""
    last = None
    while True:
        page = query.order_by(key).limit(size)
        if last is not None:
            page = page.where(key > last)
        rows = session.execute(page).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


@dataclass
class ErasurePlan:
    """What `erase` would remove (a dry run): nothing is changed to compute it."""

    subject_hash: str
    counts: dict[str, int]
    datasets: dict[str, int]  # version ref -> records of the subject
    models: list[str]
    variants: list[str]
    sources: list[str]
    exports: list[str] = field(default_factory=list)


def preview(project: Project, actor: Actor, subject_id: str, *,
            also: list[str] | tuple[str, ...] = ()) -> ErasurePlan:
    """What erasing this subject would remove and mark, without changing anything."""
    if actor.role not in ROLES:
        raise PermissionDenied(f"{actor.name} ({actor.role}) may not look up data subjects",
                               hint="the privacy team or an admin runs `tuneloop erase`")
    subject = Subject.of(subject_id, also)
    datasets = {}
    for version in list_versions(project):
        if (version.path / MANIFEST).is_file():
            _, removed, _ = erase_files.filtered(version.path, subject)
            if removed:
                datasets[version.ref] = len(removed)
    with project.store.session(write=False) as session:
        chunks = sum(1 for _, text, heading in _batches(session, select(
            RagChunk.id, RagChunk.text, RagChunk.heading), RagChunk.id)
            if subject.matches(text, heading))
        counts = {"request_logs": len(_log_ids(session, subject)),
                  "dataset_records": sum(datasets.values()), "chunks": chunks}
    models, variants = _derived(project, set(datasets))
    return ErasurePlan(subject.hash, counts, datasets, models, variants,
                       erase_files.sources_mentioning(project, subject),
                       exports_of(project, list(datasets), models))


def needs_retraining(project: Project) -> list[marks.OpenMark]:
    """Models and variants marked by an erasure and not yet cleared, newest first.

    Marks that no longer hold (the model was retrained without the subject) are cleared first.
    """
    return marks.refresh(project)
