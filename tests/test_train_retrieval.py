"""Retrieval-aware fine-tuning: training prompts are the RAG variant's own prompts (the same
sources, layout and tokens it serves), the gold passage is put in when retrieval misses it, a
share of records learns to abstain, the run records how its prompts were made, and Tier 2
knowledge needs a `train` approval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneloop import Project
from tuneloop.errors import ApprovalRequired
from tuneloop.rag import index_knowledge_base
from tuneloop.train import retrieval as rt

CONFIG = """
version: 1
task:
  name: docs-qa
  system_prompt: Answer questions about Quillstack from its documentation.
sources:
  - {name: handbook, path: handbook, kind: documents, tier: 1}
  - {name: customer-notes, path: notes, kind: documents, tier: TIER}
knowledge_base:
  sources: [handbook, customer-notes]
  chunk_tokens: 64
  overlap_tokens: 0
variants:
  - name: docs
    model: base
  - name: docs-rag
    model: docs
    retrieval: {enabled: true, top_k: 2, context_tokens: 400, placement: PLACEMENT}
    generation: {max_tokens: 8}
training:
  retrieval: true
  max_seq_length: 512
  batch_size: 2
  gradient_accumulation: 1
  learning_rate: 0.005
  eval_steps: 50
  save_steps: 50
  warmup_ratio: 0.0
  lr_scheduler: constant
  export_quantization: f16
  parity_prompts: 1
  parity_threshold: 0.0
