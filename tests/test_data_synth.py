"""Grounded synthetic records from documents: the gate, the fact and support checks, generation on
the bundled model (in process and through an OpenAI-compatible server on loopback), and the
contamination check against a planted near duplicate of a test record."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_cli
from tuneloop import Project
from tuneloop.data.build import build_dataset
from tuneloop.data.facts import about, candidate_facts, copies, stated, support
from tuneloop.data.synth import cloze, passages, synthesise
from tuneloop.errors import ApprovalRequired, DataError

CONFIG = """
version: 1
task: {{name: helpdesk}}
base_model: {{name: smollm2, path: bundled:smollm2-135m}}
sources:
  - {{name: kb, path: kb/, kind: documents, tier: {tier}}}
  - {{name: tickets, path: tickets.jsonl, tier: 1}}
knowledge_base: {{sources: [kb], chunk_tokens: 80, overlap_tokens: 8}}
datasets:
  - {{name: heldout, sources: [tickets], split: {{train: 0.0, validation: 0.0, test: 1.0}}}}
"""
KB = """# Password reset

Open **Settings > Security > Password** and choose Reset password. The link in the e-mail is
valid for 30 minutes.

## Locked accounts

After 5 failed sign-in attempts the account is locked for 15 minutes.

## Storage

The Free plan includes 5 GB of storage; Business includes 1 TB per member.

## Selective sync

