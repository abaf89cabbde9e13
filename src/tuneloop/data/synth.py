"""Grounded synthetic question/answer records from knowledge-base documents.

The documents are cut into the same passages the retrieval index holds (the knowledge base's
chunking settings, so `metadata.chunk_id` names the index chunk). For each passage with a fact
worth asking about (a number, a version, a menu path, a code, a setting; see `data.facts`), a
*teacher* model (the bundled model by default, or any registered model or OpenAI-compatible
endpoint) writes a question that the fact answers, then answers it from the passage alone. Both
steps go through the engine's batch path.

A small teacher often writes a question about something else (it repeats its few-shot examples,
or asks about the product in general). With `questions="auto"` such a question is replaced by a
*cloze* question made from the sentence itself, its fact replaced by "what" ("json.dumps: if
skipkeys is true, keys that are not basic types are skipped instead of raising what?"): stilted,
but about the passage by construction, and it teaches what retrieval-aware training needs, to
find the sentence of the sources that answers and repeat its fact (cloze translation, Lewis et
al., 2019). `questions="teacher"` keeps only the teacher's questions; `"cloze"` asks no teacher.

A pair is kept only when it is grounded: the answer states at least one key fact of the passage
and most of its words come from the passage; the question does not give the answer away; it is
no duplicate of another question; and it is no near duplicate of any dataset's test record (see
`data.contamination`). Every drop is counted by its reason. Each kept record carries
`metadata.key_facts` (what the `key_facts` metric checks), `metadata.kb_refs` (the document id,
what `retrieval_recall` checks) and `metadata.passage` (the gold passage, for retrieval-aware
training). The records become a new records source with a lineage file naming the teacher.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.data.chunking import chunk_blocks
from tuneloop.data.contamination import contaminated, load_test_texts
from tuneloop.data.dedup import NearDuplicates
from tuneloop.data.facts import about, candidate_facts, copies, stated, support
from tuneloop.data.readers import iter_documents
from tuneloop.data.sources import SourceInfo, add_source, content_hash, get_source
from tuneloop.data.structure import blocks_of
from tuneloop.errors import DataError
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project

# Few-shot turns: a 135M model follows examples in the conversation far better than rules.
QUESTION_TURNS = (
    {"role": "system", "content": "You turn a sentence from product documentation into the "
                                  "question a customer would ask. The question must not contain "
                                  "the answer."},
    {"role": "user", "content": "The link in the e-mail is valid for 30 minutes."},
    {"role": "assistant", "content": "How long is the password reset link valid?"},
    {"role": "user", "content": "Go to Settings > Sync > Choose folders to pick the folders to "
                                "sync."},
    {"role": "assistant", "content": "Where do I choose which folders are synced?"},
    {"role": "user", "content": "Error E-2001 means the storage quota is exceeded: free up "
                                "space."},
    {"role": "assistant", "content": "What does error E-2001 mean?"},
)
ANSWER_SYSTEM = ("Answer the customer's question in one or two sentences using only the "
                 "documentation. Repeat its exact numbers, names and menu paths.")
ANSWER_MODES = ("extract", "teacher")
QUESTION_MODES = ("auto", "teacher", "cloze")
REASONS = ("malformed question", "question not about the passage", "empty answer",
           "question copies the answer",
           "answer states no fact of the passage", "answer not supported by the passage",
           "duplicate question", "near duplicate of a test record")
BATCH = 8
CLOZE_MIN_WORDS = 6  # words a cloze question keeps besides the fact ("what" included)
_DEFINITION = re.compile(r"\s*(?:--|—|–|:|-)\s+(.+)")
#: progress(stage, done, total): stages "questions" and "answers"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Passage:
    """One retrieval-sized passage of a document, with the facts a question could target."""

    doc_id: str
    chunk_id: str
    title: str
    text: str
    facts: tuple[str, ...]


@dataclass
class SynthReport:
    """What a synthesis run produced and dropped, by reason."""

    source: str
    path: Path
    teacher: str
    answers: str
    documents: int
    passages: int
    passages_without_facts: int
    generated: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    test_records: int = 0
    test_versions: list[str] = field(default_factory=list)
    questions: str = "auto"
    cloze: int = 0  # kept records whose question is a cloze of their sentence


@dataclass
class _Pair:
    passage: Passage
    target: str
    sentence: str = ""
    question: str = ""
    answer: str = ""
    facts: list[str] = field(default_factory=list)
    coverage: float = 0.0
    reason: str | None = None
    cloze: bool = False
    # What the checks measured of a question, so the teacher's question judged in `_usable` is
    # not measured again in `_check` (keyed by the question: a cloze may take its place).
    _about: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _copies: dict[tuple[str, str], bool] = field(default_factory=dict, init=False, repr=False)

    def about(self) -> float:
        """How much the question is about the passage (`facts.about`), measured once."""
        if self.question not in self._about:
            self._about[self.question] = about(self.question, self.passage.text)
        return self._about[self.question]

    def copies(self, text: str) -> bool:
        """Whether the question gives `text` away (`facts.copies`), measured once."""
        key = (self.question, text)
        if key not in self._copies:
            self._copies[key] = copies(self.question, text)
        return self._copies[key]


def synthesise(project: Project, actor: Actor, source_name: str, *, name: str = "synth",
               teacher: str = "base", teacher_options: dict[str, Any] | None = None,
               answers: str = "extract", questions: str = "auto", per_passage: int = 1,
               limit: int | None = None, min_support: float = 0.6,
               near_dup_threshold: float = 0.8,
               progress: Progress | None = None) -> SynthReport:
    """Generate grounded question/answer records from the documents of `source_name`.

    `teacher` is any name `engines.load_engine` resolves ("base", "bundled:smollm2-135m", a
    registered model, a path, an http(s) URL with `teacher_options={"model": ...}`).
    `answers`: "extract" (the answer is the passage's sentence that holds the fact: grounded by
    construction, right for a small teacher) or "teacher" (the teacher answers from the
    passage; for a strong teacher). `questions`: "auto" (the teacher's question, or a cloze of
    the sentence when the teacher's is not about the passage), "teacher" or "cloze".
    `min_support` is the share of an answer's content words that must occur in its passage.
    """
    if answers not in ANSWER_MODES:
        raise DataError(f"answers must be one of {', '.join(ANSWER_MODES)}, found {answers!r}")
    if questions not in QUESTION_MODES:
        raise DataError(f"questions must be one of {', '.join(QUESTION_MODES)}, "
                        f"found {questions!r}")
    source = _documents_source(project, source_name)
    require(project.store, actor, "train", [source.resource],
            purpose=f"synthesise training records {name!r} from {source_name}")
    tests = load_test_texts(project, actor, purpose=f"keep test records out of synthetic "
                                                    f"records {name!r}")
    documents, passages = _passages(project, source, limit)
    with_facts = [p for p in passages if p.facts]
    pairs = [_Pair(p, fact, _sentence(p.text, fact)) for p in with_facts
             for fact in _targets(p.facts, per_passage)]
    from tuneloop.engines import load_engine  # type: ignore[attr-defined]

    engine = load_engine(project, teacher, **(teacher_options or {}))
    _ask(engine, pairs, answers, questions, min_support, progress)
    _check(pairs, min_support, near_dup_threshold)
    flags = contaminated([p.question for p in pairs if p.reason is None], tests)
    for pair, flag in zip([p for p in pairs if p.reason is None], flags, strict=True):
        if flag is not None:
            pair.reason = "near duplicate of a test record"
    kept = [p for p in pairs if p.reason is None]
    dropped = Counter(p.reason for p in pairs if p.reason is not None)
    report = SynthReport(name, project.root / "data" / "synth" / f"{name}.jsonl",
                         teacher=_teacher_name(engine, teacher), answers=answers,
                         documents=documents,
                         passages=len(passages),
                         passages_without_facts=len(passages) - len(with_facts),
                         generated=len(pairs), kept=len(kept),
                         dropped={r: dropped.get(r, 0) for r in REASONS},
                         test_records=len(tests.texts), test_versions=tests.versions,
                         questions=questions, cloze=sum(p.cloze for p in kept))
    if not kept:
        raise DataError(f"the teacher produced no grounded question/answer pair from "
                        f"{len(pairs)} attempts on {documents} documents ("
                        + ", ".join(f"{n} {r}" for r, n in dropped.items()) + ")",
                        path=str(source.path),
                        hint="try a stronger model with --teacher, or --per-passage 2")
    _write(project, actor, source, report, kept)
    return report


def passages(text: str, size: int = 1200) -> list[str]:
    """Paragraph-aligned pieces of about `size` characters (for text outside a source)."""
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


def _documents_source(project: Project, source_name: str) -> SourceInfo:
    source = get_source(project, source_name)
    if source.kind != "documents":
        raise DataError(f"source {source_name!r} holds records, not documents",
                        path=str(source.path), hint="synthesise from a knowledge-base folder")
    return source


def _passages(project: Project, source: SourceInfo,
              limit: int | None) -> tuple[int, list[Passage]]:
    """The documents' passages, chunked exactly as `tuneloop rag index` chunks them."""
    kb = project.config.knowledge_base
    count = _token_counter(kb.embedding_model)
    out: list[Passage] = []
    documents = 0
    for doc in _first(iter_documents(source.path), limit):
        documents += 1
        doc_id = f"{source.name}:{doc.relpath}"
        chunks = chunk_blocks(blocks_of(doc.text, doc.format, doc.path), count,
                              chunk_tokens=kb.chunk_tokens, overlap_tokens=kb.overlap_tokens,
                              title=doc.title)
        for ordinal, chunk in enumerate(chunks):
            # The heading path opens every chunk; it names the section, it states no fact.
            body = chunk.text[len(chunk.heading):] if chunk.heading else chunk.text
            out.append(Passage(doc_id, f"{doc_id}#{ordinal}", doc.title, chunk.text,
                               tuple(candidate_facts(body))))
    return documents, out


def _token_counter(model: str) -> Callable[[str], int]:
    # The embedding model's tokenizer is what the index measures chunks in; its weights are not
    # needed to count.
    from transformers import AutoTokenizer

    from tuneloop.engines.bundled import embedding_model_dir

    tokenizer = AutoTokenizer.from_pretrained(embedding_model_dir(model))
    return lambda text: len(tokenizer(text, add_special_tokens=False,
                                      truncation=False)["input_ids"])


def _first(items: Iterator[Any], limit: int | None) -> Iterator[Any]:
    for n, item in enumerate(items):
        if limit is not None and n >= limit:
            return
        yield item


def _targets(facts: Sequence[str], n: int) -> list[str]:
    """Up to `n` facts to ask about: specific ones (digits, paths, codes) first, no overlaps."""
    ranked = sorted(facts, key=lambda f: (not re.search(r"[\d>/=@-]", f), -len(f)))
    chosen: list[str] = []
    for fact in ranked:
        low = fact.lower()
        if any(low in c.lower() or c.lower() in low for c in chosen):
            continue
        chosen.append(fact)
        if len(chosen) == n:
            break
    return chosen


def _sentence(passage: str, fact: str) -> str:
    """The sentence (or table row, or list item) of the passage that holds `fact`, without
    Markdown emphasis and with wrapped lines joined."""
    plain = re.sub(r"[*`]", "", passage)
    for block in re.split(r"\n\s*\n", plain):
        lines = block.splitlines()
        if not any(re.match(r"\s*(\||[-+*] |\d+[.)] )", line) for line in lines):
            lines = [" ".join(line.strip() for line in lines)]
        for line in lines:
            if line.lstrip().startswith("|"):
                # A table row reads as "first cell: the other cells".
                cells = [c.strip() for c in line.strip().strip("|").split("|") if c.strip()]
                line = f"{cells[0]}: {' — '.join(cells[1:])}." if len(cells) > 1 else line
            for piece in re.split(r"(?<=[.!?;])\s+", line):
                if fact.lower() in piece.lower():
                    piece = piece.strip(" |-")
                    return piece[:-1] + "." if piece.endswith((";", ":", ",")) else piece
    return fact


def _ask(engine: Any, pairs: list[_Pair], answers: str, questions: str, min_support: float,
         progress: Progress | None) -> None:
    """Questions (and, with `answers="teacher"`, answers) through the engine's batch path."""
    from tuneloop.engines import GenerationParams  # type: ignore[attr-defined]

    params = GenerationParams(max_tokens=48, temperature=0.0, seed=0)
    asked = [] if questions == "cloze" else pairs
    prompts = [[*QUESTION_TURNS, {"role": "user", "content": p.sentence}] for p in asked]
    for pair, text in zip(asked, _batched(engine, prompts, params, "questions", progress),
                          strict=True):
        pair.question = _first_question(text)
    for pair in pairs:
        if questions != "teacher" and not _usable(pair, min_support):
            pair.question, pair.cloze = cloze(pair.sentence, pair.target, pair.passage.title), True
        if not pair.question:
            pair.reason = "malformed question"
    asking = [p for p in pairs if p.reason is None]
    if answers == "extract":
        for pair in asking:
            pair.answer = pair.sentence
        return
    prompts = [[{"role": "system", "content": ANSWER_SYSTEM},
                {"role": "user", "content": f"Documentation:\n{p.passage.text}\n\n"
                                            f"Question: {p.question}"}] for p in asking]
    answer_params = GenerationParams(max_tokens=96, temperature=0.0, seed=0)
    for pair, text in zip(asking, _batched(engine, prompts, answer_params, "answers", progress),
                          strict=True):
        pair.answer = _clean(text)


def _usable(pair: _Pair, min_support: float) -> bool:
    """Whether the teacher's question asks about this passage without stating the answer."""
    return bool(pair.question) and pair.about() >= min_support \
        and not pair.copies(pair.sentence) and not stated(pair.target, pair.question)


def cloze(sentence: str, fact: str, title: str = "") -> str:
    """`sentence` as a question about `fact`: the fact replaced by "what", behind the title.
    "" when the sentence does not hold the fact, or when too little of it is left to say what
    is asked (a fragment, or a fact followed only by a few words)."""
    at = sentence.lower().find(fact.lower())
    if at < 0:
        return ""
    rest = sentence[at + len(fact):]
    if at == 0 and (defined := _DEFINITION.match(rest)):  # "name -- what it does"
        text = f'what is described as "{defined.group(1).strip().rstrip(" .;:")}"'
    else:
        text = f"{sentence[:at]}what{rest}".strip().rstrip(" .;:!?")
    if len(re.findall(r"[A-Za-z]{2,}", text)) < CLOZE_MIN_WORDS or not re.search(r"[a-z]", text):
        return ""
    text = text[0].upper() + text[1:] if text.startswith("what") else text
    return f"{title}: {text}?" if title and title.lower() not in text.lower() else f"{text}?"


def _first_question(text: str) -> str:
    """The first line of a reply that reads as a question of at least three words, or ""."""
    for line in text.splitlines():
        line = _clean(line)
        if "?" in line:
            question = line[: line.index("?") + 1].strip()
            return question if len(question.split()) >= 3 else ""
    return ""


def _batched(engine: Any, prompts: list[list[dict[str, str]]], params: Any, stage: str,
             progress: Progress | None) -> list[str]:
    out: list[str] = []
    for start in range(0, len(prompts), BATCH):
        out.extend(c.text for c in engine.batch(prompts[start:start + BATCH], params))
        if progress:
            progress(stage, len(out), len(prompts))
    if progress and not prompts:
        progress(stage, 0, 0)
    return out


def _check(pairs: list[_Pair], min_support: float, near_dup_threshold: float) -> None:
    """Set `reason` on every pair that is not grounded, gives its answer away or repeats."""
    seen: set[str] = set()
    near = NearDuplicates(near_dup_threshold, shingle_size=2)
    indexed: list[_Pair] = []
    for pair in pairs:
        if pair.reason is not None:
            continue
        if pair.about() < min_support:
            pair.reason = "question not about the passage"
            continue
        if len(pair.answer.split()) < 2:
            pair.reason = "empty answer"
            continue
        found = support(pair.answer, pair.passage.text, list(pair.passage.facts))
        # A fact the question already states is what is asked about, not what is answered.
        pair.facts = [f for f in found.facts if not stated(f, pair.question)]
        pair.coverage = found.coverage
        if pair.copies(pair.answer) or (found.facts and not pair.facts):
            pair.reason = "question copies the answer"
        elif not found.facts:
            pair.reason = "answer states no fact of the passage"
        elif found.coverage < min_support:
            pair.reason = "answer not supported by the passage"
        else:
            key = " ".join(pair.question.lower().split())
            if key in seen:
                pair.reason = "duplicate question"
                continue
            seen.add(key)
            near.add(pair.question)
            indexed.append(pair)
    duplicate_of = near.resolve().duplicate_of
    for pair, dup in zip(indexed, duplicate_of.tolist(), strict=True):
        if dup >= 0:
            pair.reason = "duplicate question"


def _record(pair: _Pair, report: SynthReport) -> dict[str, Any]:
    passage = pair.passage
    return {"messages": [{"role": "user", "content": pair.question},
                         {"role": "assistant", "content": pair.answer}],
            "metadata": {"key_facts": pair.facts, "kb_refs": [passage.doc_id],
                         "chunk_id": passage.chunk_id, "passage": passage.text,
                         "title": passage.title, "support": round(pair.coverage, 3),
                         "question": "cloze" if pair.cloze else "teacher",
                         "generator": {"teacher": report.teacher, "answers": report.answers}}}


def _write(project: Project, actor: Actor, source: SourceInfo, report: SynthReport,
           kept: list[_Pair]) -> None:
    report.path.parent.mkdir(parents=True, exist_ok=True)
    lineage = {"from": {"source": source.name, "sha256": content_hash(source.path),
                        "tier": source.tier},
               "teacher": report.teacher, "answers": report.answers,
               "questions": report.questions, "cloze": report.cloze,
               "documents": report.documents,
               "passages": report.passages, "generated": report.generated,
               "kept": report.kept, "dropped": report.dropped,
               "contamination": {"test_versions": report.test_versions,
                                 "test_texts": report.test_records}}
    _write_atomic(report.path, "".join(json.dumps(_record(p, report),
                                                  ensure_ascii=False) + "\n" for p in kept))
    _write_atomic(report.path.with_suffix(".lineage.json"), json.dumps(lineage, indent=2) + "\n")
    add_source(project, actor, report.path, report.source, source.tier, kind="records",
               fmt="jsonl", description=f"grounded synthetic Q/A from {source.name} by "
                                        f"{report.teacher}")


def _teacher_name(engine: Any, spec: str) -> str:
    kind = getattr(engine, "kind", "")
    model = getattr(engine, "model_name", "") or spec
    return f"{model} ({kind})" if kind else model


def _clean(text: str) -> str:
    text = text.strip().strip('"').strip()
    text = re.sub(r"^(question|answer|q|a)\s*:\s*", "", text, flags=re.I).strip()
    return text.strip('"').strip()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
