"""Exporting a dataset version: OpenAI chat JSONL, Parquet, or a Hugging Face `datasets` folder.

Exporting takes data out of tuneloop's control, so it goes through the gate with the `export` use:
a Tier 2 version needs an approval that allows export. The output folder is written beside its
final place and renamed, so a failed export leaves nothing behind. Every export is recorded
(`dataset_exports`: version, path, format, actor, time): erasure lists the exports of a version
that held the subject as copies that left the project.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tuneloop.data.versions import SPLITS, DatasetVersion, get_version
from tuneloop.errors import TuneloopError
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.store.datasets import DatasetExport

FORMATS = ("jsonl", "parquet", "hf")
BATCH_ROWS = 4096


def export_version(project: Project, actor: Actor, ref: str, out: str | Path,
                   fmt: str = "jsonl") -> Path:
    """Write version `ref` (`name` or `name@id`) to the folder `out`; returns the folder."""
    if fmt not in FORMATS:
        raise TuneloopError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    version = get_version(project, ref)
    target = project.path(out).resolve()
    if target.exists():
        raise TuneloopError(f"{target} exists already; choose a new folder",
                            hint="exports never overwrite")
    require(project.store, actor, "export", [version.resource],
            purpose=f"export {version.ref} as {fmt} to {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        {"jsonl": _jsonl, "parquet": _parquet, "hf": _hf}[fmt](version, staging)
        (staging / "lineage.json").write_text(json.dumps(
            {"dataset": version.ref, "tier": version.tier, "roots": sorted(version.roots),
             "approvals": list(version.approvals), "format": fmt}, indent=2) + "\n")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with project.store.session() as session:
        session.add(DatasetExport(dataset_version=version.ref, path=str(target), format=fmt,
                                  tier=version.tier, actor=actor.name))
    return target


def list_exports(project: Project, refs: list[str] | None = None) -> list[DatasetExport]:
    """Recorded exports, newest first; only those of the versions `refs` when given."""
    query = select(DatasetExport).order_by(DatasetExport.id.desc())
    if refs is not None:
        query = query.where(DatasetExport.dataset_version.in_(sorted(set(refs))))
    with project.store.session(write=False) as session:
        rows = list(session.execute(query).scalars())
        session.expunge_all()
    return rows


def _chat_rows(version: DatasetVersion, split: str) -> Iterator[dict[str, Any]]:
    for record in version.iter_split(split):
        yield {"messages": record["messages"]}


def _jsonl(version: DatasetVersion, folder: Path) -> None:
    # The OpenAI fine-tuning format: one {"messages": [...]} object per line.
    for split in SPLITS:
        with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in _chat_rows(version, split):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _arrow_schema() -> Any:
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema([("id", pa.string()), ("messages", pa.list_(message)),
                      ("metadata", pa.string()), ("subject", pa.string())])


def _arrow_batches(version: DatasetVersion, split: str) -> Iterator[Any]:
    import pyarrow as pa

    schema = _arrow_schema()
    rows: list[dict[str, Any]] = []
    for record in version.iter_split(split):
        # Metadata differs from record to record; JSON text keeps one schema for all.
        rows.append({"id": record["id"], "messages": record["messages"],
                     "metadata": json.dumps(record["metadata"], ensure_ascii=False),
                     "subject": record.get("subject")})
        if len(rows) >= BATCH_ROWS:
            yield pa.RecordBatch.from_pylist(rows, schema=schema)
            rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=schema)


def _parquet(version: DatasetVersion, folder: Path) -> None:
    import pyarrow.parquet as pq

    for split in SPLITS:
        with pq.ParquetWriter(folder / f"{split}.parquet", _arrow_schema()) as writer:
            for batch in _arrow_batches(version, split):
                writer.write_batch(batch)


def _hf(version: DatasetVersion, folder: Path) -> None:
    import datasets

    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        work = Path(tmp)
        _parquet(version, work)
        parts = {split: datasets.Dataset.from_parquet(str(work / f"{split}.parquet"),
                                                      cache_dir=str(work / "cache"))
                 for split in SPLITS}
        # `datasets.load_from_disk(folder)` reads it back.
        datasets.DatasetDict(parts).save_to_disk(str(folder))
