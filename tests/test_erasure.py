"""Erasure: a subject seeded through serving, a dataset build, enrich, evaluation outputs, a report
and the retrieval index is removed everywhere; afterwards no file under `.tuneloop/` and no byte of
the database (SQLite file with its WAL; PostgreSQL's table files and every row) holds their name,
e-mail or ticket text. Derived models and variants are marked for retraining."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select, text

from tests.conftest import project_admin, run_cli
from tests.test_flywheel_support import (
    log_request,
    open_project,
    person,
    rate,
    records,
    sqlite_only,
)
from tests.test_serve_support import close_engines, live_server, llama_loader
from tuneloop import Project
from tuneloop.data.versions import get_version
from tuneloop.errors import PermissionDenied
from tuneloop.flywheel import review
from tuneloop.flywheel.enrich import enrich
from tuneloop.flywheel.erasure import erase, needs_retraining, preview
from tuneloop.governance import audit, principals
from tuneloop.rollout import withdraw_from_public
from tuneloop.store.evals import EvalOutput, EvalRun
from tuneloop.store.rag import RagChunk
from tuneloop.store.runs import Run
from tuneloop.store.serving import RequestLog

EMAIL = "zelda.q@example.org"
NAME = "Zelda Quarrington"
TICKET = "my sync keeps failing on the blue laptop since Tuesday"
SECRETS = (EMAIL, NAME, TICKET)

CONFIG = """\
version: 1
task:
  name: erasure-test
  system_prompt: You answer support questions briefly.
sources:
  - {name: tickets, path: data/tickets.jsonl, tier: 1, subject_field: customer_email}
  - {name: kb, path: kb, kind: documents, tier: 1}
knowledge_base: {sources: [kb], chunk_tokens: 64, overlap_tokens: 8}
datasets:
  - name: tickets
    sources: [tickets]
    split: {train: 0.6, validation: 0.2, test: 0.2}
variants:
  - name: base
  - name: tuned
    model: tickets-run1
server: {app_alias: assistant}
"""

OTHERS = [
    ("How do I reset my password?", "Use the link on the sign-in page.", "ann@example.com"),
    ("Where do I find invoices?", "Under Billing, then Invoices.", "bob@example.com"),
    ("Can I share a folder with a guest?", "Yes, choose Share and add their e-mail.",
     "cy@example.com"),
    ("What does error 429 mean?", "You sent too many requests; wait a minute.",
     "dee@example.com"),
    ("How do I install on Linux?", "Download the .deb package and open it.", "eve@example.com"),
    ("Is there a dark mode?", "Yes, under Settings, Appearance.", "fay@example.com"),
]


def write_sources(root: Path) -> None:
    rows = [{"input": q, "output": a, "customer_email": e} for q, a, e in OTHERS]
    rows.insert(2, {"input": f"Hi, I am {NAME} ({EMAIL}). {TICKET[0].upper()}{TICKET[1:]}.",
                    "output": "Please reinstall the desktop app and sign in again.",
                    "customer_email": EMAIL})
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "tickets.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "kb").mkdir(exist_ok=True)
    (root / "kb" / "escalations.md").write_text(
        f"# Escalations\n\n{NAME} ({EMAIL}) reported that {TICKET}; engineering is on it.\n",
        encoding="utf-8")
    (root / "kb" / "sync.md").write_text(
        "# Sync conflicts\n\nWhen two people edit one file offline, both copies are kept and "
        "the newer one is renamed with the word conflict.\n", encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Project]:
    root = tmp_path / "proj"
    write_sources(root)
    p = open_project(root, database_url, monkeypatch, CONFIG)
    yield p
    p.close()


def serve_the_subject(project: Project) -> str:
    """The customer's app asks for them (`user` = their e-mail) through the real HTTP API."""
    admin = project_admin(project)  # a key on PostgreSQL, where administration takes one
    key = principals.create_key(project.store, admin, "support-app", audience="internal").secret
    loader = llama_loader(project)
    app = __import__("tuneloop.serve.app", fromlist=["create_app"]).create_app(
        project, variant_loader=loader)
    with live_server(app) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
        raw = api.chat.completions.with_raw_response.create(
            model="assistant", user=EMAIL,
            messages=[{"role": "user", "content": f"{NAME} writes: {TICKET}."}])
        rid = raw.headers["x-request-id"]
        api.chat.completions.create(model="assistant", user="ann@example.com",
                                    messages=[{"role": "user", "content": "Is there dark mode?"}])
    close_engines(loader)
    return rid