"""

HANDBOOK = {
    "passwords.md": "# Password reset\n\nReset your password from the sign-in page: choose "
                    "Forgot password and follow the e-mail link. Password reset e-mails expire "
                    "after one hour.\n",
    "uploads.md": "# Uploads\n\nThe desktop client uploads in the background.\n\n"
                  "## Limits\n\nA single file may be at most 42 GB on every plan.\n",
    "sso.md": "# Single sign-on\n\nSAML single sign-on needs the identity provider metadata "
              "URL in Admin console > Security > SSO.\n",
}
NOTES = {"acme.md": "# Acme notes\n\nAcme's renewal is on 1 March; their contact is the CFO.\n"}

QUESTIONS = [
    # (question, answer, gold document, key fact)
    ("How do I reset my password when the password reset e-mail link expired?",
     "Files can be at most 42 GB.", "uploads", "42 GB"),
    ("Where do I set up SAML single sign-on?",
     "In Admin console > Security > SSO.", "sso", "Admin console > Security > SSO"),
    ("How long is a password reset e-mail valid?", "One hour.", "passwords", "one hour"),
    ("What does the desktop client do in the background?", "It uploads files.", "uploads", ""),
]


def write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def make_project(root: Path, *, tier: int = 1, placement: str = "user",
                 own_prompt: bool = False) -> Project:
    root.mkdir(parents=True)
    project = Project.init(root)
    config = CONFIG.replace("TIER", str(tier)).replace("PLACEMENT", placement)
    if own_prompt:  # the RAG variant's own system prompt and a shorter word on its sources
        config = config.replace("    model: docs\n", "    model: docs\n    prompt: Be brief.\n")
        config = config.replace("placement: system}", "placement: system,\n"
                                "                instructions: Answer from the sources.}")
    (root / "tuneloop.yaml").write_text(config, encoding="utf-8")
    write(root / "handbook", HANDBOOK)
    write(root / "notes", NOTES)
    project = Project.open(root)
    if tier == 1:
        index_knowledge_base(project, project.actor())
    return project


def make_version(project: Project, copies: int = 3):
    """A dataset version whose records name their gold documents and key facts."""
    from tuneloop.data.versions import publish

    staging = project.state_dir / "staging-qa"
    staging.mkdir(parents=True)
    records = []
    for i in range(copies):
        for j, (question, answer, gold, fact) in enumerate(QUESTIONS):
            records.append({"id": f"qa-{i}-{j}", "subject": None,
                            "metadata": {"kb_refs": [gold], "key_facts": [fact] if fact else []},
                            "messages": [{"role": "user", "content": question},
                                         {"role": "assistant", "content": answer}]})
    for split, rows in (("train", records), ("validation", records[:2]), ("test", records[:2])):
        (staging / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (staging / "rejects.jsonl").write_text("", encoding="utf-8")
    (project.state_dir / "datasets" / "qa").mkdir(parents=True, exist_ok=True)
    manifest = {"name": "qa", "id": f"vqa{copies}", "tier": 1, "roots": [], "approvals": [],
                "counts": {"train": len(records), "validation": 2, "test": 2}}
    return publish(project, staging, manifest, created_by="test")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneloop.engines.testing import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("models"))


@pytest.fixture
def tokenizer(tiny_model: Path):
    from tuneloop.train.sft import load_tokenizer

    return load_tokenizer(tiny_model)


def rewritten(folder: Path, split: str = "train") -> dict[str, dict]:
    lines = (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def sources_text(record: dict) -> str:
    return "\n".join(m["content"] for m in record["messages"][:-1])


def test_gold_passage_is_put_in_when_retrieval_misses_the_fact(tmp_path, tokenizer, monkeypatch):
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "p")
    version = make_version(project, copies=1)
    params = {"retrieval": True, "retrieval_unanswerable": 0.0, "seed": 1}
    report = rt.prepare_splits(project, project.actor(), version, tokenizer, params,
                               tmp_path / "out")
    rows = rewritten(tmp_path / "out")
    # The password question retrieves the password article; the answer's fact lives in
    # uploads.md, so the chunk stating it replaces the weakest hit.
    put_in = rows["qa-0-0"]
    assert put_in["metadata"]["retrieval"] == rt.PUT_IN
    assert "A single file may be at most 42 GB" in sources_text(put_in)
    assert any(c.startswith("handbook:uploads.md#") for c in put_in["metadata"]["retrieved"])
    assert len(put_in["metadata"]["retrieved"]) == 2  # still top_k sources
    # A question whose retrieved sources already hold the fact is left as retrieved.
    assert rows["qa-0-1"]["metadata"]["retrieval"] == rt.RETRIEVED
    assert "Admin console > Security > SSO" in sources_text(rows["qa-0-1"])
    # The answer is the reference; the question is the last thing before it (placement user).
    assert put_in["messages"][-1] == {"role": "assistant", "content": "Files can be at most 42 GB."}
    assert put_in["messages"][-2]["content"].endswith(QUESTIONS[0][0])
    assert put_in["messages"][-2]["content"].startswith("<sources>")
    assert report.counts[rt.PUT_IN] >= 1 and report.variant == "docs-rag"
    project.close()


def test_a_share_of_records_abstains_without_their_gold_passage(tmp_path, tokenizer,
                                                               monkeypatch):
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "p")
    version = make_version(project, copies=5)
    params = {"retrieval": True, "retrieval_unanswerable": 0.5, "seed": 3,
              "retrieval_abstain": "The documentation does not cover this."}
    report = rt.prepare_splits(project, project.actor(), version, tokenizer, params,
                               tmp_path / "out")
    rows = list(rewritten(tmp_path / "out").values())
    abstained = [r for r in rows if r["metadata"]["retrieval"] == rt.ABSTAIN]
    assert 0 < len(abstained) < len(rows)
    assert report.counts[rt.ABSTAIN] == len(abstained)
    for row in abstained:
        gold = row["metadata"]["kb_refs"][0]
        assert row["messages"][-1]["content"] == "The documentation does not cover this."
        assert not any(f":{gold}.md#" in c for c in row["metadata"]["retrieved"])
    project.close()


@pytest.mark.slow
def test_training_prompts_are_the_served_prompts_token_for_token(tmp_path, tiny_model,
                                                                 monkeypatch):
    """Train with retrieval, export to GGUF, then serve the variant on llama.cpp: for every
    record whose sources were used as retrieved, the served prompt is the trained one."""
    from tuneloop.engines import clear_engine_cache
    from tuneloop.store.runs import Run
    from tuneloop.train.retrieval import count_prompt_tokens
    from tuneloop.train.run import run_dir, train
    from tuneloop.train.sft import load_tokenizer
    from tuneloop.variants import get_variant

    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "p", placement="system", own_prompt=True)
    version = make_version(project, copies=1)
    result = train(project, project.actor(), version.ref, base=str(tiny_model),
                   overrides={"max_steps": 1, "model_name": "docs",
                              "retrieval_unanswerable": 0.0})
    assert result.published is not None
    with project.store.session(write=False) as session:
        run = session.get(Run, result.run_id)
        lineage = run.params["retrieval_report"]
    assert lineage["variant"] == "docs-rag" and lineage["index"].startswith("g")
    assert lineage["settings"]["top_k"] == 2 and lineage["settings"]["placement"] == "system"

    tokenizer = load_tokenizer(result.adapter_dir)
    variant = get_variant(Project.open(project.root), "docs-rag")
    assert variant.engine.kind == "llama.cpp"
    trained = rewritten(run_dir(project, result.run_id) / "retrieval")
    compared = 0
    for row in trained.values():
        if row["metadata"]["retrieval"] not in (rt.RETRIEVED, rt.NO_GOLD):
            continue
        question = [m for m in row["messages"] if m["role"] == "user"][-1]["content"]
        served = variant.prepare([{"role": "user", "content": question}], project.actor())
        assert served.messages == row["messages"][:-1]
        assert served.messages[0]["content"].startswith(
            "Be brief.\n\nAnswer from the sources.\n\n<sources>")
        text = tokenizer.apply_chat_template(served.messages, tokenize=False,
                                             add_generation_prompt=True)
        assert variant.engine.template.render(served.messages) == text
        assert variant.engine.count_tokens(served.messages) == count_prompt_tokens(
            tokenizer, served.messages)
        compared += 1
    assert compared >= 2
    clear_engine_cache()
    project.close()


def test_training_on_tier2_knowledge_needs_a_train_approval(tmp_path, tiny_model, monkeypatch):
    from tuneloop.governance import approvals, principals
    from tuneloop.train.run import train

    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "p", tier=2)
    with project.store.session() as session:
        privacy = principals.actor_of(principals.ensure_principal(session, "pia",
                                                                  role="privacy"))
    me = project.actor()
    rag = approvals.request(project.store, me, scope=["source:customer-notes"], uses=["rag"],
                            purpose="index the notes")
    approvals.grant(project.store, privacy, rag)
    index_knowledge_base(project, me)
    version = make_version(project, copies=1)
    with pytest.raises(ApprovalRequired) as refused:
        train(project, me, version.ref, base=str(tiny_model), overrides={"max_steps": 1},
              export=False)
    assert refused.value.use == "train"
    assert "source:customer-notes" in refused.value.hint
    # with the approval, the model carries the knowledge base's tier and roots
    allowed = approvals.request(project.store, me, scope=["source:customer-notes"],
                                uses=["train"], purpose="train on the notes")
    approvals.grant(project.store, privacy, allowed)
    result = train(project, me, version.ref, base=str(tiny_model),
                   overrides={"max_steps": 1, "model_name": "docs"}, export=False)
    assert result.tier == 2
    from tuneloop.engines.registry import get_model

    model = get_model(project, "docs")
    assert model.tier == 2 and "source:customer-notes" in model.roots
    assert model.lineage["retrieval"]["variant"] == "docs-rag"
    project.close()
