"""The model registry and `load_engine`: names, paths and registered models resolve to one shared
engine of the right kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop import Project
from tuneloop.engines import GenerationParams, clear_engine_cache, load_engine
from tuneloop.engines.registry import get_model, list_models, register_model
from tuneloop.errors import InvalidRequest, NotFound


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    clear_engine_cache()


def test_register_get_and_list_with_lineage(project_dir: Path) -> None:
    project = Project.open(project_dir)
    register_model(project, name="faq-run1", kind="adapter", path="/models/a",
                   format="safetensors", tier=2, roots=["source:tickets", "source:tickets"],
                   base_model="smollm2-135m",
                   lineage={"dataset_versions": ["faq@abc"], "run_id": 1, "approvals": ["3"]})
    register_model(project, name="faq-run1-gguf", kind="gguf", path="/models/a.gguf",
                   format="gguf", tier=2, roots=["source:tickets"], base_model="faq-run1")
    model = get_model(project, "faq-run1")
    assert (model.kind, model.tier, model.roots, model.engine) == (
        "adapter", 2, ("source:tickets",), "transformers")
    assert model.lineage["dataset_versions"] == ["faq@abc"]
    names = [m.name for m in list_models(project)]
    assert names == ["smollm2-135m", "faq-run1-gguf", "faq-run1"]
    assert list_models(project)[0].registered is False
    assert get_model(project, "faq-run1-gguf").engine == "llama.cpp"
    project.close()


def test_reregistering_updates_and_bad_entries_are_refused(project_dir: Path) -> None:
    project = Project.open(project_dir)
    register_model(project, name="m", kind="merged", path="/a", format="safetensors", tier=1)
    register_model(project, name="m", kind="merged", path="/b", format="safetensors", tier=2)
    assert (get_model(project, "m").path, get_model(project, "m").tier) == ("/b", 2)
    with pytest.raises(InvalidRequest, match="unknown model kind"):
        register_model(project, name="x", kind="lora", path="/a", format="safetensors", tier=1)
    with pytest.raises(InvalidRequest, match="reserved"):
        register_model(project, name="bundled:x", kind="gguf", path="/a", format="gguf", tier=1)
    with pytest.raises(NotFound, match="tuneloop models list"):
        get_model(project, "nope")
    project.close()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_load_engine_resolves_names_paths_and_registered_exports(
        project_dir: Path, tmp_path: Path) -> None:
    from tuneloop.engines.export import export_gguf
    from tuneloop.engines.testing import tiny_llama

    project = Project.open(project_dir)
    base = load_engine(project, "base")
    assert base.kind == "llama.cpp" and base is load_engine(project, "base")  # shared
    assert load_engine(project, "bundled:smollm2-135m", n_threads=1).kind == "llama.cpp"

    folder = tiny_llama(tmp_path / "models")
    hf = load_engine(project, str(folder), n_threads=1)  # llama.cpp-only option: ignored
    assert hf.kind == "transformers"
    gguf = export_gguf(folder, tmp_path / "tiny.gguf", "f16")
    register_model(project, name="tiny-gguf", kind="gguf", path=str(gguf), format="gguf",
                   tier=1, base_model=str(folder))
    cpp = load_engine(project, "tiny-gguf", n_threads=1)
    assert (cpp.kind, cpp.model_name) == ("llama.cpp", "tiny-gguf")
    question = [{"role": "user", "content": "Hi"}]
    assert cpp.count_tokens(question) == hf.count_tokens(question)
    assert cpp.chat(question, GenerationParams(max_tokens=3)).completion_tokens == 3
    with pytest.raises(NotFound, match="not a registered model"):
        load_engine(project, "missing-model")
    project.close()
