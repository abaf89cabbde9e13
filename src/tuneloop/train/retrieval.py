"""Retrieval-aware training data: each training question in the prompt its RAG variant serves.

A small model given sources at serving time copies facts from them only if it was trained to.
So with `training.retrieval`, every training (and validation) record is rewritten into exactly
what the variant would send for its question: the variant's system prompt, the chunks its own
retriever returns (under the training actor's rights), laid out by the variant's own prompt
assembly, then the question and the reference answer. Serving calls the same
`Variant.assemble`, so train and serve prompts match token for token.

Where a record names its gold documents (`metadata.kb_refs`) and retrieval missed them, the gold
chunk that best supports the answer takes the place of the weakest hit, so the model learns to
find the fact among distractors. A share of records (`retrieval_unanswerable`) instead has every
gold chunk taken out and its answer replaced by `retrieval_abstain`: the model learns to say the
sources do not cover a question rather than invent an answer.

The rewritten splits are written to the run's folder (`retrieval/train.jsonl`, ...) before
training starts: the exact prompts are inspectable, and a resumed run reuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.errors import ConfigError
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.rag.metrics import is_gold
from tuneloop.rag.prompt import content_words

if TYPE_CHECKING:
    from tuneloop.project import Project
    from tuneloop.rag.retrieve import Hit
    from tuneloop.variants import Variant

SPLITS = ("train", "validation")
# how a record's sources were chosen (`metadata.retrieval` of each rewritten record)
RETRIEVED = "retrieved, holds the answer"
PUT_IN = "gold passage put in"
ABSTAIN = "gold taken out, answer abstains"
NO_GOLD = "no gold document named"
NOT_INDEXED = "gold document not in the index"


@dataclass
class RetrievalReport:
    """How the training prompts were made: from which variant and index, and what each record
    got. Recorded in the run's parameters, so the lineage says how the model was trained."""

    variant: str
    index: str
    settings: dict[str, Any]
    unanswerable_share: float
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1


def retrieval_variant(project: Project, params: dict[str, Any]) -> Variant:
    """The RAG variant whose prompts training reproduces: `retrieval_variant` if set, else the
    first retrieval variant serving the model being trained, else the first retrieval variant."""
    from tuneloop.variants import all_variants, get_variant

    if params.get("retrieval_variant"):
        variant = get_variant(project, params["retrieval_variant"])
        if not variant.uses_retrieval:
            raise ConfigError(f"training.retrieval_variant: variant {variant.name!r} does not "
                              "use retrieval", hint="name a variant with retrieval: {enabled: "
                                                    "true}")
        return variant
    rag = [v for v in all_variants(project) if v.uses_retrieval]
    if not rag:
        raise ConfigError("training.retrieval needs a variant with retrieval enabled, and "
                          f"{project.config_path} has none",
                          hint="add one (retrieval: {enabled: true}) or turn training.retrieval "
                               "off")
    served = [v for v in rag if v.model_name == params.get("model_name")]
    return (served or rag)[0]


def index_resources(variant: Variant) -> list[Resource]:
    """The knowledge-base sources the variant retrieves from, as governed resources: training
    on their text needs `train` on each (checked with the dataset, through the one gate)."""
    from tuneloop.governance.visibility import source_resource

    project = variant.project
    out = []
    for name in project.config.knowledge_base.sources:
        source = project.config.source(name)
        if source is not None:
            out.append(source_resource(name, source.tier))
    return out


