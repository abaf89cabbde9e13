"""tuneloop's own GGUF exporter: llama.cpp on the exported file decodes what transformers does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneloop.engines import GenerationParams
from tuneloop.engines.export import export_gguf
from tuneloop.engines.testing import tiny_llama
from tuneloop.errors import EngineError

PROMPTS = ["What is 2+2?", "Tell me a story about a cat.", "Hello",
           'Translate "bonjour" to English.', "List three colours."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("models"))


@pytest.mark.slow
def test_llama_cpp_greedy_tokens_equal_transformers_on_an_f32_export(
        tiny: Path, tmp_path: Path) -> None:
    from tuneloop.engines.llama_cpp import LlamaCppEngine
    from tuneloop.engines.transformers import TransformersEngine

    gguf = export_gguf(tiny, tmp_path / "tiny-f32.gguf", "f32")
    # f32 KV cache: the default f16 cache rounds enough to flip near-tied logits of a random model
    cpp = LlamaCppEngine(gguf, n_ctx=512, n_threads=1, kv_cache_type="f32")
    hf = TransformersEngine(tiny)
    params = GenerationParams(max_tokens=16)
    try:
        for prompt in PROMPTS:
            messages = [{"role": "user", "content": prompt}]
            assert cpp.count_tokens(messages) == hf.count_tokens(messages)
            ours, theirs = cpp.chat(messages, params), hf.chat(messages, params)
            assert ours.completion_tokens == theirs.completion_tokens == 16
            assert ours.text == theirs.text, prompt
    finally:
        cpp.close()


@pytest.mark.slow
def test_f16_and_q8_0_exports_store_smaller_tensors_and_load_in_llama_cpp(
        tiny: Path, tmp_path: Path) -> None:
    import gguf as gg

    from tuneloop.engines.llama_cpp import LlamaCppEngine

    sizes = {}
    for quant, expected in (("f16", gg.GGMLQuantizationType.F16),
                            ("q8_0", gg.GGMLQuantizationType.Q8_0)):
        path = export_gguf(tiny, tmp_path / f"tiny-{quant}.gguf", quant)
        sizes[quant] = path.stat().st_size
        reader = gg.GGUFReader(path)
        types = {t.name: t.tensor_type for t in reader.tensors}
        assert types["blk.0.attn_q.weight"] == expected
        assert types["blk.0.attn_norm.weight"] == gg.GGMLQuantizationType.F32
        assert "output.weight" not in types  # tied embeddings: llama.cpp reuses token_embd
        engine = LlamaCppEngine(path, n_ctx=256, n_threads=1)
        try:
            out = engine.chat([{"role": "user", "content": "Hi"}], GenerationParams(max_tokens=4))
            assert out.completion_tokens == 4
        finally:
            engine.close()
    assert sizes["q8_0"] < sizes["f16"]


@pytest.mark.slow
def test_exported_tokenizer_matches_the_bundled_gguf_fields(tiny: Path, tmp_path: Path) -> None:
    import gguf as gg

    from tuneloop.engines.bundled import bundled_gguf_path

    path = export_gguf(tiny, tmp_path / "tiny.gguf", "f16")
    ours, bundled = gg.GGUFReader(path), gg.GGUFReader(bundled_gguf_path())
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"):
        assert ours.fields[key].contents() == bundled.fields[key].contents(), key
    tokens = ours.fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == len(bundled.fields["tokenizer.ggml.tokens"].data) == 49152
    for i in (0, 2, 100, 49151):
        assert tokens.contents(i) == bundled.fields["tokenizer.ggml.tokens"].contents(i)


def test_export_refuses_pickle_only_weights_and_leaves_no_file(tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(EngineError, match=r"no \.safetensors weights") as caught:
        export_gguf(folder, tmp_path / "out" / "x.gguf")
    assert "never through pickle" in str(caught.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_export_refuses_a_non_llama_model_and_unknown_quantization(
        tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "gpt2ish"
    shutil.copytree(tiny, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EngineError, match="not llama-family"):
        export_gguf(folder, tmp_path / "x.gguf")
    with pytest.raises(EngineError, match="unknown GGUF quantization"):
        export_gguf(tiny, tmp_path / "x.gguf", "q2_k")  # type: ignore[arg-type]
