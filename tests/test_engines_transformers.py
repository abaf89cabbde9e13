"""The transformers engine on a tiny random llama and on the bundled model's safetensors copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tuneloop.engines import GenerationParams
from tuneloop.engines.testing import tiny_llama
from tuneloop.engines.transformers import TransformersEngine
from tuneloop.errors import EngineError, InvalidRequest

CONVERSATIONS = [[{"role": "user", "content": text}] for text in
                 ("Hello", "What is the capital of France?", "Write a very long poem about rain.")]


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> TransformersEngine:
    return TransformersEngine(tiny_llama(tmp_path_factory.mktemp("models")))


@pytest.mark.slow
def test_batch_with_left_padding_equals_one_call_at_a_time(
        tiny_engine: TransformersEngine) -> None:
    params = GenerationParams(max_tokens=10)
    one_by_one = [tiny_engine.chat(c, params) for c in CONVERSATIONS]
    batched = tiny_engine.batch(CONVERSATIONS, params)
    assert [b.text for b in batched] == [o.text for o in one_by_one]
    assert [b.prompt_tokens for b in batched] == [o.prompt_tokens for o in one_by_one]
    assert all(b.extra["batch_size"] == 3 for b in batched)


def test_stream_joins_to_chat_and_reports_counts(tiny_engine: TransformersEngine) -> None:
    params = GenerationParams(max_tokens=8)
    deltas = list(tiny_engine.stream(CONVERSATIONS[0], params))
    final = deltas[-1].completion
    assert final is not None and final.completion_tokens == 8 and final.finish_reason == "length"
    assert "".join(d.text for d in deltas) == final.text == tiny_engine.chat(
        CONVERSATIONS[0], params).text
    assert final.prompt_tokens == tiny_engine.count_tokens(CONVERSATIONS[0])
    assert 0 < final.ttft_s <= final.total_s


def test_sampling_is_reproducible_with_a_seed_and_varies_without_one_fixed(
        tiny_engine: TransformersEngine) -> None:
    a = tiny_engine.chat(CONVERSATIONS[1], GenerationParams(max_tokens=8, temperature=1.0, seed=1))
    b = tiny_engine.chat(CONVERSATIONS[1], GenerationParams(max_tokens=8, temperature=1.0, seed=1))
    c = tiny_engine.chat(CONVERSATIONS[1], GenerationParams(max_tokens=8, temperature=1.0, seed=2))
    assert a.text == b.text
    assert a.text != c.text


def test_stop_string_cuts_stream_and_batch_alike(tiny_engine: TransformersEngine) -> None:
    full = tiny_engine.chat(CONVERSATIONS[2], GenerationParams(max_tokens=12)).text
    stop = full[len(full) // 2:len(full) // 2 + 2]
    params = GenerationParams(max_tokens=12, stop=(stop,))
    streamed = tiny_engine.chat(CONVERSATIONS[2], params)
    batched = tiny_engine.batch([CONVERSATIONS[2]], params)[0]
    assert streamed.text == batched.text == full[:full.index(stop)]
    assert streamed.finish_reason == batched.finish_reason == "stop"


def test_bad_requests_and_overflow_are_clear_errors(tiny_engine: TransformersEngine) -> None:
    with pytest.raises(InvalidRequest, match="role"):
        tiny_engine.chat([{"role": "robot", "content": "x"}], GenerationParams())
    with pytest.raises(InvalidRequest, match="context window"):
        tiny_engine.batch([[{"role": "user", "content": "word " * 3000}]], GenerationParams())


def test_loads_safetensors_only(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_llama(tmp_path / "models"), folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(EngineError, match="never through pickle"):
        TransformersEngine(folder)


@pytest.mark.slow
def test_peft_adapter_changes_the_answer(tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = tiny_llama(tmp_path / "models")
    model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1.0)
    peft_model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    params = GenerationParams(max_tokens=8)
    plain = TransformersEngine(base).chat(CONVERSATIONS[1], params).text
    adapted = TransformersEngine(base, adapter_dir=tmp_path / "adapter").chat(
        CONVERSATIONS[1], params).text
    assert adapted != plain
