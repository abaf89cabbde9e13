"""Model exports: every model file `tuneloop models export` writes is recorded (`model_exports`:
source folder, file, format, quantization, actor, time) with what it was made from, so that an
erasure can list the exports made from the subject's data as copies that left the project.

What an export was made from is read from the registry when the export is made: the registered
models at the exported folder, inside it, or (for a training run's folder) beside it, the dataset
versions in their lineage and the training runs that produced them. Erasure matches an export by
those dataset versions, and by those models in case they were registered or marked later.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from tuneloop.engines.registry import list_models
from tuneloop.store.registry import ModelExport
from tuneloop.store.runs import Run

if TYPE_CHECKING:
    from tuneloop.project import Project


def record_export(project: Project, actor: str, source: str | Path, path: str | Path, *,
                  quantization: str, tier: int = 1, fmt: str = "gguf") -> ModelExport:
    """Record that the model folder `source` was exported to the file `path` by `actor`."""
    models, versions = made_from(project, source)
    row = ModelExport(source=str(Path(source).resolve()), path=str(Path(path).resolve()),
                      format=fmt, quantization=quantization, models=models,
                      dataset_versions=versions, tier=tier, actor=actor)
    with project.store.session() as session:
        session.add(row)
        session.flush()
        session.expunge(row)
    return row


def made_from(project: Project, source: str | Path) -> tuple[list[str], list[str]]:
    """The registered models a model folder belongs to, and the dataset versions they came from
    (their lineage and the training runs that output them)."""
    target = Path(source).resolve()
    artifacts = project.artifacts_dir.resolve()
    models: set[str] = set()
    versions: set[str] = set()
    for record in list_models(project)[1:]:
        if record.format == "openai" or not record.path:
            continue
        where = Path(record.path).resolve()
        home = where.parent if where.is_relative_to(artifacts) else where
        if target == where or target.is_relative_to(home) or where.is_relative_to(target):
            models.add(record.name)
            versions |= set((record.lineage or {}).get("dataset_versions", []))
    if models:
        with project.store.session(write=False) as session:
            versions |= {v for v in session.scalars(select(Run.dataset_version).where(
                Run.output_model.in_(sorted(models)))) if v}
    return sorted(models), sorted(versions)


def list_model_exports(project: Project, refs: list[str] | None = None,
                       models: list[str] | None = None) -> list[ModelExport]:
    """Recorded model exports, newest first; with `refs` or `models`, only those made from any
    of these dataset versions or models."""
    with project.store.session(write=False) as session:
        rows = list(session.scalars(select(ModelExport).order_by(ModelExport.id.desc())))
        session.expunge_all()
    if refs is None and models is None:
        return rows
    wanted_refs, wanted_models = set(refs or ()), set(models or ())
    return [r for r in rows if wanted_refs & set(r.dataset_versions or ())
            or wanted_models & set(r.models or ())]


def describe(row: ModelExport) -> str:
    """One line for erasure reports: where the copy is and what it was made from."""
    made = ", ".join(row.models or []) or row.source
    data = f"; data {', '.join(row.dataset_versions)}" if row.dataset_versions else ""
    return (f"{row.path} (model export, {row.format} {row.quantization} of {made}{data}, "
            f"by {row.actor}, {row.created_at:%Y-%m-%d %H:%M} UTC)")