def seed(project: Project) -> dict[str, Any]:
    from tuneloop.data.build import build_dataset
    from tuneloop.rag.index import index_knowledge_base

    admin, ivy = project.actor(), person(project, "ivy")
    rid = serve_the_subject(project)
    rate(project, ivy, rid, rating=1, comment=f"{NAME} liked it")
    other = log_request(project, "How do I add a device?", "Sign in on it.")
    rate(project, ivy, other, rating=1)
    disliked = log_request(project, "Can I pay by invoice?", "No idea.")
    rate(project, ivy, disliked, rating=-1)
    built = build_dataset(project, admin, "tickets")
    subject_records = [r for r in records(built) if TICKET.lower() in json.dumps(r).lower()]
    assert len(subject_records) == 1  # the ticket is in the version, name and e-mail redacted
    logs = enrich(project, ivy, "from-logs").version
    queued = review.list_items(project)[0]
    review.decide(project, ivy, queued.id, "reject", note=f"{NAME} asked this too")
    assert logs is not None and any(TICKET.lower() in json.dumps(r).lower() for r in records(logs))
    index_knowledge_base(project, admin)
    with project.store.session() as session:
        assert any(NAME in c.text for c in session.execute(select(RagChunk)).scalars())
        session.add(Run(kind="train", status="completed", dataset_version=built.ref,
                        output_model="tickets-run1"))
        run = EvalRun(status="completed", dataset_version=built.ref, variants=["base"])
        session.add(run)
        session.flush()
        session.add(EvalOutput(run_id=run.id, variant="base",
                               record_id=subject_records[0]["id"],
                               prompt=subject_records[0]["messages"][:-1],
                               reference=subject_records[0]["messages"][-1]["content"],
                               output="Please reinstall."))
    report = project.artifacts_dir / "evals" / "1" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text(f"<p>worst example: {TICKET}</p>", encoding="utf-8")
    return {"rid": rid, "other": other, "built": built, "logs": logs}


def database_bytes_mentioning(project: Project) -> list[str]:
    """Where the database still holds a secret: its files (as bytes) and its rows (as text)."""
    found = []
    store = project.store
    with store.engine.connect() as conn:
        for (table,) in conn.execute(text(
                "SELECT name FROM sqlite_master WHERE type='table'" if store.dialect == "sqlite"
                else "SELECT tablename FROM pg_tables WHERE schemaname='public'")):
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                line = " ".join(str(v) for v in row).lower()
                found += [f"{table}: {s}" for s in SECRETS if s.lower() in line]
        if store.dialect == "postgresql":
            datadir = conn.execute(text("SHOW data_directory")).scalar_one()
            oid = conn.execute(text(
                "SELECT oid FROM pg_database WHERE datname = current_database()")).scalar_one()
            files = [p for p in (Path(datadir) / "base" / str(oid)).iterdir() if p.is_file()]
        else:
            db = store.sqlite_path
            assert db is not None
            files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    for path in files:
        data = path.read_bytes().lower()
        found += [f"{path}: {s}" for s in SECRETS if s.lower().encode() in data]
    return found


def files_mentioning(root: Path) -> list[str]:
    return [f"{p}: {s}" for p in root.rglob("*") if p.is_file()
            for s in SECRETS if s.lower().encode() in p.read_bytes().lower()]


