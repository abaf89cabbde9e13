"""`tuneloop models` and `tuneloop chat` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tuneloop import Project
from tuneloop.engines.registry import register_model


def test_models_list_shows_base_and_registered_models_with_tier_and_lineage(
        project_dir: Path) -> None:
    project = Project.open(project_dir)
    register_model(project, name="faq-run7", kind="adapter", path="/m/a", format="safetensors",
                   tier=2, roots=["source:tickets"], base_model="smollm2-135m",
                   lineage={"dataset_versions": ["faq@1f2e"], "run_id": 7})
    project.close()
    out = run_cli("models", "list", cwd=project_dir)
    assert out.returncode == 0, out.stderr
    base_line = next(line for line in out.stdout.splitlines() if "smollm2-135m" in line
                     and "base" in line and "faq" not in line)
    assert "llama.cpp / gguf" in base_line
    line = next(line for line in out.stdout.splitlines() if "faq-run7" in line)
    for text in ("adapter", "transformers", "2", "smollm2-135m", "faq@1f2e", "run 7"):
        assert text in line


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_chat_answers_one_message_with_the_bundled_model(project_dir: Path) -> None:
    out = run_cli("chat", "--message", "What is the capital of France? One word.",
                  "--max-tokens", "12", cwd=project_dir)
    assert out.returncode == 0, out.stderr
    assert "paris" in out.stdout.lower()
    assert "tokens, first after" in out.stderr


def test_chat_with_an_unknown_model_is_a_one_line_error(tmp_path: Path) -> None:
    Project.init(tmp_path / "p").close()
    out = run_cli("chat", "--model", "no-such-model", "--message", "hi", cwd=tmp_path / "p")
    assert out.returncode == 1
    assert "no model 'no-such-model'" in out.stderr
    assert "Traceback" not in out.stderr
