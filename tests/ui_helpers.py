"""Helpers for the dashboard tests: a project with people, logs, feedback, evaluations and a
rollout in it, and the serving app (dashboard mounted at /ui) on a real loopback port."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

#: text only the Tier 2 request holds; it must never reach a developer without approval
TIER2_SECRET = "parcel TL-CUSTOMER-7731 from the Lisbon warehouse"
TIER1_TEXT = "How do I rotate the staging deploy token"
TIER2_CHUNK = "Ticket 99: the customer's refund went to the wrong account"
BAD_ANSWER = "Restart the laptop and hope."
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Seeded:
    """What `seed` made: the project, API keys by person, request ids, evaluation run ids."""

    root: Path
    keys: dict[str, str]
    tier1_request: str
    tier2_request: str
    eval_run: int
    tier2_eval_run: int
    pending_approval: int
    review_items: dict[str, int]


def _eval_run(project, *, dataset: str, tier: int, variants: list[str]) -> int:
    from tuneloop.evaluate.summary import Output, summarize
    from tuneloop.store.evals import EvalOutput, EvalRun

    outputs = []
    for i in range(6):
        for j, variant in enumerate(variants):
            good = (i + j) % 3 != 0
            outputs.append(Output(
                variant=variant, record_id=f"ex-{i}", output=f"answer {i} by {variant}",
                reference=f"reference answer {i}", slice="billing" if i % 2 else "shipping",
                prompt=[{"role": "user", "content": f"question {i} about {dataset}"}],
                ttft_s=0.05 + 0.01 * i + 0.02 * j, total_s=0.3 + 0.05 * i + 0.1 * j,
                prompt_tokens=20, completion_tokens=8, finish_reason="stop",
                scores={"rouge_l": 0.6 if good else 0.1, "token_f1": 0.5 if good else 0.2}))
    config = project.config
    summary = summarize(outputs, variants, config.metrics, config.latency, resamples=200,
                        slice_field="category")
    with project.store.session() as session:
        run = EvalRun(status="completed", actor="ada", dataset_version=dataset, tier=tier,
                      variants=variants, summary=summary)
        session.add(run)
        session.flush()
        for o in outputs:
            session.add(EvalOutput(run_id=run.id, variant=o.variant, record_id=o.record_id,
                                   slice=o.slice, prompt=o.prompt, reference=o.reference,
                                   output=o.output, finish_reason=o.finish_reason,
                                   ttft_s=o.ttft_s, total_s=o.total_s,
                                   prompt_tokens=o.prompt_tokens,
                                   completion_tokens=o.completion_tokens, scores=o.scores))
        return run.id


def seed(root: Path) -> Seeded:
    """Fill an initialised project with everything the dashboard shows."""
    from tests.conftest import project_admin
    from tuneloop import Project, rollout
    from tuneloop.governance import approvals, principals
    from tuneloop.serve import feedback, requestlog
    from tuneloop.serve.schemas import FeedbackRequest

    project = Project.open(root)
    store = project.store
    admin = project_admin(project)  # a key on PostgreSQL, where administration takes one
    keys = {}
    for name, role, audience in (("dan", "developer", "internal"), ("pia", "privacy", "internal"),
                                 ("pat", "privacy", "internal"), ("pub", "developer", "public"),
                                 ("ada", "admin", "internal")):
        if name == "ada":
            with store.session() as session:
                principals.ensure_principal(session, "ada", role="admin")
        keys[name] = principals.create_key(store, admin, name, role=role,
                                           audience=audience).secret
    entities = list(project.config.privacy.redact)
    tier1 = requestlog.Entry(
        id="req-tier1", model="assistant", principal="dan", audience="internal", variant="base",
        messages=[{"role": "user", "content": f"{TIER1_TEXT}? Mail me at dan@example.com"}],
        output="Run `tuneloop keys revoke` then create a new one.", prompt_tokens=12,
        completion_tokens=9, ttft_ms=40.0, total_ms=310.0, finish_reason="stop")
    tier2 = requestlog.Entry(
        id="req-tier2", model="assistant", principal="pub", audience="public", variant="base",
        messages=[{"role": "user",
                   "content": f"Where is my {TIER2_SECRET}? Write to ana.silva@example.org"}],
        output=f"Your {TIER2_SECRET} ships tomorrow.", chunk_ids=["kb-12", "kb-40"],
        prompt_tokens=15, completion_tokens=11, ttft_ms=55.0, total_ms=420.0,
        finish_reason="stop")
    failed = requestlog.Entry(id="req-failed", model="assistant", principal="dan",
                              audience="internal", variant="base", status=429,
                              error="rate limited")
    bad = requestlog.Entry(id="req-bad", model="assistant", principal="dan", audience="internal",
                           variant="base", output=BAD_ANSWER, finish_reason="stop",
                           messages=[{"role": "user", "content": "My VPN drops every hour"}])
    for entry in (tier1, tier2, failed, bad):
        requestlog.write(store, entities, entry)
    _chunks(store)
    pub = principals.authenticate(store, keys["pub"])
    dan = principals.authenticate(store, keys["dan"])
    feedback.add(store, entities, pub, FeedbackRequest(
        request_id="req-tier2", rating=-1, comment=f"wrong, my {TIER2_SECRET} is lost",
        corrected_answer=f"Your {TIER2_SECRET} was returned to sender."))
    feedback.add(store, entities, dan, FeedbackRequest(request_id="req-tier1", rating=5))
    feedback.add(store, entities, dan, FeedbackRequest(request_id="req-bad", rating=-1))
    items = _enqueue(store, ["req-bad", "req-tier2"])
    rollout.set_stage(project, admin, project.config.server.app_alias, "base", "internal",
                      reason="first internal stage")
    _lineage(store)
    run_id = _eval_run(project, dataset="support@v1", tier=1, variants=["base", "base-rag"])
    tier2_run = _eval_run(project, dataset="tickets@v7", tier=2, variants=["base"])
    pending = approvals.request(store, dan, scope=["logs:base"], uses=["view"],
                                purpose="debug the wrong shipping answers")
    project.close()
    return Seeded(root, keys, "req-tier1", "req-tier2", run_id, tier2_run, pending, items)


def _lineage(store) -> None:
    """A dataset version and the training run that fine-tuned a model on it."""
    from tuneloop.store.datasets import DatasetVersionRow
    from tuneloop.store.registry import ModelRow
    from tuneloop.store.runs import Run

    with store.session() as session:
        session.add(DatasetVersionRow(name="support", version_id="v1a2b3c4d5e6f7", tier=1,
                                      roots=[], approvals=[], path="/nowhere",
                                      counts={"train": 40, "validation": 5, "test": 6},
                                      created_by="dan"))
        session.add(Run(kind="train", status="completed", actor="dan",
                        dataset_version="support@v1a2b3c4d5e6f7", base_model="smollm2-135m",
                        output_model="support-lora-1", tier=1))
        session.flush()
        # What training registers: the model with its lineage (what the overview lists).
        session.add(ModelRow(name="support-lora-1", kind="adapter", path="/nowhere",
                             format="safetensors", tier=1, roots=[], base_model="smollm2-135m",
                             lineage={"dataset_versions": ["support@v1a2b3c4d5e6f7"],
                                      "run_id": 1}, created_by="dan"))


def _chunks(store) -> None:
    """Two indexed chunks the Tier 2 request retrieved: one Tier 1, one Tier 2."""
    from tuneloop.store.rag import RagChunk, RagDocument

    with store.session() as session:
        for cid, source, tier, text in (("kb-12", "handbook", 1, "Deploy tokens rotate weekly."),
                                        ("kb-40", "tickets", 2, TIER2_CHUNK)):
            doc = RagDocument(doc_id=f"{source}:{cid}.md", source=source, path=f"{cid}.md",
                              tier=tier, content_hash="0" * 64, n_chunks=1)
            session.add(doc)
            session.flush()
            session.add(RagChunk(document_id=doc.id, chunk_id=cid, ordinal=0, source=source,
                                 tier=tier, heading=f"{source} notes", text=text, n_tokens=9,
                                 content_hash="0" * 64, embedding=b""))


def _enqueue(store, request_ids: list[str]) -> dict[str, int]:
    """Put rated-down requests in the flywheel's review queue, as `tuneloop enrich` does."""
    from sqlalchemy import select

    from tuneloop.flywheel.review import enqueue
    from tuneloop.store.flywheel import ReviewItem
    from tuneloop.store.serving import Feedback, RequestLog

    with store.session() as session:
        for rid in request_ids:
            log = session.get(RequestLog, rid)
            fb = session.scalars(select(Feedback).where(Feedback.request_id == rid)).first()
            enqueue(session, log, fb, "rated down without a correction")
        session.flush()
        return {i.request_id: i.id for i in session.scalars(select(ReviewItem))}


@contextmanager
def serving(root: Path) -> Iterator[str]:
    """The serving app of the project at `root` on a free loopback port; yields its base URL."""
    from tuneloop import Project
    from tuneloop.serve.background import serve_in_background
    from tuneloop.webapp import create_app

    project = Project.open(root)
    try:
        with serve_in_background(create_app(project), lifespan="off", ready_timeout_s=30,
                                 shutdown_timeout_s=5) as base:
            yield base
    finally:
        project.close()


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = CSRF_RE.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


@contextmanager
def signed_in(base: str, key: str) -> Iterator[httpx.Client]:
    """An HTTP client with a dashboard session for `key`."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as client:
        token = csrf_of(client.get("/ui/login").text)
        answer = client.post("/ui/login", data={"csrf_token": token, "api_key": key})
        assert answer.status_code == 303, answer.text
        yield client
