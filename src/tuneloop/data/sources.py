"""Sources: files and folders of records or documents, registered with a privacy tier.

Sources come from `tuneloop data add` (stored in the `sources` table) or from `tuneloop.yaml`
(synced into the same table on use, the file winning on conflicts). Registering a source uses no
data, so it needs no approval; every use of it goes through `governance.require`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from tuneloop.config import NAME_PATTERN
from tuneloop.data.readers import DOCUMENT_SUFFIXES, detect_format
from tuneloop.errors import DataError, NotFound, TuneloopError
from tuneloop.governance import audit, tier_floor
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.project import Project
from tuneloop.store import Source


@dataclass(frozen=True)
class SourceInfo:
    """A resolved source: absolute path, kind, format, tier, and the field naming its subject."""

    name: str
    path: Path
    kind: str
    format: str
    tier: int
    subject_field: str | None = None
    owner: str = ""

    @property
    def resource(self) -> Resource:
        """The source as a governance resource (a Tier 2 source is its own root)."""
        return Resource("source", self.name, self.tier,
                        frozenset({f"source:{self.name}"}) if self.tier == 2 else frozenset())


def add_source(project: Project, actor: Actor, path: str | Path, name: str, tier: int, *,
               kind: str | None = None, fmt: str = "auto", owner: str = "",
               description: str = "") -> SourceInfo:
    """Register a file or folder as a source; `kind` defaults to documents for folders."""
    if not re.match(NAME_PATTERN, name):
        raise TuneloopError(f"source name {name!r} is not allowed; use lowercase letters, digits, "
                            "'.', '_' and '-'")
    if tier not in (1, 2):
        raise TuneloopError(f"tier must be 1 (internal data) or 2 (customer data), found {tier}")
    resolved = project.path(path).resolve()
    if not resolved.exists():
        raise DataError("no such file or folder", path=str(resolved))
    fmt = detect_format(resolved, fmt)
    kind = kind or ("documents" if fmt == "documents" else "records")
    if kind not in ("records", "documents"):
        raise TuneloopError(f"kind must be records or documents, found {kind!r}")
    declared = project.config.source(name)
    if declared is not None and project.path(declared.path).resolve() != resolved:
        raise TuneloopError(f"source {name!r} is declared in tuneloop.yaml with path "
                            f"{declared.path!r}; choose another name")
    stored = _relative(project, resolved)
    with project.store.session() as session:
        marks = _check_tier_floor(project, session, name, resolved, tier)
        row = session.execute(select(Source).where(Source.name == name)).scalar_one_or_none()
        if row is None:
            row = Source(name=name, path=stored, kind=kind, format=fmt, tier=tier, owner=owner,
                         description=description, registered_by=actor.name)
            session.add(row)
        else:
            row.path, row.kind, row.format, row.tier = stored, kind, fmt, tier
            row.owner, row.description = owner or row.owner, description or row.description
        audit.record(session, actor=actor.name, action="source.add", target=f"source:{name}",
                     tier=tier, details={"path": stored, "kind": kind, "format": fmt, **marks})
    return SourceInfo(name, resolved, kind, fmt, tier, owner=owner)


def _relative(project: Project, path: Path) -> str:
    # Paths inside the project are stored relative to it, so the project folder can move.
    try:
        return path.relative_to(project.root).as_posix()
    except ValueError:
        return str(path)


def _check_tier_floor(project: Project, session, name: str, path: Path,
                      tier: int) -> dict[str, str]:
    """Refuse to lower the tier of data known as Tier 2 (see `governance.tier_floor`); returns
    what the audit event of a Tier 2 registration records to keep the data known."""
    hashed: list[str] = []

    def digest() -> str:
        if not hashed:
            hashed.append(content_hash(path))
        return hashed[0]

    tier_floor.check_registration(session, tier_floor.Registration(name, path, tier, digest),
                                  lambda stored: project.path(stored).resolve())
    return tier_floor.mark_details(path, digest()) if tier >= 2 else {}


def _sync_tier_floor(project: Project, session, name: str, path: str, tier: int) -> None:
    """The tier check of `governance.tier_floor` for a source from the file; a Tier 2 one is
    recorded (path and content hash) so the data stays known as Tier 2."""
    marks = _check_tier_floor(project, session, name, project.path(path).resolve(), tier)
    if marks:
        session.flush()
        audit.record(session, actor="tuneloop.yaml", action="source.sync",
                     target=f"source:{name}", tier=tier, details={"path": path, **marks})


def sync_sources(project: Project) -> None:
    """Copy the sources declared in `tuneloop.yaml` into the store (the file wins)."""
    declared = project.config.sources
    if not declared:
        return
    with project.store.session() as session:
        rows = {r.name: r for r in session.execute(select(Source)).scalars()}
        # Tier 2 first, so that a Tier 1 entry for the same data is checked against it.
        for src in sorted(declared, key=lambda s: -s.tier):
            row = rows.get(src.name)
            values = {"path": src.path, "kind": src.kind, "format": src.format, "tier": src.tier,
                      "owner": src.owner, "description": src.description}
            if row is None:
                _sync_tier_floor(project, session, src.name, src.path, src.tier)
                session.add(Source(name=src.name, registered_by="tuneloop.yaml", **values))
            elif any(getattr(row, k) != v for k, v in values.items()):
                _sync_tier_floor(project, session, src.name, src.path, src.tier)
                for key, value in values.items():
                    setattr(row, key, value)


def list_sources(project: Project) -> list[SourceInfo]:
    """Every source of the project, by name."""
    sync_sources(project)
    with project.store.session(write=False) as session:
        rows = session.execute(select(Source).order_by(Source.name)).scalars().all()
    return [_info(project, r) for r in rows]


def get_source(project: Project, name: str) -> SourceInfo:
    """One source by name; `NotFound` names the ones that exist."""
    sources = {s.name: s for s in list_sources(project)}
    if name not in sources:
        known = ", ".join(sources) or "none yet"
        raise NotFound(f"no source named {name!r} (sources: {known})",
                       hint="register one with `tuneloop data add PATH --name NAME --tier 1|2`")
    return sources[name]


def _info(project: Project, row: Source) -> SourceInfo:
    declared = project.config.source(row.name)
    return SourceInfo(name=row.name, path=project.path(row.path).resolve(), kind=row.kind,
                      format=row.format, tier=row.tier,
                      subject_field=declared.subject_field if declared else None,
                      owner=row.owner)


def content_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's documents (names and bytes, in path order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