@pytest.mark.slow
def test_erased_subject_leaves_no_trace_in_files_or_database(project: Project) -> None:
    seeded = seed(project)
    assert files_mentioning(project.state_dir)  # the seeding really put them there
    pia = person(project, "pia", role="privacy")
    plan = preview(project, pia, EMAIL, also=[NAME])
    assert plan.counts["request_logs"] == 1 and plan.counts["chunks"] >= 1
    assert set(plan.datasets) == {seeded["built"].ref, seeded["logs"].ref}
    assert plan.models == ["tickets-run1"] and seeded["built"].path.exists()

    report = erase(project, pia, EMAIL, also=[NAME], withdraw=withdraw_from_public)

    assert report.residue == []
    assert files_mentioning(project.state_dir) == []
    assert database_bytes_mentioning(project) == []
    # Everyone else is still there.
    with project.store.session(write=False) as session:
        ids = set(session.execute(select(RequestLog.id)).scalars())
    assert seeded["rid"] not in ids and seeded["other"] in ids and len(ids) == 3
    kept = review.list_items(project, status="rejected")
    assert [d["note"] for d in review.show(project, pia, kept[0].id).decisions] == ["[erased]"]
    tickets = get_version(project, "tickets")
    assert tickets.id != seeded["built"].id and not seeded["built"].path.exists()
    assert len(records(tickets)) == len(OTHERS)
    assert tickets.manifest["erasure"] == {"id": report.id, "replaces": seeded["built"].ref,
                                           "removed_records": 1}
    assert not seeded["logs"].path.exists()
    assert report.counts["request_logs"] == 1 and report.counts["chunks"] >= 1
    assert report.counts["eval_outputs"] == 1
    assert [p.name for p in report.files_removed] == ["report.html"]
    # Derived models and the variants serving them are marked; the sources are named.
    assert report.models == ["tickets-run1"] and report.variants == ["tuned"]
    assert {(m.kind, m.name) for m in needs_retraining(project)} == {
        ("model", "tickets-run1"), ("variant", "tuned")}
    assert any("tickets" in s for s in report.sources) and any("kb" in s for s in report.sources)
    from tuneloop.rag.retrieve import search

    hits = search(project, project.actor(), "blue laptop sync failing", top_k=4)
    assert hits and all(NAME not in h.text for h in hits)
    event = next(e for e in audit.list_events(project.store, limit=50) if e.action == "erasure")
    assert event.target == f"subject:{report.subject_hash}" and EMAIL not in event.details
    assert audit.verify(project.store).ok


@sqlite_only
def test_only_the_privacy_team_or_an_admin_may_erase(project: Project) -> None:
    rid = log_request(project, "about me", "ok", subject=EMAIL)
    with pytest.raises(PermissionDenied, match="may not erase"):
        erase(project, person(project, "dan"), EMAIL, withdraw=withdraw_from_public)
    assert any(e.action == "erasure.refused" for e in audit.list_events(project.store, limit=5))
    with project.store.session(write=False) as session:
        assert session.get(RequestLog, rid) is not None
    with pytest.raises(Exception, match="too short"):
        erase(project, project.actor(), EMAIL, also=["Al"], withdraw=withdraw_from_public)


@pytest.mark.slow
def test_erase_command_reports_and_verifies(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cli"
    write_sources(root)
    project = open_project(root, "sqlite", monkeypatch, CONFIG)
    kept = log_request(project, "Unrelated question", "answer", subject="ann@example.com")
    log_request(project, f"{TICKET}", "answer", subject=EMAIL)
    dry = run_cli("erase", "--subject", EMAIL, "--also", NAME, "--dry-run", cwd=root)
    assert dry.returncode == 0, dry.stderr
    assert "nothing changed" in dry.stdout and "request logs" in dry.stdout
    with project.store.session(write=False) as session:
        assert len(session.execute(select(RequestLog.id)).all()) == 2
    done = run_cli("erase", "--subject", EMAIL, "--also", NAME, "--yes", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "request logs" in done.stdout and "verified" in done.stdout
    assert "source still mentions" in done.stderr
    with project.store.session(write=False) as session:
        assert set(session.execute(select(RequestLog.id)).scalars()) == {kept}
    project.close()
