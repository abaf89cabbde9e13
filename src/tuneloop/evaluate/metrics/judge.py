"""LLM-as-judge: any engine grades answers against a rubric; the score is parsed robustly.

The judge sees the question, the reference when there is one, the answer and the rubric, and
is asked to end with `Score: N` on a 1..scale scale. Small models rarely follow the format
exactly, so `parse_score` also accepts JSON (`{"score": 4}`), `4/5`, and a lone number; an
answer with no usable number is not scored (None) rather than guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from tuneloop.engines.base import Engine, GenerationParams, Message
from tuneloop.evaluate.metrics import Metric, MetricContext, Sample, register

DEFAULT_RUBRIC = (
    "5: fully correct, complete and consistent with the reference; "
    "4: correct with minor omissions; 3: partly correct; "
    "2: mostly wrong or unhelpful; 1: wrong, off-topic or empty."
)
_SCORE_LABEL = re.compile(r"(?:score|rating|grade)\s*(?:is|of|=|:)?\s*\**\s*(\d+(?:\.\d+)?)",
                          re.IGNORECASE)
_FRACTION = re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")


def parse_score(text: str, scale: int = 5) -> float | None:
    """The grade in `text` on a 1..scale scale, or None when there is no usable one."""
    text = text.strip()
    candidates: list[float] = []
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("score"), int | float):
            candidates.append(float(data["score"]))
    except (json.JSONDecodeError, ValueError):
        pass
    candidates += [float(m.group(1)) for m in _SCORE_LABEL.finditer(text)]
    for m in _FRACTION.finditer(text):
        if int(m.group(2)) == scale:
            candidates.append(float(m.group(1)))
    for value in candidates:
        if 1 <= value <= scale:
            return value
    numbers = {float(m.group(1)) for m in _NUMBER.finditer(text)}
    numbers = {n for n in numbers if 1 <= n <= scale}
    # Several different numbers in range and no label: nothing says which one is the grade.
    return numbers.pop() if len(numbers) == 1 else None


def judge_messages(question: str, answer: str, reference: str | None, rubric: str,
                   scale: int) -> list[Message]:
    """The chat the judge is given for one answer."""
    parts = [f"Question:\n{question.strip()}"]
    if reference and reference.strip():
        parts.append(f"Reference answer:\n{reference.strip()}")
    parts.append(f"Answer to grade:\n{answer.strip() or '(empty)'}")
    parts.append(f"Rubric:\n{rubric}")
    parts.append(f"Grade the answer from 1 to {scale}. End with a line `Score: N`.")
    return [
        {"role": "system", "content": "You are a strict, fair grader of answers."},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def question_of(record: dict[str, Any]) -> str:
    """The last user message of an example (what the answer responds to)."""
    for message in reversed(record.get("messages") or []):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


@register
class LLMJudge(Metric):
    """A model grades each answer against a rubric (and the reference, when there is one).

    `model` is anything `tuneloop.engines.load_engine` resolves: `base`, a registered model,
    a GGUF or HF folder path, or an OpenAI-compatible endpoint. Python callers may pass an
    `Engine` directly as `engine`.
    """

    name = "llm_judge"
    description = "an LLM grades the answer against a rubric"

    def __init__(self, *, model: str = "base", rubric: str = DEFAULT_RUBRIC, scale: int = 5,
                 max_tokens: int = 64, use_reference: bool = True,
                 engine: Engine | None = None) -> None:
        if scale < 2:
            raise ValueError(f"scale must be at least 2, found {scale}")
        self.model = model
        self.rubric = rubric
        self.scale = scale
        self.max_tokens = max_tokens
        self.use_reference = use_reference
        self._engine = engine
        self.unparsed = 0  # answers the judge gave without a usable score

    def engine(self, project: Any) -> Engine:
        """The judging engine (loaded on first use)."""
        if self._engine is None:
            from tuneloop.engines import load_engine

            self._engine = load_engine(project, self.model)
        return self._engine

    def grade(self, conversations: Sequence[Sequence[Message]], project: Any = None
              ) -> list[float | None]:
        """Run the judge on prepared chats and map each grade to [0, 1]."""
        params = GenerationParams(max_tokens=self.max_tokens, temperature=0.0, seed=0)
        completions = self.engine(project).batch(conversations, params)
        out: list[float | None] = []
        for completion in completions:
            value = parse_score(completion.text, self.scale)
            if value is None:
                self.unparsed += 1
                out.append(None)
            else:
                out.append((value - 1) / (self.scale - 1))
        return out

    def judge(self, question: str, answer: str, reference: str | None = None,
              project: Any = None) -> float | None:
        """Grade one answer in [0, 1] (None when the judge's reply has no usable score)."""
        chat = judge_messages(question, answer, reference, self.rubric, self.scale)
        return self.grade([chat], project)[0]

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """The judge's grade of one answer."""
        return self.score_batch([Sample(prediction, reference, record, context)])[0]

    def score_batch(self, samples: Sequence[Sample]) -> list[float | None]:
        """Grades of many answers, sent to the engine as one batch."""
        if not samples:
            return []
        chats = [judge_messages(question_of(s.record), s.prediction,
                                s.reference if self.use_reference else None,
                                self.rubric, self.scale) for s in samples]
        return self.grade(chats, samples[0].context.project)