def build_split(variant: Variant, actor: Actor, records: Sequence[dict[str, Any]],
                count_text: Callable[[str], int], params: dict[str, Any],
                report: RetrievalReport,
                progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """The records rewritten into the variant's RAG prompt (see the module docstring)."""
    out = []
    for done, record in enumerate(records, start=1):
        out.append(_rewrite(variant, actor, record, count_text, params, report))
        if progress:
            progress(done, len(records))
    return out


def prepare_splits(project: Project, actor: Actor, version: Any, tokenizer: Any,
                   params: dict[str, Any], folder: Path,
                   progress: Callable[[int, int], None] | None = None) -> RetrievalReport:
    """Write the retrieval-aware train and validation splits of `version` into `folder`.

    Returns what was done; the caller has passed `require(..., "train", ...)` for the dataset
    and `index_resources(variant)`.
    """
    from tuneloop.rag import snapshot
    from tuneloop.train.examples import read_records
    from tuneloop.variants import text_counter

    variant = retrieval_variant(project, params)
    settings = variant.config.retrieval
    report = RetrievalReport(variant.name, snapshot.fingerprint(project.store),
                             settings.model_dump(),
                             float(params.get("retrieval_unanswerable") or 0.0))
    count_text = text_counter(lambda messages: count_prompt_tokens(tokenizer, messages))
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        path = version.split_path(split)
        records = list(read_records(path)) if path.is_file() else []
        if split == "validation" and params.get("max_eval_examples"):
            records = records[: int(params["max_eval_examples"])]
        # the report counts the training split's records; validation is made the same way
        counted = report if split == "train" else replace(report, counts={})
        rows = build_split(variant, actor, records, count_text, params, counted,
                           progress if split == "train" else None)
        tmp = folder / f".{split}.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                       encoding="utf-8")
        tmp.replace(folder / f"{split}.jsonl")
    (folder / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n",
                                        encoding="utf-8")
    return report


def count_prompt_tokens(tokenizer: Any, messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of `messages` under the tokenizer's chat template, the way the llama.cpp
    engine counts them (template rendered, then tokenized with its special tokens)."""
    from tuneloop.train.examples import escape_contents

    text = tokenizer.apply_chat_template(escape_contents(tokenizer, messages), tokenize=False,
                                         add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _rewrite(variant: Variant, actor: Actor, record: dict[str, Any],
             count_text: Callable[[str], int], params: dict[str, Any],
             report: RetrievalReport) -> dict[str, Any]:
    from tuneloop.variants import last_user_text

    messages = record["messages"]
    if messages[-1]["role"] != "assistant":
        report.count("no reference answer")
        return record
    system, conversation = variant.split_messages(messages[:-1])
    answer = dict(messages[-1])
    question = last_user_text(conversation)
    top_k = variant.config.retrieval.top_k
    found = variant.retrieve(question, actor, top_k=top_k * 2)  # spares for dropped gold
    gold = [str(r) for r in (record.get("metadata") or {}).get("kb_refs") or []]
    if not gold:
        hits, case = found[:top_k], NO_GOLD
    elif _chance(record, params) < report.unanswerable_share:
        hits = [h for h in found if not is_gold(h.doc_id, gold)][:top_k]
        answer["content"] = str(params.get("retrieval_abstain") or "")
        case = ABSTAIN
    else:
        hits, case = _with_gold(variant, found[:top_k], gold, record)
    report.count(case)
    prepared = variant.assemble(system, conversation, hits, count_text)
    metadata = {**(record.get("metadata") or {}), "retrieval": case,
                "retrieved": [c["chunk_id"] for c in prepared.citations]}
    return {**record, "messages": [*prepared.messages, answer], "metadata": metadata}


def _with_gold(variant: Variant, hits: list[Hit], gold: list[str], record: dict[str, Any]
               ) -> tuple[list[Hit], str]:
    """`hits` with the best gold chunk in place of the weakest hit, unless they already hold
    the answer; and which of the cases it was."""
    from tuneloop.rag.documents import document_chunks

    facts = [str(f) for f in (record.get("metadata") or {}).get("key_facts") or []]
    if _holds_answer(hits, gold, facts):
        return hits, RETRIEVED
    sources = variant.project.config.knowledge_base.sources
    candidates = document_chunks(variant.project, gold, sources)
    if not candidates:
        return hits, NOT_INDEXED
    best = max(candidates, key=lambda c: _support(c.text, record))
    # the gold chunk ranks with the best hit, so no score cut-off drops it
    best = replace(best, score=max((h.score for h in hits), default=1.0))
    kept = hits[: max(0, len(hits) - 1)]
    at = int(_chance(record, {"seed": "position"}) * (len(kept) + 1))
    return [*kept[:at], best, *kept[at:]], PUT_IN


def _holds_answer(hits: Sequence[Hit], gold: list[str], facts: list[str]) -> bool:
    """Whether the hits already hold the answer: a chunk with every key fact when the record
    lists key facts (the right document is not enough: its other chunks may lack the fact),
    else a chunk of a gold document."""
    if facts:
        return any(all(f.lower() in h.text.lower() for f in facts) for h in hits)
    return any(is_gold(h.doc_id, gold) for h in hits)


def _support(text: str, record: dict[str, Any]) -> tuple[int, int]:
    """How well a chunk supports a record's answer: key facts it contains, then shared words."""
    lowered = text.lower()
    facts = (record.get("metadata") or {}).get("key_facts") or []
    held = sum(1 for f in facts if str(f).lower() in lowered)
    answer = str(record["messages"][-1].get("content") or "")
    return held, len(content_words(answer) & content_words(text))


def _chance(record: dict[str, Any], params: dict[str, Any]) -> float:
    """A number in [0, 1) fixed by the record's id and the seed: the same split every run."""
    key = f"{params.get('seed', 0)}:{record.get('id', '')}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
