"""Synthetic question/answer records generated from knowledge-base documents by a model.

For each document passage the engine writes a question a customer could ask, then answers it
from the passage alone. Empty, malformed and duplicate pairs (exact or near, by MinHash) are
dropped. The records are written as a new records source (same tier as the documents) with a
lineage file naming the generator, so a dataset built from them records where they came from.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.data.dedup import NearDuplicates
from tuneloop.data.readers import iter_documents
from tuneloop.data.sources import add_source, content_hash, get_source
from tuneloop.errors import DataError
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project

PASSAGE_CHARS = 1200
QUESTION_PROMPT = ("Here is a passage from our product documentation.\n\n{passage}\n\n"
                   "Write one question a customer could ask that this passage answers. "
                   "Reply with the question only.")
ANSWER_PROMPT = ("Answer the customer's question using only this documentation.\n\n{passage}\n\n"
                 "Question: {question}")


@dataclass(frozen=True)
class SynthReport:
    """What a synthesis run produced: the new source, its file, and how many pairs were kept."""

    source: str
    path: Path
    documents: int
    kept: int
    dropped: dict[str, int]


def passages(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """Paragraph-aligned passages of about `size` characters."""
    out, current = [], ""
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        if current and len(current) + len(para) > size:
            out.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        out.append(current)
    return out


def synthesise(project: Project, actor: Actor, source_name: str, *, name: str = "synth",
               per_document: int = 2, model: str = "base", limit: int | None = None,
               near_dup_threshold: float = 0.8,
               progress: Callable[[int], None] | None = None) -> SynthReport:
    """Generate question/answer records from the documents of `source_name` with `model`."""
    source = get_source(project, source_name)
    if source.kind != "documents":
        raise DataError(f"source {source_name!r} holds records, not documents",
                        path=str(source.path), hint="synthesise from a knowledge-base folder")
    require(project.store, actor, "train", [source.resource],
            purpose=f"synthesise training records {name!r} from {source_name}")
    from tuneloop.engines import GenerationParams, load_engine  # type: ignore[attr-defined]

    engine = load_engine(project, model)
    params = GenerationParams(max_tokens=96, temperature=0.0, seed=0)
    near = NearDuplicates(near_dup_threshold)
    pairs: list[dict[str, Any]] = []
    dropped = {"empty or malformed": 0, "exact duplicate": 0, "near duplicate": 0}
    seen: set[str] = set()
    documents = 0
    for doc in iter_documents(source.path):
        if limit is not None and documents >= limit:
            break
        documents += 1
        for passage in passages(doc.text)[:per_document]:
            question = _clean(engine.chat([{"role": "user", "content": QUESTION_PROMPT.format(
                passage=passage)}], params).text)
            if not question.endswith("?") or len(question.split()) < 3:
                dropped["empty or malformed"] += 1
                continue
            answer = _clean(engine.chat([{"role": "user", "content": ANSWER_PROMPT.format(
                passage=passage, question=question)}], params).text)
            if len(answer.split()) < 3:
                dropped["empty or malformed"] += 1
                continue
            key = " ".join(question.lower().split())
            if key in seen:
                dropped["exact duplicate"] += 1
                continue
            seen.add(key)
            near.add(f"{question}\n{answer}")
            pairs.append({"messages": [{"role": "user", "content": question},
                                       {"role": "assistant", "content": answer}],
                          "metadata": {"document": doc.relpath, "title": doc.title,
                                       "generator": {"model": model,
                                                     "engine": getattr(engine, "kind", ""),
                                                     "model_name": getattr(engine, "model_name",
                                                                           "")}}})
            if progress:
                progress(len(pairs))
    resolution = near.resolve()
    kept = [p for i, p in enumerate(pairs) if resolution.duplicate_of[i] < 0]
    dropped["near duplicate"] = len(pairs) - len(kept)
    if not kept:
        raise DataError(f"the model produced no usable question/answer pair from "
                        f"{documents} documents ({dropped})", path=str(source.path),
                        hint="try a larger model with --model, or more --per-document")
    folder = project.root / "data" / "synth"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    lineage = {"from": {"source": source.name, "sha256": content_hash(source.path),
                        "tier": source.tier},
               "generator": {"model": model, "engine": getattr(engine, "kind", ""),
                             "params": {"max_tokens": params.max_tokens,
                                        "temperature": params.temperature, "seed": params.seed}},
               "documents": documents, "kept": len(kept), "dropped": dropped}
    _write_atomic(path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in kept))
    _write_atomic(path.with_suffix(".lineage.json"), json.dumps(lineage, indent=2) + "\n")
    add_source(project, actor, path, name, source.tier, kind="records", fmt="jsonl",
               description=f"synthetic Q/A from {source.name} by {model}")
    return SynthReport(name, path, documents, len(kept), dropped)


def _clean(text: str) -> str:
    text = text.strip().strip('"').strip()
    return re.sub(r"^(question|answer)\s*:\s*", "", text, flags=re.I).strip()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
