"""Retrieval metrics against gold document ids: recall@k and mean reciprocal rank.

Plain functions over one query, so the evaluation stage can wrap them as metric plug-ins and
average them over a dataset. `hits` may be `Hit`s or document ids, best first; a document that
appears in several chunks counts once, at its best rank.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any


def ref_keys(value: str) -> set[str]:
    """Ways a document may be named: as given, its path, file name and stem, lower case.

    Document ids look like `SOURCE:relative/path.md` (chunk ids add `#N`); gold references in
    a dataset (`metadata.kb_refs`) usually name the file or its stem.
    """
    value = str(value).strip().lower()
    if not value:
        return set()
    path = value.split("#", 1)[0].rsplit(":", 1)[-1]
    name = PurePosixPath(path).name
    return {value, value.split("#", 1)[0], path, name, PurePosixPath(name).stem}


def is_gold(doc_id: str, gold_refs: Iterable[str]) -> bool:
    """True when the document `doc_id` is one of the gold references (by any of its names)."""
    keys = ref_keys(doc_id)
    return any(ref_keys(str(ref)) & keys for ref in gold_refs)


def _doc_ids(hits: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for hit in hits:
        doc = hit if isinstance(hit, str) else hit.doc_id
        if doc not in out:
            out.append(doc)
    return out


def recall_at_k(hits: Sequence[Any], gold_doc_ids: Iterable[str], k: int) -> float:
    """The share of gold documents found among the first `k` hits (1.0 when there is no gold)."""
    gold = set(gold_doc_ids)
    if not gold:
        return 1.0
    top = set(_doc_ids(list(hits)[:k]))
    return len(gold & top) / len(gold)


def mrr(hits: Sequence[Any], gold_doc_ids: Iterable[str]) -> float:
    """1 / the rank of the first gold document among the hits' documents (0.0 if none)."""
    gold = set(gold_doc_ids)
    for rank, doc in enumerate(_doc_ids(hits), start=1):
        if doc in gold:
            return 1.0 / rank
    return 0.0
