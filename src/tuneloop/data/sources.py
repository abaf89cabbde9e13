"""Sources: files and folders of records or documents, registered with a privacy tier.

One registry: the `sources` table. Sources come from `tuneloop data add` or from `tuneloop.yaml`
(synced into the same table on use); either kind can be named wherever a source name is accepted
(dataset recipes, `knowledge_base.sources`, `data synth`, `rag index`). The two never disagree
silently: `data add` refuses a name the file declares with another path, the file winning over an
earlier `data add` is audited and shown, a source removed from the file leaves the registry, and a
name neither knows is a configuration error naming the field and line. `tuneloop data sources`
shows where each came from. Registering a source uses no data, so it needs no approval; every use
of it goes through `governance.require`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from tuneloop.config import NAME_PATTERN, check_source_refs
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
    origin: str = ""  # "tuneloop.yaml" or "data add (by NAME)", for `tuneloop data sources`

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
    return SourceInfo(name, resolved, kind, fmt, tier, owner=owner,
                      origin=f"data add (by {actor.name})")


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


YAML = "tuneloop.yaml"


def _sync_tier_floor(project: Project, session, name: str, path: str, tier: int) -> None:
    """The tier check of `governance.tier_floor` for a source from the file; a Tier 2 one is
    recorded (path and content hash) so the data stays known as Tier 2."""
    marks = _check_tier_floor(project, session, name, project.path(path).resolve(), tier)
    if marks:
        session.flush()
        audit.record(session, actor=YAML, action="source.sync", target=f"source:{name}",
                     tier=tier, details={"path": path, **marks})


def sync_sources(project: Project) -> None:
    """Make the store agree with `tuneloop.yaml`: the file wins, and says so (audited).

    A source declared in the file is added or updated; one that `data add` registered with other
    settings is overridden, audited as such. A source the file once declared and no longer does
    leaves the registry, so it cannot be used by a name nobody declares any more.
    """
    declared = {s.name: s for s in project.config.sources}
    with project.store.session() as session:
        rows = {r.name: r for r in session.execute(select(Source)).scalars()}
        # Tier 2 first, so that a Tier 1 entry for the same data is checked against it.
        for name, src in sorted(declared.items(), key=lambda item: -item[1].tier):
            row = rows.get(name)
            values = {"path": src.path, "kind": src.kind, "format": src.format, "tier": src.tier,
                      "owner": src.owner, "description": src.description}
            if row is None:
                _sync_tier_floor(project, session, name, src.path, src.tier)
                session.add(Source(name=name, registered_by=YAML, **values))
                continue
            changed = {k: [getattr(row, k), v] for k, v in values.items() if getattr(row, k) != v}
            if not changed and row.registered_by == YAML:
                continue
            _sync_tier_floor(project, session, name, src.path, src.tier)
            if row.registered_by != YAML:
                audit.record(session, actor=YAML, action="source.overridden",
                             target=f"source:{name}", tier=src.tier,
                             details={"was_registered_by": row.registered_by,
                                      "changed": changed})
            for key, value in values.items():
                setattr(row, key, value)
            row.registered_by = YAML
        for name, row in rows.items():
            if row.registered_by == YAML and name not in declared:
                audit.record(session, actor=YAML, action="source.removed",
                             target=f"source:{name}", tier=row.tier,
                             details={"path": row.path, "why": f"no longer in {YAML}"})
                session.delete(row)


def check_references(project: Project) -> None:
    """Raise `ConfigError` (field path and line) for a source name neither registry knows."""
    with project.store.session(write=False) as session:
        registered = list(session.execute(select(Source.name)).scalars())
    path = project.config_path
    text = path.read_text(encoding="utf-8") if path.is_file() else None
    check_source_refs(project.config, registered, source=str(path), text=text)


def list_sources(project: Project, *, check: bool = True) -> list[SourceInfo]:
    """Every source of the project, by name, from either registry.

    With `check`, a name used in the config that neither registry knows is a `ConfigError`.
    """
    sync_sources(project)
    if check:
        check_references(project)
    with project.store.session(write=False) as session:
        rows = session.execute(select(Source).order_by(Source.name)).scalars().all()
        return [_info(project, r) for r in rows]


def get_source(project: Project, name: str) -> SourceInfo:
    """One source by name; `NotFound` names the ones that exist, and where each came from."""
    sources = {s.name: s for s in list_sources(project)}
    if name not in sources:
        known = ", ".join(f"{s.name} ({s.origin})" for s in sources.values()) or "none yet"
        raise NotFound(f"no source named {name!r} (sources: {known})",
                       hint="declare it under `sources:` in tuneloop.yaml, or register it with "
                            "`tuneloop data add PATH --name NAME --tier 1|2`")
    return sources[name]


def find_source(project: Project, name: str) -> SourceInfo | None:
    """One source by name from either registry, or None; reads only (cheap on hot paths).

    The file's declaration wins, as in `sync_sources`, except that its tier never goes below the
    one the store holds: the file is read here unchecked (a variant's tier uses this per
    request), and only `data tier` with a privacy officer's key lowers a stored tier.
    """
    declared = project.config.source(name)
    with project.store.session(write=False) as session:
        row = session.execute(select(Source).where(Source.name == name)).scalar_one_or_none()
        if declared is None:
            return _info(project, row) if row is not None else None
    tier = max(declared.tier, row.tier if row is not None else 1)
    return SourceInfo(name, project.path(declared.path).resolve(), declared.kind,
                      declared.format, tier, declared.subject_field, declared.owner, YAML)


def _info(project: Project, row: Source) -> SourceInfo:
    declared = project.config.source(row.name)
    origin = YAML if row.registered_by == YAML else f"data add (by {row.registered_by})"
    return SourceInfo(name=row.name, path=project.path(row.path).resolve(), kind=row.kind,
                      format=row.format, tier=row.tier,
                      subject_field=declared.subject_field if declared else None,
                      owner=row.owner, origin=origin)


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
