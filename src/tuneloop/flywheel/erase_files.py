"""Erasure on disk: dataset versions rewritten without the subject, then a sweep of `.tuneloop/`.

A version folder is immutable, so a version that holds the subject is replaced: its files are
copied without the subject's lines into a new version (same name, new id, the manifest saying
which version it replaces and which erasure made it) and the old folder is deleted. The sweep
then looks at every other file under `.tuneloop/` (evaluation reports, caches, exports): a derived
file that still mentions the subject is deleted and listed, so it can be regenerated.

Models are never deleted. Weights, adapters, tokenizers, GGUF/safetensors/bin files and anything
under the model and run folders (or at a registered model's path) are artefacts: the models
derived from the subject's data are marked for retraining instead (see `flywheel.marks`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.data.versions import MANIFEST, SPLITS, datasets_dir, list_versions, publish
from tuneloop.flywheel.subject import Subject

if TYPE_CHECKING:
    from tuneloop.project import Project

# The database's own files are purged by VACUUM, not deleted; the lock file holds nothing.
DATABASE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".db.lock")
MODEL_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5",
                  ".msgpack", ".model", ".tflite", ".mlmodel", ".npz")
MODEL_FILES = frozenset({
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "merges.txt",
    "special_tokens_map.json", "added_tokens.json", "config.json", "generation_config.json",
    "adapter_config.json", "chat_template.jinja", "trainer_state.json", "training_args.json"})
# Folders under `.tuneloop/` that hold models and training runs: never swept.
ARTEFACT_FOLDERS = ("models", "artifacts/runs", "artifacts/models", "exports/models")


@dataclass
class DatasetRewrite:
    """One version replaced: the old ref, the new ref and how many records left it."""

    old: str
    new: str
    removed: int
    record_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # what the removed records said


def rewrite_datasets(project: Project, subject: Subject, erasure_id: int,
                     created_by: str) -> list[DatasetRewrite]:
    """Replace every dataset version that holds the subject; delete the old folders."""
    out = []
    for version in list_versions(project):
        if not (version.path / MANIFEST).is_file():
            continue  # already purged by an earlier erasure
        kept, removed_ids, texts = filtered(version.path, subject)
        if not removed_ids and not _mentions_outside_records(version.path, subject):
            continue
        manifest = json.loads((version.path / MANIFEST).read_text(encoding="utf-8"))
        root = datasets_dir(project) / version.name
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
        try:
            digest = hashlib.sha256(f"{version.id}:erasure".encode())
            for name, lines in sorted(kept.items()):
                text = "".join(lines)
                digest.update(f"{name}\n{text}".encode())
                (staging / name).write_text(text, encoding="utf-8")
            for extra in version.path.iterdir():
                copy = extra.is_file() and extra.name not in kept and extra.name != MANIFEST
                if copy and not subject.mentions(extra):
                    shutil.copy2(extra, staging / extra.name)
            counts = {s: sum(1 for line in kept.get(f"{s}.jsonl", []) if line.strip())
                      for s in SPLITS}
            manifest.update(
                id=digest.hexdigest()[:16], counts=counts,
                erasure={"id": erasure_id, "replaces": version.ref,
                         "removed_records": len(removed_ids)})
            manifest = _scrub(manifest, subject)
            new = publish(project, staging, manifest, created_by=created_by)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(version.path)
        out.append(DatasetRewrite(version.ref, new.ref, len(removed_ids), removed_ids, texts))
    return out


def filtered(folder: Path, subject: Subject
             ) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """A version folder's JSONL lines without the subject's: (kept per file, removed ids, texts)."""
    kept: dict[str, list[str]] = {}
    removed: list[str] = []
    texts: list[str] = []
    for path in sorted(folder.glob("*.jsonl")):
        lines = []
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = {"text": line}
                mine = isinstance(record, dict) and subject.in_record(record)
                if mine or subject.matches(line):
                    removed.append(str(record.get("id", "")) if isinstance(record, dict) else "")
                    texts.extend(_texts(record))
                else:
                    lines.append(line if line.endswith("\n") else line + "\n")
        kept[path.name] = lines
    return kept, removed, texts


def _texts(record: Any) -> list[str]:
    """What the subject wrote in a record (user messages), for `Subject.with_fragments`.

    Answers are left out: they are often generic and shared with other people's records.
    """
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        return []
    return [str(m.get("content") or "") for m in record["messages"]
            if isinstance(m, dict) and m.get("role") == "user"]


def _mentions_outside_records(folder: Path, subject: Subject) -> bool:
    return any(p.is_file() and p.suffix != ".jsonl" and subject.mentions(p)
               for p in folder.iterdir())


def _scrub(value: Any, subject: Subject) -> Any:
    """The manifest without any string that mentions the subject (e.g. a sample record)."""
    if isinstance(value, dict):
        return {k: _scrub(v, subject) for k, v in value.items()
                if not (isinstance(v, str) and subject.matches(v))}
    if isinstance(value, list):
        return [_scrub(v, subject) for v in value if not (isinstance(v, str)
                                                          and subject.matches(v))]
    return value


def sweep(project: Project, subject: Subject) -> list[Path]:
    """Delete every derived file under `.tuneloop/` that mentions the subject.

    The database is purged, not deleted; dataset versions were rewritten record by record (and
    are checked by name only, since a sentence of the subject's may be in someone else's record);
    model artefacts are never candidates (`scan` leaves them out).
    """
    removed = []
    for path in scan(project, subject):
        if path.name.endswith(DATABASE_SUFFIXES) or path.is_relative_to(datasets_dir(project)):
            continue
        path.unlink()
        removed.append(path)
    return removed


def scan(project: Project, subject: Subject) -> list[Path]:
    """Every data file under `.tuneloop/` that mentions the subject (what a verifier runs).

    Model artefacts are left out: they are marked for retraining, never deleted.
    """
    by_name = replace(subject, fragments=())
    data = datasets_dir(project)
    guard = ArtefactGuard.of(project)
    return [p for p in _files(project) if not guard.protects(p)
            and (by_name if p.is_relative_to(data) else subject).mentions(p)]


def _files(project: Project) -> list[Path]:
    """Every file under `.tuneloop/` but the database's own.

    The database is never opened as a file here: closing any descriptor of it drops this
    process's POSIX locks on it, and another process could then delete the live write-ahead log.
    `purge` handles its bytes.
    """
    return [p for p in sorted(project.state_dir.rglob("*")) if p.is_file() and not p.is_symlink()
            and not p.name.endswith(DATABASE_SUFFIXES)]


def artefacts_mentioning(project: Project, subject: Subject) -> list[Path]:
    """Text files among the model artefacts that name the subject (kept; the model is marked)."""
    guard = ArtefactGuard.of(project)
    by_name = replace(subject, fragments=())
    return [p for p in _files(project) if guard.protects(p)
            and p.suffix.lower() not in MODEL_SUFFIXES and by_name.mentions(p)]


@dataclass(frozen=True)
class ArtefactGuard:
    """Says which files are model artefacts: erasure never deletes or rewrites them."""

    folders: tuple[Path, ...]

    @classmethod
    def of(cls, project: Project) -> ArtefactGuard:
        """The project's model and run folders, and every registered model's path."""
        folders = [project.state_dir / f for f in ARTEFACT_FOLDERS]
        for record in _registered(project):
            raw = str(getattr(record, "path", "") or "")
            path = project.path(raw).resolve() if raw else None
            # A model registered at the project (or state) folder itself would shield everything.
            if path is not None and path.exists() and not project.state_dir.resolve() \
                    .is_relative_to(path):
                folders.append(path)
        return cls(tuple(folders))

    def protects(self, path: Path) -> bool:
        """Whether `path` is (or lies inside) a model, adapter, tokenizer or run artefact."""
        name = path.name.lower()
        if name.endswith(MODEL_SUFFIXES) or name in MODEL_FILES or name.startswith("tokenizer"):
            return True
        resolved = path.resolve()
        if any(resolved == f or resolved.is_relative_to(f) or path.is_relative_to(f)
               for f in self.folders):
            return True
        # A folder that holds a model config or weights is a model folder, wherever it is.
        return any((path.parent / marker).is_file()
                   for marker in ("adapter_config.json", "model.safetensors"))


def _registered(project: Project) -> list[Any]:
    from tuneloop.engines.registry import list_models

    return list(list_models(project))


def sources_mentioning(project: Project, subject: Subject) -> list[str]:
    """Declared sources (outside `.tuneloop/`) that still mention the subject.

    Erasure does not edit the team's source files; a rebuild or re-index from them would bring
    the subject back, so the command names them.
    """
    from tuneloop.data.sources import list_sources

    out: list[str] = []
    for source in list_sources(project, check=False):
        path = source.path
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) \
            if path.is_dir() else []
        hits = [f for f in files if subject.mentions(f)]
        out.extend(f"{source.name}: {f}" for f in hits)
    return out

