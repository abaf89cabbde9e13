"""The bundled SmolLM2-135M-Instruct works out of the box through both local engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop.engines import GenerationParams
from tuneloop.engines.bundled import bundled_gguf_path, bundled_hf_dir

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="session")
def bundled_hf(request: pytest.FixtureRequest) -> Path:
    # The one-time conversion (GGUF -> f32 safetensors, ~0.5 GB) is kept in pytest's cache so
    # later runs on this machine reuse it, as a project reuses its `.tuneloop/models/` copy.
    return bundled_hf_dir(request.config.cache.mkdir("tuneloop-models"), quiet=True)


def test_bundled_gguf_ships_with_the_package() -> None:
    path = bundled_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert path.read_bytes()[:4] == b"GGUF"


@pytest.mark.slow
def test_bundled_model_answers_through_llama_cpp_and_transformers(bundled_hf: Path) -> None:
    from tuneloop.engines.llama_cpp import LlamaCppEngine
    from tuneloop.engines.transformers import TransformersEngine

    assert (bundled_hf / "model.safetensors").is_file()
    assert not list(bundled_hf.glob("*.bin"))
    cpp = LlamaCppEngine(bundled_gguf_path(), n_ctx=512, n_threads=1)
    hf = TransformersEngine(bundled_hf)
    try:
        params = GenerationParams(max_tokens=12)
        for engine in (cpp, hf):
            out = engine.chat(QUESTION, params)
            assert "paris" in out.text.lower(), (engine.kind, out.text)
        # the same tokenizer and chat template on both sides
        assert cpp.count_tokens(QUESTION) == hf.count_tokens(QUESTION)
    finally:
        cpp.close()


def test_converted_folder_is_reused_not_rebuilt(tmp_path: Path) -> None:
    from tuneloop.engines import bundled

    target = tmp_path / bundled.HF_DIR_NAME
    target.mkdir()
    (target / bundled._DONE_MARKER).write_text("done\n")
    assert bundled_hf_dir(tmp_path, quiet=True) == target  # no conversion: returns at once
    assert sorted(p.name for p in target.iterdir()) == [bundled._DONE_MARKER]
