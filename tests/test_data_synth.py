"""Synthetic records from documents: the gate, the kind of source, and the generation itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tuneloop.engines
from tuneloop import Project
from tuneloop.data.synth import passages, synthesise
from tuneloop.errors import ApprovalRequired, DataError

CONFIG = """
version: 1
task: {{name: helpdesk}}
base_model: {{name: tiny, path: {model}}}
sources:
  - {{name: kb, path: kb/, kind: documents, tier: {tier}}}
  - {{name: tickets, path: tickets.jsonl, tier: 1}}
"""


def _project(root: Path, tier: int, model: str = "bundled:smollm2-135m") -> Project:
    (root / "kb").mkdir(parents=True)
    (root / "kb" / "reset.md").write_text(
        "# Password reset\n\nOpen Settings > Security and choose Reset password. The link in the "
        "e-mail is valid for 30 minutes.\n\nAdmins can force a reset for any member.\n")
    (root / "tickets.jsonl").write_text(json.dumps({"input": "q", "output": "a"}) + "\n")
    (root / "tuneloop.yaml").write_text(CONFIG.format(tier=tier, model=model))
    return Project.init(root)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    return tmp_path / "proj"


def test_passages_follow_paragraphs_and_stay_near_the_size() -> None:
    text = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(10))
    parts = passages(text, size=500)
    assert len(parts) > 1 and all(len(p) <= 500 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


def test_synth_from_tier2_documents_needs_an_approval(root: Path) -> None:
    project = _project(root, tier=2)
    with pytest.raises(ApprovalRequired, match="source 'kb'"):
        synthesise(project, project.actor(), "kb")
    assert not (root / "data" / "synth").exists()


def test_synth_needs_a_documents_source(root: Path) -> None:
    project = _project(root, tier=1)
    with pytest.raises(DataError, match="holds records, not documents"):
        synthesise(project, project.actor(), "tickets")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(tuneloop.engines, "load_engine"),
                    reason="the engines stage provides load_engine; not in this checkout yet")
def test_a_model_that_writes_no_questions_is_reported_not_saved(root: Path,
                                                                tmp_path: Path) -> None:
    from tuneloop.engines.testing import tiny_llama

    # A tiny random model writes noise: every pair must be dropped, and the error says why.
    project = _project(root, tier=1, model=str(tiny_llama(tmp_path / "models")))
    with pytest.raises(DataError, match="no usable question/answer pair") as info:
        synthesise(project, project.actor(), "kb", per_document=1)
    assert "empty or malformed" in str(info.value)
    assert not list(root.glob("data/synth/*.jsonl"))
