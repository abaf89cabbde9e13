"""The model registry: register, look up and list the models tuneloop can serve.

    register_model(project, name="faq-run3", kind="adapter", path=".../adapter",
                   format="safetensors", tier=2, roots=["source:tickets"],
                   base_model="smollm2-135m", lineage={...})
    get_model(project, "faq-run3").tier
    list_models(project)      # the config's base model first, then registered models, newest first

The config's base model is listed (kind "base") without a row: `tuneloop.yaml` is its record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tuneloop.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from tuneloop.project import Project

KINDS = ("base", "adapter", "merged", "gguf", "endpoint")
FORMATS = ("safetensors", "gguf", "openai")


@dataclass(frozen=True)
class ModelRecord:
    """A model as the registry knows it."""

    name: str
    kind: str
    path: str
    format: str
    tier: int
    roots: tuple[str, ...] = ()
    base_model: str = ""
    lineage: dict[str, Any] = field(default_factory=dict)
    created_by: str = ""
    created_at: dt.datetime | None = None
    registered: bool = True  # False for the config's base model, which has no row

    @property
    def engine(self) -> str:
        """The engine that serves it: llama.cpp (GGUF), openai (endpoints) or transformers."""
        return {"gguf": "llama.cpp", "openai": "openai"}.get(self.format, "transformers")


def register_model(project: Project, *, name: str, kind: str, path: str, format: str,
                   tier: int, roots: Iterable[str] = (), base_model: str = "",
                   lineage: dict[str, Any] | None = None, actor: str | None = None
                   ) -> ModelRecord:
    """Add a model to the registry, or update the entry of that name; audited.

    `kind`: base, adapter, merged, gguf or endpoint. `roots` are the Tier 2 source refs the model
    derives from (taint), `lineage` what it was made from (dataset versions, run id, approvals).
    Registering again never lowers the tier or drops roots of an existing name: taint only grows.
    """
    from tuneloop.governance import audit
    from tuneloop.governance.principals import local_name
    from tuneloop.store.registry import ModelRow

    if kind not in KINDS:
        raise InvalidRequest(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    if format not in FORMATS:
        raise InvalidRequest(f"unknown model format {format!r}; expected one of "
                             f"{', '.join(FORMATS)}")
    if not name or name in ("base",) or name.startswith("bundled:"):
        raise InvalidRequest(f"{name!r} is reserved and cannot name a registered model")
    who = actor or local_name()
    with project.store.session() as session:
        row = session.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is None:
            row = ModelRow(name=name, tier=1, roots=[])
            session.add(row)
        tier = max(int(tier), int(row.tier or 1))
        roots = set(roots) | set(row.roots or ())
        row.kind, row.path, row.format, row.tier = kind, str(path), format, tier
        row.roots, row.base_model = sorted(roots), base_model or ""
        row.lineage, row.created_by = dict(lineage or {}), who
        session.flush()
        audit.record(session, actor=who, action="model.register", target=f"model:{name}",
                     tier=tier, details={"kind": kind, "format": format, "path": str(path),
                                         "base_model": base_model or "", "roots": sorted(roots)})
        return _record(row)


def lineage_of(project: Project, path: str | Path) -> tuple[int, frozenset[str]]:
    """The tier and Tier 2 roots of what a model file or folder was made from, as far as the
    registry knows: a model registered (now or ever: the audit keeps every registration) at that
    path, inside it, or (for models tuneloop trained) in the same run folder, e.g. the merged model
    next to a registered adapter."""
    target = Path(path).resolve()
    artifacts = project.artifacts_dir.resolve()
    tier, roots = 1, set[str]()
    for where, model_tier, model_roots in _registrations(project):
        where = where.resolve()
        home = where.parent if where.is_relative_to(artifacts) else where
        if target == where or target.is_relative_to(home) or where.is_relative_to(target):
            tier, roots = max(tier, model_tier), roots | set(model_roots)
    return tier, frozenset(roots)


def _registrations(project: Project) -> list[tuple[Path, int, list[str]]]:
    """Every path a model was registered at, with its tier and roots: the registry's rows and
    the audit's `model.register` events (a name re-registered elsewhere keeps its history)."""
    import json

    from tuneloop.store import AuditEvent

    found = [(Path(m.path), m.tier, list(m.roots)) for m in list_models(project)[1:]
             if m.format != "openai" and m.path]
    with project.store.session(write=False) as session:
        events = session.execute(select(AuditEvent.tier, AuditEvent.details)
                                 .where(AuditEvent.action == "model.register")).all()
    for tier, details in events:
        facts = json.loads(details or "{}")
        if facts.get("format") != "openai" and facts.get("path"):
            found.append((Path(facts["path"]), int(tier or 1), list(facts.get("roots", []))))
    return found


def get_model(project: Project, name: str) -> ModelRecord:
    """The registered model called `name` (or the config's base model for "base"/its name)."""
    from tuneloop.store.registry import ModelRow

    with project.store.session(write=False) as session:
        row = session.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is not None:
            return _record(row)
    base = base_record(project)
    if name in ("base", base.name):
        return base
    raise NotFound(f"no model called {name!r} in the registry",
                   hint="`tuneloop models list` shows the models this project knows")


def list_models(project: Project) -> list[ModelRecord]:
    """The config's base model, then every registered model, newest first."""
    from tuneloop.store.registry import ModelRow

    with project.store.session(write=False) as session:
        rows = session.scalars(select(ModelRow).order_by(ModelRow.created_at.desc(),
                                                          ModelRow.id.desc()))
        return [base_record(project), *(_record(r) for r in rows)]


def base_record(project: Project) -> ModelRecord:
    """The config's base model as a record (Tier 1: public weights carry no customer data)."""
    cfg = project.config.base_model
    if cfg.engine == "openai":
        return ModelRecord(cfg.name, "endpoint", cfg.base_url or "", "openai", 1,
                           lineage={"model": cfg.path}, registered=False)
    fmt = "gguf" if cfg.path.startswith("bundled:") or cfg.path.endswith(".gguf") else "safetensors"
    if cfg.engine == "transformers":
        fmt = "safetensors"
    return ModelRecord(cfg.name, "base", cfg.path, fmt, 1, registered=False)


def _record(row: Any) -> ModelRecord:
    return ModelRecord(name=row.name, kind=row.kind, path=row.path, format=row.format,
                       tier=row.tier, roots=tuple(row.roots or ()), base_model=row.base_model,
                       lineage=dict(row.lineage or {}), created_by=row.created_by,
                       created_at=row.created_at)
