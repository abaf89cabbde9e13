"""The llama.cpp engine on the bundled SmolLM2 GGUF and on tiny exported models."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tuneloop.engines import GenerationParams
from tuneloop.engines.bundled import bundled_gguf_path
from tuneloop.engines.llama_cpp import LlamaCppEngine
from tuneloop.errors import EngineError, InvalidRequest, NotFound

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def bundled() -> LlamaCppEngine:
    # one thread: the test machine's cores are shared, and llama.cpp's threads spin-wait
    engine = LlamaCppEngine(bundled_gguf_path(), name="smollm2", n_ctx=1024, n_threads=1)
    yield engine
    engine.close()


def test_bundled_model_answers_a_simple_question(bundled: LlamaCppEngine) -> None:
    out = bundled.chat(QUESTION, GenerationParams(max_tokens=16))
    assert "paris" in out.text.lower()
    assert out.finish_reason in ("stop", "length")
    assert out.prompt_tokens == bundled.count_tokens(QUESTION) > 10
    assert 0 < out.completion_tokens <= 16
    assert 0 < out.ttft_s <= out.total_s


def test_stream_deltas_join_to_the_same_text_as_chat(bundled: LlamaCppEngine) -> None:
    params = GenerationParams(max_tokens=12)
    deltas = list(bundled.stream(QUESTION, params))
    final = deltas[-1].completion
    assert final is not None
    assert "".join(d.text for d in deltas) == final.text == bundled.chat(QUESTION, params).text
    assert len([d for d in deltas if d.text]) > 1


def test_same_prompt_answers_the_same_whatever_ran_before(bundled: LlamaCppEngine) -> None:
    params = GenerationParams(max_tokens=8)
    first = bundled.chat(QUESTION, params).text
    # a different conversation that shares the prompt's prefix, then an unrelated one
    other = GenerationParams(max_tokens=3)
    bundled.chat([*QUESTION, {"role": "assistant", "content": "Berlin"},
                  {"role": "user", "content": "Are you sure? Say Berlin."}], other)
    bundled.chat([{"role": "user", "content": "Write a poem about the sea."}], other)
    assert bundled.chat(QUESTION, params).text == first


def test_max_tokens_ends_with_length_finish(bundled: LlamaCppEngine) -> None:
    out = bundled.chat([{"role": "user", "content": "Count from 1 to 100."}],
                       GenerationParams(max_tokens=5))
    assert out.completion_tokens == 5
    assert out.finish_reason == "length"


def test_stop_string_cuts_the_answer_before_it(bundled: LlamaCppEngine) -> None:
    messages = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    full = bundled.chat(messages, GenerationParams(max_tokens=16)).text
    assert "3" in full
    cut = bundled.chat(messages, GenerationParams(max_tokens=16, stop=("3",)))
    assert cut.finish_reason == "stop"
    assert "3" not in cut.text and "2" in cut.text
    assert full.startswith(cut.text)


def test_closing_a_stream_early_frees_the_engine_for_the_next_caller(
        bundled: LlamaCppEngine) -> None:
    stream = bundled.stream([{"role": "user", "content": "Tell me a long story."}],
                            GenerationParams(max_tokens=200))
    next(stream)
    stream.close()
    # with one context, this would block forever if the closed stream still held it
    done = threading.Event()
    result = {}

    def call() -> None:
        result["out"] = bundled.chat(QUESTION, GenerationParams(max_tokens=8))
        done.set()

    threading.Thread(target=call, daemon=True).start()
    assert done.wait(120)
    assert result["out"].completion_tokens > 0


def test_concurrent_callers_share_one_model_safely(bundled: LlamaCppEngine) -> None:
    params = GenerationParams(max_tokens=6)
    expected = bundled.chat(QUESTION, params).text
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(bundled.chat(QUESTION, params).text))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert results == [expected] * 3


@pytest.mark.parametrize(("messages", "params", "fragment"), [
    ([], GenerationParams(), "non-empty list"),
    ([{"role": "wizard", "content": "hi"}], GenerationParams(), "role"),
    ([{"role": "user", "content": "   "}], GenerationParams(), "no non-empty user message"),
    ([{"role": "user", "content": 3}], GenerationParams(), "content must be a string"),
    (QUESTION, GenerationParams(max_tokens=0), "max_tokens"),
    (QUESTION, GenerationParams(temperature=-1), "temperature"),
    (QUESTION, GenerationParams(top_p=0), "top_p"),
])
def test_bad_requests_are_clear_errors(bundled: LlamaCppEngine, messages, params,
                                       fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        bundled.chat(messages, params)
    with pytest.raises(InvalidRequest, match=fragment):
        bundled.stream(messages, params)  # checked before the first delta is requested


def test_context_overflow_is_a_clear_error(bundled: LlamaCppEngine) -> None:
    long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(InvalidRequest, match="context window of 1024 tokens"):
        bundled.chat(long, GenerationParams())


def test_engine_still_works_after_errors(bundled: LlamaCppEngine) -> None:
    with pytest.raises(InvalidRequest):
        bundled.chat([{"role": "user", "content": "word " * 3000}], GenerationParams())
    assert "paris" in bundled.chat(QUESTION, GenerationParams(max_tokens=16)).text.lower()


def test_missing_or_non_gguf_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no GGUF file"):
        LlamaCppEngine(tmp_path / "absent.gguf")
    pickle = tmp_path / "model.gguf"
    pickle.write_bytes(b"\x80\x04\x95 not a gguf")
    with pytest.raises(EngineError, match="not a GGUF file"):
        LlamaCppEngine(pickle)


MALICIOUS_TEMPLATES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch /tmp/tuneloop-pwned').read() }}",
    "{% for m in messages %}{{ m.__class__.__init__.__globals__ }}{% endfor %}",
]


@pytest.mark.parametrize("template", MALICIOUS_TEMPLATES)
def test_malicious_chat_template_in_a_gguf_fails_safely(tmp_path: Path, template: str) -> None:
    from tuneloop.engines.export import export_gguf
    from tuneloop.engines.testing import tiny_llama

    folder = tmp_path / "evil"
    shutil.copytree(tiny_llama(tmp_path / "models"), folder)
    (folder / "chat_template.jinja").write_text(template, encoding="utf-8")
    engine = LlamaCppEngine(export_gguf(folder, tmp_path / "evil.gguf", "f16"), n_ctx=256)
    try:
        with pytest.raises(EngineError) as caught:
            engine.chat(QUESTION, GenerationParams(max_tokens=4))
        assert "chat template" in str(caught.value)
        assert not Path("/tmp/tuneloop-pwned").exists()
    finally:
        engine.close()
