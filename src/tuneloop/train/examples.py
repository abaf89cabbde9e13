"""Training examples: chat records read from a dataset version, tokenised with the base model's
chat template, with labels on the assistant's tokens only.

The chat template is applied to the whole conversation once; which characters belong to each
assistant turn is found by rendering the conversation up to that turn with and without it, so
any template (ChatML, Llama, ...) works without needing `{% generation %}` markers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.errors import DataError, TrainingError

IGNORE_INDEX = -100  # the label value transformers' loss skips


@dataclass
class TokenizedExample:
    """One conversation as token ids, with labels equal to the ids on assistant tokens only."""

    id: str
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    # per-token loss weights (None: every labelled token weighs 1), see `copy_weights`
    weights: list[float] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class TokenizeReport:
    """What tokenisation kept and dropped, for the run summary."""

    kept: int = 0
    truncated: int = 0
    dropped_no_assistant: list[str] = field(default_factory=list)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Read a split's JSONL (`{"id", "messages": [...], ...}` per line), checking every line.

    A malformed line raises `DataError` naming the file and line.
    """
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg})", path=str(path),
                                line=number) from None
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str) for m in messages
            ):
                raise DataError("expected an object with 'messages': a list of "
                                "{'role': str, 'content': str}", path=str(path), line=number)
            record.setdefault("id", f"{path.name}:{number}")
            yield record


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]], *,
                          max_length: int, example_id: str = "") -> TokenizedExample:
    """Token ids and assistant-only labels for one conversation, truncated to `max_length`."""
    full_text = _render(tokenizer, messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not through.startswith(before) or not full_text.startswith(through):
            raise TrainingError(
                f"the chat template does not render conversations incrementally (example "
                f"{example_id or '?'}), so the assistant's tokens cannot be located",
                hint="use a base model whose chat template renders each turn after the previous")
        # the template's trailing newline after the end-of-turn token is not worth learning
        spans.append((len(before), len(through.rstrip())))
    encoded = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = encoded["input_ids"]
    labels = [IGNORE_INDEX] * len(ids)
    for t, (start, end) in enumerate(encoded["offset_mapping"]):
        if end > start and any(s <= start < e for s, e in spans):
            labels[t] = ids[t]
    return TokenizedExample(example_id, ids[:max_length], labels[:max_length],
                            truncated=len(ids) > max_length)


def tokenize_records(tokenizer: Any, records: list[dict[str, Any]], *, max_length: int,
                     system_prompt: str | None = None, copy_weight: float = 1.0,
                     ) -> tuple[list[TokenizedExample], TokenizeReport]:
    """Tokenise records; drop (and report) those left with no assistant token after truncation.

    `system_prompt` is put first when a conversation has no system message, so the model is
    trained in the same framing it is served in. With `copy_weight` above 1, answer tokens
    copied from the conversation's sources or question weigh that much more (`copy_weights`).
    """
    report = TokenizeReport()
    out: list[TokenizedExample] = []
    template = _ngrams(tokenizer, system_prompt or "") if copy_weight != 1.0 else set()
    for record in records:
        messages = escape_contents(tokenizer, record["messages"])
        if system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system_prompt})
        example = tokenize_conversation(tokenizer, messages, max_length=max_length,
                                        example_id=str(record["id"]))
        if copy_weight != 1.0:
            example.weights = copy_weights(tokenizer, example, messages, copy_weight,
                                           instructions=system_prompt or "", template=template)
        if example.trained_tokens == 0:
            report.dropped_no_assistant.append(str(record["id"]))
            continue
        report.truncated += example.truncated
        report.kept += 1
        out.append(example)
    return out, report


COPY_NGRAM = 3  # tokens in a row an answer must share with the prompt to count as copied


def copy_weights(tokenizer: Any, example: TokenizedExample, messages: list[dict[str, str]],
                 weight: float, *, instructions: str = "",
                 template: set[tuple[int, ...]] | None = None) -> list[float]:
    """Loss weights that favour the answer's sentences that carry facts from the prompt.

    A grounded answer is mostly a house template (greeting, thanks, sign-off) that a model
    learns in a few steps, and one or two sentences that state the facts, copied from the
    retrieved sources or the question. With an even loss the template dominates, and a small
    model learns to skip the fact sentence: at the token where it starts, a closing phrase is
    the likelier guess. A sentence of the answer weighs `weight` when it copies a run of
    `COPY_NGRAM` tokens from a user or tool message, or from a system message beyond the
    task's own `instructions` (whose phrases are template, not facts).
    """
    if template is None:  # the instructions' n-grams, computed once per run by the caller
        template = _ngrams(tokenizer, instructions)
    sources: set[tuple[int, ...]] = set()
    for message in messages:
        if message["role"] == "assistant":
            continue
        text = message["content"]
        if message["role"] == "system" and instructions:
            text = text.replace(instructions, " ")
        sources |= _ngrams(tokenizer, text)
    sources -= template
    ids, labels = example.input_ids, example.labels
    weights = [1.0] * len(ids)
    for sentence in _answer_sentences(tokenizer, ids, labels):
        copied = any(tuple(ids[t:t + COPY_NGRAM]) in sources
                     for t in sentence[: max(len(sentence) - COPY_NGRAM + 1, 0)])
        # the first token of every sentence chooses what comes next (a fact, another fact,
        # the closing): those choices weigh as much as the facts themselves
        for t in sentence if copied else sentence[:1]:
            weights[t] = weight
    return weights


def _answer_sentences(tokenizer: Any, ids: list[int], labels: list[int]) -> list[list[int]]:
    """Positions of the labelled tokens, grouped into sentences (a sentence ends after ".",
    "!", "?" followed by a space or a line break, or at a line break)."""
    sentences: list[list[int]] = []
    current: list[int] = []
    texts = {t: tokenizer.decode([ids[t]]) for t in range(len(ids)) if labels[t] != IGNORE_INDEX}
    for t, text in texts.items():
        if "\n" in text and current:
            sentences.append(current)
            current = []
        current.append(t)
        following = texts.get(t + 1, " ")
        if text.rstrip().endswith((".", "!", "?")) and following[:1].isspace():
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def _ngrams(tokenizer: Any, text: str) -> set[tuple[int, ...]]:
    """The token n-grams of `text` (each line tokenised as it would follow a space)."""
    out: set[tuple[int, ...]] = set()
    for line in filter(None, (line.strip() for line in text.splitlines())):
        ids = tokenizer(" " + line, add_special_tokens=False)["input_ids"]
        out |= {tuple(ids[i:i + COPY_NGRAM]) for i in range(len(ids) - COPY_NGRAM + 1)}
    return out


def escape_contents(tokenizer: Any, messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages whose contents cannot spell a special token of the tokenizer (`<|im_end|>` in a
    ticket or a document stays text), escaped exactly as the serving engines escape them, so a
    model is trained on the tokens it will be served."""
    from tuneloop.engines.templates import escape_specials, special_pattern, special_texts

    pattern = special_pattern(special_texts(tokenizer))
    return [{"role": m["role"], "content": escape_specials(m["content"], pattern)}
            for m in messages]


def _render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    if not messages:
        return ""
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError("the base model's tokenizer has no chat template",
                            hint="pick a chat (instruct) base model, or add a chat_template to "
                                 "its tokenizer_config.json")
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)
