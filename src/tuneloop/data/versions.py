"""Dataset versions: immutable folders `.tuneloop/datasets/NAME/ID/` indexed in the store.

A version folder holds `train.jsonl`, `validation.jsonl`, `test.jsonl` (one record per line:
`{"id", "messages", "metadata", "subject"}`), `rejects.jsonl` and `manifest.json` (recipe, sources
with content hashes, approvals, step counts, tier, roots). The id is a content hash, so building
the same recipe on the same inputs gives the same id. Folders are written to a temporary folder
and renamed into place: a reader never sees half a version.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tuneloop.errors import DataError, NotFound
from tuneloop.governance.tiers import Resource
from tuneloop.store.datasets import DatasetVersionRow

if TYPE_CHECKING:
    from tuneloop.project import Project

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"


def datasets_dir(project: Project) -> Path:
    """Where every dataset version of the project lives."""
    return project.state_dir / "datasets"


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset: where its splits are, its tier and its lineage."""

    name: str
    id: str
    tier: int
    roots: frozenset[str]
    approvals: tuple[int, ...]
    path: Path
    counts: dict[str, int] = field(default_factory=dict, compare=False)
    created_at: datetime | None = field(default=None, compare=False)

    @property
    def ref(self) -> str:
        """`name@id`: what lineage records and what `get_version` accepts."""
        return f"{self.name}@{self.id}"

    @property
    def resource(self) -> Resource:
        """This version as a governance resource, for `governance.require`."""
        return Resource("dataset", self.name, self.tier, self.roots)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The version's full lineage: recipe, sources, approvals, step counts, statistics."""
        return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))

    def split_path(self, split: str) -> Path:
        """The JSONL file of one split (`train`, `validation` or `test`)."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        return self.path / f"{split}.jsonl"

    @property
    def rejects_path(self) -> Path:
        """The records the build refused, each with its file, line and reason."""
        return self.path / REJECTS

    def iter_split(self, split: str) -> Iterator[dict[str, Any]]:
        """The records of one split, read one line at a time."""
        with self.split_path(split).open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def __len__(self) -> int:
        return sum(self.counts.get(s, 0) for s in SPLITS)


def _from_row(row: DatasetVersionRow) -> DatasetVersion:
    return DatasetVersion(name=row.name, id=row.version_id, tier=row.tier,
                          roots=frozenset(row.roots), approvals=tuple(row.approvals),
                          path=Path(row.path), counts=dict(row.counts),
                          created_at=row.created_at)


def get_version(project: Project, ref: str) -> DatasetVersion:
    """The version `name@id` (an id prefix is enough), or the newest version of `name`."""
    name, _, wanted = ref.partition("@")
    with project.store.session(write=False) as session:
        query = select(DatasetVersionRow).where(DatasetVersionRow.name == name)
        if wanted:
            query = query.where(DatasetVersionRow.version_id.startswith(wanted))
        rows = session.execute(
            query.order_by(DatasetVersionRow.created_at.desc(), DatasetVersionRow.id.desc())
        ).scalars().all()
    if wanted and len({r.version_id for r in rows}) > 1:
        raise NotFound(f"dataset version {ref!r} is ambiguous: {len(rows)} versions start with "
                       f"{wanted!r}", hint="give more characters of the id")
    if not rows:
        what = f"no version {wanted!r} of dataset {name!r}" if wanted else \
            f"dataset {name!r} has no version yet"
        raise NotFound(what, hint=f"build one with `tuneloop data build {name}`; "
                                  "`tuneloop data list` shows what exists")
    version = _from_row(rows[0])
    if not (version.path / MANIFEST).is_file():
        raise NotFound(f"dataset version {version.ref} is recorded but its folder {version.path} "
                       "is missing", hint=f"rebuild it with `tuneloop data build {name}`")
    return version


def list_versions(project: Project, name: str | None = None) -> list[DatasetVersion]:
    """Every recorded version (of one dataset if `name` is given), newest first."""
    with project.store.session(write=False) as session:
        query = select(DatasetVersionRow)
        if name:
            query = query.where(DatasetVersionRow.name == name)
        rows = session.execute(
            query.order_by(DatasetVersionRow.created_at.desc(), DatasetVersionRow.id.desc())
        ).scalars().all()
    return [_from_row(r) for r in rows]


def publish(project: Project, staging: Path, manifest: dict[str, Any], *,
            created_by: str) -> DatasetVersion:
    """Move a fully written staging folder into place as version `manifest["id"]` and index it.

    When that version exists already (same recipe, same inputs) the staging folder is discarded
    and the existing version is returned: versions are immutable.
    """
    name, version_id = manifest["name"], manifest["id"]
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True,
                                               ensure_ascii=False) + "\n", encoding="utf-8")
    final = datasets_dir(project) / name / version_id
    if final.exists():
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(final)
    with project.store.session() as session:
        row = session.execute(
            select(DatasetVersionRow).where(DatasetVersionRow.name == name,
                                            DatasetVersionRow.version_id == version_id)
        ).scalar_one_or_none()
        if row is None:
            row = DatasetVersionRow(name=name, version_id=version_id, tier=manifest["tier"],
                                    roots=sorted(manifest["roots"]),
                                    approvals=sorted(manifest["approvals"]), path=str(final),
                                    counts=manifest["counts"], created_by=created_by)
            session.add(row)
            session.flush()
        return _from_row(row)
