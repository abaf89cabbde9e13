"""Running variants over examples: concurrent requests through the variant's real engine, with
every answer's timings, tokens, citations and retrieved chunks kept.

Variants run one after another so they never compete for the CPU with each other; within a
variant, `concurrency` requests are in flight at once (the concurrency the latency is stated
under). One warm-up request per variant is made first and not measured, so loading the model
does not land in the p99. Latency is what the caller of the variant waits: retrieval and
prompt assembly included, not only the engine's generation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from tuneloop.engines.base import Message
from tuneloop.errors import DataError, EngineError
from tuneloop.evaluate.metrics import record_field
from tuneloop.evaluate.summary import Output
from tuneloop.governance.tiers import Actor
from tuneloop.variant_protocol import RunnableVariant

Progress = Callable[[str, int, int], None]  # (variant, done, total)


@dataclass
class Example:
    """One evaluation example: its input messages, the reference answer and the record."""

    id: str
    messages: list[Message]
    reference: str
    record: dict[str, Any]
    slice: str | None = None


def examples_from_records(records: Sequence[dict[str, Any]], *, path: str | Path | None = None,
                          slice_field: str | None = None) -> list[Example]:
    """Split each record into input messages and reference (its last, assistant, message).

    A malformed record raises `DataError` naming the file and the line (records are lines).
    """
    out = []
    for line, record in enumerate(records, start=1):
        where: dict[str, Any] = {"path": str(path) if path else "evaluation split", "line": line}
        messages = record.get("messages")
        if not isinstance(messages, list) or len(messages) < 2:
            raise DataError("a record needs `messages` with at least a user message and the "
                            "reference assistant answer", **where)
        last = messages[-1]
        if not isinstance(last, dict) or last.get("role") != "assistant":
            raise DataError("the last message must be the reference answer (role 'assistant'), "
                            f"found role {last.get('role') if isinstance(last, dict) else last!r}",
                            **where)
        inputs = [m for m in messages[:-1] if isinstance(m, dict)]
        if not any(m.get("role") == "user" for m in inputs):
            raise DataError("a record needs a user message before the reference", **where)
        slice_value = record_field(record, slice_field) if slice_field else None
        out.append(Example(str(record.get("id", line)), inputs, str(last.get("content") or ""),
                           record, None if slice_value is None else str(slice_value)))
    return out


def hit_dict(hit: Any) -> dict[str, Any]:
    """A retrieved chunk as a plain dict (hits may be dataclasses, objects or dicts)."""
    if isinstance(hit, dict):
        data = dict(hit)
    elif is_dataclass(hit) and not isinstance(hit, type):
        data = asdict(hit)
    else:
        data = {k: getattr(hit, k) for k in ("chunk_id", "doc_id", "source", "tier", "text",
                                              "score") if hasattr(hit, k)}
    return {k: v for k, v in data.items() if isinstance(v, str | int | float | bool | type(None))}


WARMUP_TOKENS = 4


def answer_one(variant: RunnableVariant, example: Example, actor: Actor,
               retrieved: dict[str, list[dict]]) -> Output:
    """One example answered and measured; its retrieved chunks go into `retrieved`. An engine
    failure is recorded on the output, not raised."""
    out = Output(variant=variant.name, record_id=example.id, output="",
                 reference=example.reference, prompt=example.messages, slice=example.slice)
    start = time.perf_counter()
    try:
        result = variant.run(example.messages, actor)
    except EngineError as exc:
        out.error = str(exc) or type(exc).__name__
        out.finish_reason = "error"
        return out
    wall = time.perf_counter() - start
    completion = result.completion
    # Users wait for retrieval and prompt assembly too, which happen before the engine call:
    # add that time to the engine's own time to first token and total.
    before_engine = max(0.0, wall - completion.total_s)
    out.output = completion.text
    out.finish_reason = completion.finish_reason
    out.ttft_s = completion.ttft_s + before_engine
    out.total_s = completion.total_s + before_engine
    out.prompt_tokens = completion.prompt_tokens
    out.completion_tokens = completion.completion_tokens
    out.citations = [c if isinstance(c, dict) else hit_dict(c)
                     for c in (result.citations or [])]
    hits = _mark_shown([hit_dict(h) for h in (result.hits or [])], out.citations,
                       getattr(result, "context", None) or [])
    out.chunk_ids = [h.get("chunk_id") for h in hits]
    retrieved[example.id] = hits
    return out


def run_variant(variant: RunnableVariant, examples: Sequence[Example], actor: Actor, *,
                concurrency: int = 1, warmup: bool = True,
                progress: Progress | None = None) -> tuple[list[Output], dict[str, list[dict]],
                                                             float]:
    """Answer every example with `variant`; returns outputs, retrieved chunks by id, wall time.

    An engine failure on one example is recorded on that output (and counted as an error);
    anything else (a refused approval, a crash) stops the run.
    """
    if warmup and examples:
        # Loads the engine, the retriever and their caches so the first measured request does
        # not pay for them; a few tokens are enough for that, a whole answer would only cost
        # time. A failing warm-up is not an error of its own: the measured request records it.
        with contextlib.suppress(EngineError):
            variant.run(examples[0].messages, actor, variant.params(max_tokens=WARMUP_TOKENS))
    retrieved: dict[str, list[dict]] = {}
    done = 0

    def one(example: Example) -> Output:
        return answer_one(variant, example, actor, retrieved)

    outputs: list[Output] = []
    start = time.perf_counter()
    # One at a time, the calling thread answers: llama.cpp driven from a pool thread measured
    # ~1.4x slower on 2 cores (its worker threads and the idle ones of the caller compete).
    with contextlib.ExitStack() as stack:
        if concurrency > 1:
            pool = stack.enter_context(ThreadPoolExecutor(
                max_workers=concurrency, thread_name_prefix=f"eval-{variant.name}"))
            answers = pool.map(one, examples)
        else:
            answers = map(one, examples)
        for out in answers:
            outputs.append(out)
            done += 1
            if progress:
                progress(variant.name, done, len(examples))
    wall = time.perf_counter() - start
    return outputs, retrieved, wall


def _mark_shown(hits: list[dict[str, Any]], citations: Sequence[dict[str, Any]],
                context: Sequence[str]) -> list[dict[str, Any]]:
    """Retrieved chunks marked with whether they were placed in the prompt (`in_prompt`) and
    the text the model saw of them (`shown`), for the "context holds the key fact" metric."""
    shown = {c.get("chunk_id"): text for c, text in zip(citations, context, strict=False)}
    cited = {c.get("chunk_id") for c in citations}
    for hit in hits:
        hit["in_prompt"] = hit.get("chunk_id") in cited
        if hit.get("chunk_id") in shown:
            hit["shown"] = shown[hit["chunk_id"]]
    return hits