Selective sync is available from client 4.2. Choose folders under
**Settings > Sync > Choose folders**.
"""


def _project(root: Path, tier: int = 1) -> Project:
    (root / "kb").mkdir(parents=True)
    (root / "kb" / "reset.md").write_text(KB, encoding="utf-8")
    (root / "tickets.jsonl").write_text(json.dumps({"input": "Where is the invoice?",
                                                    "output": "Under Billing."}) + "\n")
    (root / "tuneloop.yaml").write_text(CONFIG.format(tier=tier), encoding="utf-8")
    return Project.init(root)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    return tmp_path / "proj"


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_passages_follow_paragraphs_and_stay_near_the_size() -> None:
    text = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(10))
    parts = passages(text, size=500)
    assert len(parts) > 1 and all(len(p) <= 500 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


def test_key_fact_candidates_are_paths_quantities_codes_and_versions() -> None:
    facts = candidate_facts("Go to **Settings > Sync > Choose folders**. Client 4.5.3 fixes "
                            "QS-1101. The limit is 600 requests per minute and links last "
                            "30 days. See https://status.example.com/api for 1 incident.")
    assert "Settings > Sync > Choose folders" in facts
    assert {"4.5.3", "QS-1101", "600 requests per minute", "30 days",
            "https://status.example.com/api"} <= set(facts)
    assert "1" not in facts and not any(f.lower().startswith("go to") for f in facts)


def test_key_fact_candidates_include_the_names_of_an_api() -> None:
    facts = candidate_facts("If skipkeys is false, a TypeError is raised; json.dumps returns a "
                            "str and JSONDecodeError subclasses ValueError. Call isoformat() "
                            "for a string. URLs and IDs are plain words.")
    assert {"TypeError", "json.dumps", "JSONDecodeError", "ValueError", "isoformat"} <= set(facts)
    assert not {"URLs", "IDs", "If"} & set(facts)


def test_a_cloze_question_asks_for_the_fact_of_its_sentence() -> None:
    sentence = "If skipkeys is true, keys that are not basic types are skipped instead of " \
               "raising a TypeError."
    question = cloze(sentence, "TypeError", "json.dumps")
    assert question == ("json.dumps: If skipkeys is true, keys that are not basic types are "
                        "skipped instead of raising a what?")
    assert not stated("TypeError", question) and not copies(question, sentence)
    assert cloze("30 minutes is how long the reset link stays valid.", "30 minutes") == \
        "What is how long the reset link stays valid?"
    assert cloze("indent -- the number of spaces to indent nested levels with", "indent",
                 "json.dumps") == ('json.dumps: What is described as "the number of spaces to '
                                  'indent nested levels with"?')
    assert cloze("The limit is 30 minutes.", "30 minutes") == ""  # too little left to ask
    assert cloze("The link is valid.", "30 minutes") == ""


def test_support_keeps_facts_the_answer_states_and_measures_coverage() -> None:
    passage = "The link in the e-mail is valid for 30 minutes. Admins can force a reset."
    grounded = support("The reset link is valid for 30 minutes.", passage)
    assert grounded.facts == ["30 minutes"] and grounded.coverage > 0.8
    invented = support("Call our hotline at any time of day for 24 hours support.", passage)
    assert invented.facts == [] and invented.coverage < 0.5
    assert stated("Settings > Security", "open Security in Settings")


def test_a_question_that_holds_its_answer_is_a_copy() -> None:
    answer = "The link is valid for 30 minutes."
    assert copies("The link is valid for 30 minutes?", answer)
    assert copies("Is the link valid for 30 minutes?", "The link is valid for 30 minutes.")
    assert not copies("How long is the reset link valid?", answer)
    assert about("How do I rename a workspace?", KB) == 0.0
    assert about("How long is the reset link valid?", KB) == 1.0


def test_synth_from_tier2_documents_needs_an_approval(root: Path) -> None:
    project = _project(root, tier=2)
    with pytest.raises(ApprovalRequired, match="source 'kb'"):
        synthesise(project, project.actor(), "kb")
    assert not (root / "data" / "synth").exists()


def test_synth_needs_a_documents_source(root: Path) -> None:
    project = _project(root)
    with pytest.raises(DataError, match="holds records, not documents"):
        synthesise(project, project.actor(), "tickets")


def _assert_grounded(records: list[dict]) -> None:
    for record in records:
        meta = record["metadata"]
        question, answer = (m["content"] for m in record["messages"])
        assert meta["kb_refs"] == ["kb:reset.md"] and meta["chunk_id"].startswith("kb:reset.md#")
        assert meta["key_facts"], record
        for fact in meta["key_facts"]:
            assert stated(fact, answer) and stated(fact, meta["passage"])
            assert fact.lower() in meta["passage"].replace("**", "").lower()
        assert question.endswith("?") and answer not in question


def test_cloze_questions_make_grounded_records_without_a_teacher_question(root: Path) -> None:
    project = _project(root)
    report = synthesise(project, project.actor(), "kb", name="kb-cloze", questions="cloze",
                        teacher="bundled:smollm2-135m")
    records = _records(report.path)
    assert report.questions == "cloze" and report.cloze == report.kept == len(records) >= 2
    _assert_grounded(records)
    for record in records:
        question, _answer = (m["content"] for m in record["messages"])
        assert record["metadata"]["question"] == "cloze"
        assert question.startswith("Password reset: ") and " what" in question.lower()
        # the question is the answer's sentence with its fact taken out
        assert not any(stated(f, question) for f in record["metadata"]["key_facts"])
    with pytest.raises(DataError, match="questions must be one of"):
        synthesise(project, project.actor(), "kb", questions="free")


@pytest.mark.slow
def test_bundled_teacher_writes_grounded_records_and_drops_a_test_question(root: Path) -> None:
    project = _project(root)
    first = synthesise(project, project.actor(), "kb", name="kb-qa",
                       teacher="bundled:smollm2-135m")
    records = _records(first.path)
    assert first.kept == len(records) >= 1 and first.test_records == 0
    assert first.generated == first.kept + sum(first.dropped.values())
    _assert_grounded(records)
    lineage = json.loads(first.path.with_suffix(".lineage.json").read_text())
    assert lineage["teacher"].startswith("smollm2-135m") and lineage["kept"] == first.kept

    # Plant a near duplicate (a greeting added) of a kept question in a test split: the next
    # run must drop that question, count it, and say so in the summary.
    planted = "Hi! " + records[0]["messages"][0]["content"]
    (root / "tickets.jsonl").write_text(json.dumps({"input": planted, "output": "See docs."})
                                        + "\n", encoding="utf-8")
    build_dataset(project, project.actor(), "heldout")
    out = run_cli("data", "synth", "--from", "kb", "--name", "kb-qa2", "--teacher",
                  "bundled:smollm2-135m", cwd=root)
    assert out.returncode == 0, out.stderr
    assert "near duplicate of a test record" in out.stdout
    assert "1 synthetic question(s) dropped" in out.stdout
    second = _records(root / "data" / "synth" / "kb-qa2.jsonl")
    assert len(second) == len(records) - 1
    assert records[0]["messages"][0]["content"] not in [r["messages"][0]["content"]
                                                        for r in second]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def teacher_server(tmp_path: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with the bundled model, on loopback."""
    from tuneloop.engines.bundled import bundled_gguf_path

    port = _free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf_path()),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
             "--model_alias", "teacher"], stdout=log_fh, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"
        try:
            for _ in range(600):
                if proc.poll() is not None:
                    pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


@pytest.mark.slow
def test_an_endpoint_teacher_writes_the_questions_of_grounded_records(
        root: Path, teacher_server: str) -> None:
    project = _project(root)
    report = synthesise(project, project.actor(), "kb", name="kb-endpoint",
                        teacher=teacher_server,
                        teacher_options={"model": "teacher", "timeout_s": 600.0,
                                         "max_concurrency": 1})
    assert report.teacher == "teacher (openai)"
    assert report.generated == report.kept + sum(report.dropped.values())
    records = _records(report.path)
    assert len(records) == report.kept >= 1
    _assert_grounded(records)
    for record in records:
        assert record["metadata"]["generator"] == {"teacher": "teacher (openai)",
                                                   "answers": "extract"}
