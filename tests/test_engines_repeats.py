"""Loop handling: `stop_repeats` ends an answer at its first verbatim repetition of a sentence,
on both engines, streamed or not, and never cuts an answer that does not repeat itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop.engines import GenerationParams
from tuneloop.engines._common import StopMatcher

SENTENCE = " Sync resumes after a restart."


@pytest.fixture(scope="module")
def looping(tmp_path_factory) -> Path:
    from tuneloop.engines.testing import looping_llama

    return looping_llama(tmp_path_factory.mktemp("loop"), SENTENCE)


@pytest.fixture(scope="module", params=["transformers", "llama_cpp"])
def engine(request, looping, tmp_path_factory):
    if request.param == "transformers":
        from tuneloop.engines.transformers import TransformersEngine

        engine = TransformersEngine(looping)
    else:
        from tuneloop.engines.export import export_gguf
        from tuneloop.engines.llama_cpp import LlamaCppEngine

        gguf = export_gguf(looping, tmp_path_factory.mktemp("gguf") / "loop.gguf", "f16")
        engine = LlamaCppEngine(gguf)
    yield engine
    engine.close()


MESSAGES = [{"role": "user", "content": "Is sync back?"}]


def test_the_model_loops_without_the_guard(engine) -> None:
    answer = engine.chat(MESSAGES, GenerationParams(max_tokens=40))
    assert answer.finish_reason == "length"
    assert answer.text.count(SENTENCE.strip()) >= 4


def test_the_guard_ends_the_loop_at_its_first_repetition(engine) -> None:
    params = GenerationParams(max_tokens=40, stop_repeats=True)
    answer = engine.chat(MESSAGES, params)
    assert answer.text.strip() == SENTENCE.strip()
    assert answer.finish_reason == "stop" and answer.completion_tokens < 20
    streamed = "".join(d.text for d in engine.stream(MESSAGES, params))
    assert streamed == answer.text


@pytest.mark.parametrize("pieces", [1, 3, 7])
def test_the_guard_keeps_sentences_that_only_start_alike(pieces: int) -> None:
    text = ("The link is valid for 30 minutes. The link is sent to your address. "
            "The link is valid for 30 minutes. More text")
    matcher = StopMatcher((), repeats=True)
    out = "".join(matcher.feed(text[i:i + pieces]) for i in range(0, len(text), pieces))
    out += matcher.flush()
    assert out == ("The link is valid for 30 minutes. The link is sent to your address. ")
    assert matcher.stopped


def test_short_repeats_and_user_stops_behave_as_before() -> None:
    matcher = StopMatcher(("END",), repeats=True)
    text = "Yes. Yes. Thanks a lot! END ignored"
    out = "".join(matcher.feed(c) for c in text) + matcher.flush()
    assert out == "Yes. Yes. Thanks a lot! "
