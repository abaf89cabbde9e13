"""The README's recipe "Q&A over your own documents", run end to end through the real CLI on a
small folder: index, synthesise grounded Q&A with the bundled model as teacher, build, train
with retrieval (a tiny base model, one step), evaluate the RAG variants with the grounding
diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

CONFIG = """
version: 1
task:
  name: handbook-qa
  system_prompt: Answer questions about the handbook in one sentence.
metrics:
  - {{name: key_facts, primary: true}}
latency: {{p95_ms: 600000, ttft_ms: 600000}}
sources:
  - {{name: handbook, path: handbook, kind: documents, tier: 1}}
  - {{name: handbook-qa, path: data/synth/handbook-qa.jsonl, kind: records, tier: 1}}
  - {{name: questions, path: questions.jsonl, kind: records, tier: 1}}
knowledge_base: {{sources: [handbook], chunk_tokens: 96, overlap_tokens: 0}}
base_model: {{name: tiny, path: {model}}}
datasets:
  - name: handbook-qa
    sources: [handbook-qa]
    split: {{train: 0.8, validation: 0.2, test: 0.0}}
    redact: false
    min_output_tokens: 1
  - name: questions
    sources: [questions]
    split: {{train: 0.0, validation: 0.0, test: 1.0}}
    redact: false
    min_output_tokens: 1
training:
  retrieval: true
  max_seq_length: 512
  batch_size: 2
  gradient_accumulation: 1
  export_quantization: f16
  parity_prompts: 1
  parity_threshold: 0.0
variants:
  - name: base-rag
    model: base
    retrieval: {{enabled: true, top_k: 2, context_tokens: 300}}
    generation: {{max_tokens: 8}}
  - name: docs-rag
    model: docs
    retrieval: {{enabled: true, top_k: 2, context_tokens: 300}}
    generation: {{max_tokens: 8}}
"""

HANDBOOK = {
    "travel.md": "# Travel\n\nBook flights through the Travel desk portal at least 14 days ahead."
                 "\n\nEconomy class is the default for flights under 6 hours.\n\n"
                 "Hotel stays are reimbursed up to 180 EUR per night in capital cities.\n",
    "laptops.md": "# Laptops\n\nNew laptops are ordered in the IT portal under Hardware > Laptop "
                  "request.\n\nA laptop is replaced every 36 months.\n\nLost laptops are "
                  "reported to security@example.com within 24 hours.\n",
    "leave.md": "# Leave\n\nEmployees get 28 days of paid leave per year.\n\nUp to 5 unused "
                "days carry over to the next year, until 31 March.\n\nParental leave is "
                "requested in the HR portal under Absences > Parental leave.\n",
    "expenses.md": "# Expenses\n\nExpense reports are filed in Concur within 30 days of the "
                   "purchase.\n\nReceipts above 25 EUR must be attached as PDF or JPEG.\n\n"
                   "Team dinners are capped at 60 EUR per person.\n",
    "security.md": "# Security\n\nPasswords must be at least 14 characters long.\n\n"
                   "Two-factor authentication uses the Authenticator app or a YubiKey.\n\n"
                   "Phishing e-mails are forwarded to phishing@example.com.\n",
}


# written by hand, never seen by synthesis or training: what the evaluation measures
QUESTIONS = [
    ("How many days of paid leave do we get?", "28 days per year.", "28 days", "leave"),
    ("How often is a laptop replaced?", "Every 36 months.", "36 months", "laptops"),
    ("What is the hotel limit in capital cities?", "180 EUR per night.", "180 EUR", "travel"),
    ("How long must passwords be?", "At least 14 characters.", "14 characters", "security"),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneloop.engines.testing import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("models"))


@pytest.mark.slow
def test_documents_to_an_evaluated_grounded_variant(tmp_path: Path, tiny_model: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    root = tmp_path / "assistant"
    assert run_cli("init", str(root), cwd=tmp_path).returncode == 0
    (root / "tuneloop.yaml").write_text(CONFIG.format(model=tiny_model), encoding="utf-8")
    (root / "handbook").mkdir()
    for name, text in HANDBOOK.items():
        (root / "handbook" / name).write_text(text, encoding="utf-8")

    def ok(*args: str) -> str:
        done = run_cli(*args, cwd=root)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    with (root / "questions.jsonl").open("w", encoding="utf-8") as handle:
        for question, answer, fact, doc in QUESTIONS:
            handle.write(json.dumps({"messages": [{"role": "user", "content": question},
                                                  {"role": "assistant", "content": answer}],
                                     "key_facts": [fact], "kb_refs": [doc]}) + "\n")
    ok("rag", "index")
    ok("data", "build", "questions")  # first, so that synthesis keeps its near duplicates out
    ok("data", "synth", "--from", "handbook", "--name", "handbook-qa",
       "--teacher", "bundled:smollm2-135m", "--per-passage", "2")
    records = [json.loads(line) for line in
               (root / "data" / "synth" / "handbook-qa.jsonl").read_text().splitlines()]
    assert records and all(r["metadata"]["key_facts"] for r in records)
    ok("data", "build", "handbook-qa")
    ok("train", "--dataset", "handbook-qa", "--retrieval", "--max-steps", "1", "--name", "docs")
    report = json.loads(next((root / ".tuneloop" / "artifacts" / "runs").glob(
        "*/retrieval/report.json")).read_text())
    assert report["variant"] == "docs-rag" and sum(report["counts"].values()) > 0
    shown = ok("eval", "--variants", "base-rag,docs-rag", "--dataset", "questions")
    assert "Where answers are lost" in shown and "docs-rag" in shown
    # every hand-written question's fact is in the handbook, and retrieval is asked for it
    summary = json.loads(next((root / ".tuneloop" / "artifacts" / "evals").glob(
        "run-*/summary.json")).read_text())
    assert summary["per_variant"]["docs-rag"]["grounding"]["examples"] == len(QUESTIONS)
