"""Train a query-type router from a dataset version's slice field (e.g. a ticket's category).

Training reads the version's records, so it is a use of their data: Tier 2 records need a `train`
approval through `governance.require`, and the router inherits the version's tier and roots.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneloop.data.versions import DatasetVersion, get_version
from tuneloop.errors import DataError
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.router.features import DEFAULT, build_features
from tuneloop.router.model import QueryRouter, message_text
from tuneloop.router.registry import RouterRecord, next_version, register

Progress = Callable[[str, int, int], Any]
MIN_PER_SLICE = 2


@dataclass(frozen=True)
class TrainedRouter:
    """A router just trained: its record, its accuracy on the validation split, slice counts."""

    record: RouterRecord
    validation_accuracy: float | None
    counts: dict[str, int]


def slice_field_of(project: Project, version: DatasetVersion, wanted: str | None = None) -> str:
    """The field that names a record's slice: asked for, the dataset's recipe, or `category`."""
    if wanted:
        return wanted
    config = project.config.dataset(version.name)
    recipe = (config.slice_field if config else None) or version.manifest.get(
        "recipe", {}).get("slice_field")
    return str(recipe or "category")


def labelled(version: DatasetVersion, split: str, field: str) -> tuple[list[str], list[str]]:
    """Messages and slice labels of one split (records without the field are skipped)."""
    from tuneloop.evaluate.metrics import record_field

    texts, labels = [], []
    for record in version.iter_split(split):
        value = record_field(record, field)
        text = message_text(record.get("messages") or [])
        if value is not None and text:
            texts.append(text)
            labels.append(str(value))
    return texts, labels


def train_router(project: Project, actor: Actor, dataset: str, *, name: str | None = None,
                 slice_field: str | None = None, features: str | None = None,
                 progress: Progress | None = None) -> TrainedRouter:
    """Train, save and register a new version of a router on `dataset`'s train split.

    `features` names what the router reads (`router.features`, default `DEFAULT`); the
    classifier is chosen on the train split and checked on the validation split only.
    """
    from tuneloop.rag.embed import BUNDLED

    version = get_version(project, dataset)
    field = slice_field_of(project, version, slice_field)
    approvals = require(project.store, actor, "train", [version.resource],
                        purpose=f"train a query router on {version.ref} ({field})")
    texts, labels = labelled(version, "train", field)
    counts = dict(sorted(Counter(labels).items()))
    if len(counts) < 2 or min(counts.values()) < MIN_PER_SLICE:
        raise DataError(f"{version.ref}: the train split needs at least {MIN_PER_SLICE} records "
                        f"in each of two or more `{field}` values, found {counts or 'none'}",
                        hint="pass --slice-field with the field that names each record's kind")
    val_texts, val_labels = labelled(version, "validation", field)
    featuriser = build_features(features or DEFAULT,
                                project.config.knowledge_base.embedding_model or BUNDLED)
    step = _progress(progress, len(texts) + len(val_texts))
    featuriser.fit(texts)
    router = QueryRouter.fit(featuriser.transform(texts, step), labels, featuriser)
    accuracy = None
    if val_texts:
        predicted = [p.slice for p in router.predict_rows(featuriser.transform(val_texts, step))]
        accuracy = float(np.mean([p == t for p, t in zip(predicted, val_labels, strict=True)]))
    return TrainedRouter(_save(project, actor, name or f"{version.name}-router", router, version,
                               field, approvals, counts, accuracy), accuracy, counts)


def _progress(progress: Progress | None, total: int) -> Callable[[int], None]:
    """A `progress(n)` that reports texts featurised so far out of `total`."""
    seen = [0]

    def report(n: int) -> None:
        seen[0] += n
        if progress is not None:
            progress("featurising messages", min(seen[0], total), total)
    return report


def _save(project: Project, actor: Actor, name: str, router: QueryRouter,
          version: DatasetVersion, field: str, approvals: list[int], counts: dict[str, int],
          accuracy: float | None) -> RouterRecord:
    number = next_version(project, name)
    folder = project.artifacts_dir / "routers" / name / f"v{number}"
    lineage = {"dataset_version": version.ref, "split": "train", "approvals": sorted(approvals),
               "embedding_model": router.embedding_model, "features": router.features.name,
               "classifier": "sklearn LogisticRegression (multinomial)", "counts": counts,
               "validation_accuracy": accuracy}
    router.save(folder, {"name": name, "version": number, "slice_field": field, **lineage})
    return register(project, actor, name=name, version=number, path=folder,
                    dataset_version=version.ref, slice_field=field, labels=router.labels,
                    tier=version.tier, roots=version.roots, lineage=lineage)
