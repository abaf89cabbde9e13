"""The RAG index on a real store (SQLite and PostgreSQL) with the bundled embedding model:
changed-only re-indexing, deletion, tiers filtered inside the query, auditing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import HANDBOOK, KB_CONFIG, TICKETS, write_files
from tuneloop import Project
from tuneloop.errors import ConfigError, DataError
from tuneloop.governance import approvals, audit
from tuneloop.governance.principals import actor_of, ensure_principal
from tuneloop.rag import index_knowledge_base, search
from tuneloop.store.rag import RagChunk, RagIndexState


@pytest.fixture
def kb(kb_dir: Path):
    """A project with a Tier 1 handbook and Tier 2 tickets, and its people."""
    project = Project.open(kb_dir)
    with project.store.session() as session:
        people = {name: actor_of(ensure_principal(session, name, role=role, audience=aud))
                  for name, role, aud in [("pia", "privacy", "internal"),
                                          ("dan", "developer", "internal"),
                                          ("pub", "developer", "public")]}
    people["me"] = project.actor()
    yield project, people
    project.close()


def grant(project: Project, people: dict, who: str, uses: list[str],
          for_audience: str | None = None) -> int:
    approval = approvals.request(project.store, people[who], scope=["source:tickets"], uses=uses,
                                 purpose="support answers", for_audience=for_audience)
    approvals.grant(project.store, people["pia"], approval)
    return approval


def indexed(project: Project, people: dict):
    grant(project, people, "me", ["rag"])
    return index_knowledge_base(project, people["me"])


def chunk_pks(project: Project) -> dict[str, int]:
    with project.store.session(write=False) as session:
        return dict(session.execute(select(RagChunk.chunk_id, RagChunk.id)).all())


def test_reindex_embeds_only_changed_documents(kb):
    project, people = kb
    first = indexed(project, people)
    assert sorted(first.added) == ["handbook:linux.md", "handbook:refunds.md", "handbook:sso.md",
                                   "tickets:t1.md", "tickets:t2.md"]
    before = chunk_pks(project)
    again = index_knowledge_base(project, people["me"])
    assert not again.changed and again.chunks_embedded == 0 and again.unchanged == 5
    (project.root / "handbook" / "sso.md").write_text(
        "# Single sign-on\n\nOIDC needs a client id and a client secret.\n", encoding="utf-8")
    third = index_knowledge_base(project, people["me"])
    assert third.updated == ["handbook:sso.md"] and third.added == [] and third.unchanged == 4
    assert third.chunks_embedded == 1
    after = chunk_pks(project)
    # Unchanged documents keep their very rows; the changed one got new ones.
    assert {k: v for k, v in after.items() if "sso" not in k} == \
        {k: v for k, v in before.items() if "sso" not in k}
    assert after["handbook:sso.md#0"] != before["handbook:sso.md#0"]
    hits = search(project, people["me"], "OIDC client secret", top_k=1)
    assert hits[0].doc_id == "handbook:sso.md" and "client secret" in hits[0].text
    # New chunking settings make every document's chunks stale.
    (project.root / "tuneloop.yaml").write_text(KB_CONFIG.replace("chunk_tokens: 128",
                                                               "chunk_tokens: 96"))
    rechunked = index_knowledge_base(Project.open(project.root), people["me"])
    assert len(rechunked.updated) == 5 and rechunked.unchanged == 0


def test_deleted_document_leaves_the_index(kb):
    project, people = kb
    indexed(project, people)
    (project.root / "handbook" / "refunds.md").unlink()
    report = index_knowledge_base(project, people["me"])
    assert report.removed == ["handbook:refunds.md"]
    assert not any(k.startswith("handbook:refunds.md") for k in chunk_pks(project))
    hits = search(project, people["me"], "annual plans refunded within 30 days", top_k=10)
    assert hits and all(h.doc_id != "handbook:refunds.md" for h in hits)


def test_bad_document_names_its_file_and_changes_nothing(kb):
    project, people = kb
    indexed(project, people)
    with project.store.session(write=False) as session:
        generation = session.get(RagIndexState, 1).generation
        count = session.scalar(select(func.count()).select_from(RagChunk))
    (project.root / "handbook" / "sso.md").write_text("# SSO\n\nnew text\n", encoding="utf-8")
    (project.root / "handbook" / "broken.md").write_bytes(b"# Broken\n\n\xff\xfe\xfa not text")
    with pytest.raises(DataError, match=r"broken\.md"):
        index_knowledge_base(project, people["me"])
    with project.store.session(write=False) as session:
        assert session.get(RagIndexState, 1).generation == generation
        assert session.scalar(select(func.count()).select_from(RagChunk)) == count


def test_public_key_never_gets_tier2_chunk(kb):
    project, people = kb
    indexed(project, people)
    query = "refund annual plan after 40 days inotify watch limit"
    # Without any approval, even an internal developer sees only the handbook.
    assert {h.source for h in search(project, people["dan"], query, top_k=10)} == {"handbook"}
    grant(project, people, "dan", ["rag"])
    assert "tickets" in {h.source for h in search(project, people["dan"], query, top_k=10)}
    # A public principal with a `rag` approval still gets no Tier 2 chunk ...
    grant(project, people, "pub", ["rag"])
    public_hits = search(project, people["pub"], query, top_k=10)
    assert public_hits and all(h.tier == 1 for h in public_hits)
    # ... until the privacy team also allows deploy-public for that source.
    grant(project, people, "pub", ["rag", "deploy-public"])
    assert "tickets" in {h.source for h in search(project, people["pub"], query, top_k=10)}


def test_permission_filter_does_not_starve_results(kb):
    project, people = kb
    indexed(project, people)
    # Both tickets match this query better than most of the handbook; the filter runs inside
    # the query, so dan still gets top_k handbook chunks rather than top_k minus the tickets.
    hits = search(project, people["dan"], "Acme Globex refund inotify ticket", top_k=3)
    assert len(hits) == 3 and {h.source for h in hits} == {"handbook"}


def test_tier2_retrieval_is_audited_and_tier_change_applies_at_once(kb):
    project, people = kb
    indexed(project, people)
    grant(project, people, "dan", ["rag"])
    hits = search(project, people["dan"], "Globex inotify", top_k=2)
    assert any(h.source == "tickets" for h in hits)
    events = audit.list_events(project.store, action="use.rag", actor="dan")
    assert events and "source:tickets" in events[0].target and events[0].tier == 2
    # Reclassify the handbook as customer data: its chunks are re-tagged without re-embedding
    # and disappear for the public principal immediately.
    (project.root / "tuneloop.yaml").write_text(KB_CONFIG.replace(
        "path: handbook, kind: documents, tier: 1", "path: handbook, kind: documents, tier: 2"))
    project = Project.open(project.root)
    approval = approvals.request(project.store, people["me"], scope=["source:handbook"],
                                 uses=["rag"], purpose="reindex")
    approvals.grant(project.store, people["pia"], approval)
    report = index_knowledge_base(project, people["me"])
    assert len(report.retagged) == 3 and report.chunks_embedded == 0
    assert search(project, people["pub"], "refund annual plan inotify SAML", top_k=5) == []


def test_hits_carry_scores_from_both_retrievers(kb):
    project, people = kb
    indexed(project, people)
    hits = search(project, people["me"], "How do I raise the inotify watch limit?", top_k=2)
    top = hits[0]
    assert top.chunk_id == "handbook:linux.md#0" and top.doc_id == "handbook:linux.md"
    assert top.ranks == {"bm25": 1, "vector": 1}
    assert top.scores["bm25"] > 0 and 0 < top.scores["vector"] <= 1
    assert top.score == pytest.approx(2 / 61)


@pytest.mark.slow
def test_cli_indexes_and_queries_as_a_public_principal(tmp_path, monkeypatch):
    from tests.conftest import run_cli
    from tuneloop.governance.principals import create_key

    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    root = tmp_path / "proj"
    project = Project.init(root)
    (root / "tuneloop.yaml").write_text(KB_CONFIG.replace("[handbook, tickets]", "[handbook]"))
    write_files(root / "handbook", HANDBOOK)
    write_files(root / "tickets", TICKETS)
    project = Project.open(root)
    dev_key = create_key(project.store, project.actor(), "dan").secret
    create_key(project.store, project.actor(), "pub", audience="public")
    project.close()

    # Indexing through the API keeps this test to one model load in a subprocess.
    report = index_knowledge_base(Project.open(root), project.actor())
    assert "3 added" in str(report) and "3 in the index" in str(report)
    shown = run_cli("rag", "query", "inotify watch limit", "--as", "pub", "-k", "2", cwd=root)
    assert shown.returncode == 0, shown.stderr
    assert "for pub (audience public)" in shown.stdout
    assert "handbook:linux.md#0" in shown.stdout and "tickets:" not in shown.stdout
    refused = run_cli("rag", "query", "inotify", "--as", "pub", cwd=root,
                      env={"TUNELOOP_API_KEY": dev_key})
    assert refused.returncode == 1 and "only an admin" in refused.stderr
    listed = run_cli("rag", "status", cwd=root)
    assert listed.returncode == 0, listed.stderr
    # source, tier, documents, chunks
    assert re.findall(r"(handbook|tickets)\W+(\d)\W+(\d+)\W+(\d+)", listed.stdout) == \
        [("handbook", "1", "3", "3")]


def test_mmr_reranker_keeps_a_near_duplicate_out_of_the_top(kb):
    project, people = kb
    copy = ("# Refunds in full\n\nRefunds in full go back to the card. Annual plans get refunds in "
            "full within 30 days.\n")
    write_files(project.root / "handbook", {"copy-a.md": copy, "copy-b.md": copy})
    indexed(project, people)
    copies = {"handbook:copy-a.md", "handbook:copy-b.md"}
    plain = search(project, people["me"], "refunds in full", top_k=2)
    assert {h.doc_id for h in plain} == copies
    varied = search(project, people["me"], "refunds in full", top_k=2, reranker="mmr")
    assert varied[0].doc_id in copies and varied[1].doc_id not in copies
    with pytest.raises(ConfigError, match="unknown re-ranker"):
        search(project, people["me"], "refunds in full", reranker="nope")
