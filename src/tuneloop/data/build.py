"""`build_dataset`: a recipe from `tuneloop.yaml` turned into an immutable dataset version.

    validate -> normalise -> redact -> exact dedup -> quality filters -> near dedup -> split

The build streams: pass one reads every source row by row and spools the clean records to disk
while keeping only a hash and a MinHash signature of each; the near-duplicate groups are then
decided on those signatures; pass two re-reads the spool and writes the splits. Every record that
a step removes is listed in `rejects.jsonl` with its source, line and reason (duplicates by id,
without their text), and the manifest counts them per step and reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from tuneloop.config import DatasetConfig
from tuneloop.data import stats
from tuneloop.data.clean import Cleaner
from tuneloop.data.dedup import NearDuplicates
from tuneloop.data.readers import Row, iter_rows
from tuneloop.data.records import RecordInvalid
from tuneloop.data.sources import SourceInfo, content_hash, get_source
from tuneloop.data.tokens import load_tokenizer, message_lengths
from tuneloop.data.versions import SPLITS, DatasetVersion, datasets_dir, publish
from tuneloop.errors import DataError, NotFound
from tuneloop.governance import derived_roots, derived_tier, require
from tuneloop.governance.pii import Redactor
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.store import utcnow

BATCH = 512
FORMAT_VERSION = 1
Progress = Callable[[int], None]


def build_dataset(project: Project, actor: Actor, name: str, *, strict: bool = False,
                  progress: Progress | None = None) -> DatasetVersion:
    """Build the recipe `name` into a version (or return the identical one that exists).

    Tier 2 sources need a live `train` approval covering them (the build makes training and
    evaluation data); the approvals relied on are recorded in the version's lineage. With
    `strict`, the first bad record raises `DataError` naming its file and line, and nothing is
    written.
    """
    recipe = project.config.dataset(name)
    if recipe is None:
        known = ", ".join(d.name for d in project.config.datasets) or "none"
        raise NotFound(f"no dataset recipe named {name!r} in tuneloop.yaml (recipes: {known})",
                       hint="add one under `datasets:` naming its sources")
    sources = [get_source(project, s) for s in recipe.sources]
    for source in sources:
        if source.kind != "records":
            raise DataError(f"source {source.name!r} holds documents, not training records",
                            path=str(source.path),
                            hint=f"make records from it with `tuneloop data synth --from "
                                 f"{source.name}`, or list only record sources in the recipe")
    resources = [s.resource for s in sources]
    approvals = require(project.store, actor, "train", resources,
                        purpose=f"build dataset {name}")
    root = datasets_dir(project) / name
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        manifest = _Build(project, recipe, sources, staging, strict, progress).run()
        _refuse_empty(project, name, sources, staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest.update(
        name=name,
        tier=derived_tier([s.tier for s in sources]),
        roots=sorted(derived_roots(*resources)),
        approvals=approvals,
        created_at=utcnow().isoformat(timespec="seconds"),
        created_by=actor.name,
    )
    return publish(project, staging, manifest, created_by=actor.name)


def _refuse_empty(project: Project, name: str, sources: list[SourceInfo], staging: Path,
                  manifest: dict[str, Any]) -> None:
    """Raise `DataError` (publishing nothing) when no record reached the train or test split.

    The rejects are kept under `.tuneloop/failed-builds/` so the message can point at them.
    """
    counts = manifest["counts"]
    if counts.get("train", 0) or counts.get("test", 0):
        return
    steps = manifest["steps"]
    where = ", ".join(f"{s.name} ({_relative(project, s.path)})" for s in sources)
    if not steps["read"]:
        raise DataError(f"dataset {name!r} has nothing to publish: no record was read from "
                        f"{where}; the files hold only blank lines (or only a header)",
                        hint="check the source files, or point the source at the right file")
    reasons: Counter[str] = Counter()
    for step, by_reason in steps["removed"].items():
        for reason, count in by_reason.items():
            reasons[f"{step}: {reason}"] += count
    top = "; ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3))
    kept = project.state_dir / "failed-builds" / \
        f"{name}-{utcnow().strftime('%Y%m%dT%H%M%S')}-rejects.jsonl"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(staging / "rejects.jsonl", kept)
    if steps["kept"]:
        why = (f"the {steps['kept']} records kept all fell in the validation split "
               f"(of {steps['read']} read)")
    else:
        why = f"every one of the {steps['read']} records read was rejected"
    raise DataError(f"dataset {name!r} has nothing to publish: {why}; top reasons: {top}; "
                    f"the rejects (file, line, reason) are in {_relative(project, kept)}",
                    hint="fix the records the rejects name (or the recipe's filters), then "
                         "build again; nothing was published")


class _Build:
    """One run of the pipeline into a staging folder; returns the manifest (without identity)."""

    def __init__(self, project: Project, recipe: DatasetConfig, sources: list[SourceInfo],
                 staging: Path, strict: bool, progress: Progress | None) -> None:
        self.project = project
        self.recipe = recipe
        self.sources = sources
        self.staging = staging
        self.strict = strict
        self.progress = progress
        self.removed: dict[str, Counter[str]] = {}
        self.pii: Counter[str] = Counter()
        self.read = 0
        self.seen: set[int] = set()
        base = project.config.base_model
        self.tokenizer = load_tokenizer(base.path if base.engine != "openai"
                                        else "bundled:smollm2-135m")
        self.redactor = Redactor(project.config.privacy.redact) if recipe.redact else None
        self.near = NearDuplicates(recipe.near_dup_threshold, seed=recipe.seed + 1)
        self.split_of: list[int] = []

    def run(self) -> dict[str, Any]:
        spool_path = self.staging / "spool.jsonl"
        with (spool_path.open("w", encoding="utf-8") as spool,
              (self.staging / "rejects.jsonl").open("w", encoding="utf-8") as rejects):
            for source in self.sources:
                self._read_source(source, spool, rejects)
            spool.flush()
            resolution = self.near.resolve()
            histogram = stats.Histogram()
            counts = {s: 0 for s in SPLITS}
            slices: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
            outs = {s: (self.staging / f"{s}.jsonl").open("w", encoding="utf-8") for s in SPLITS}
            try:
                for index, record in enumerate(_read_spool(spool_path)):
                    tokens = record.pop("_tokens")
                    dup = int(resolution.duplicate_of[index])
                    if dup >= 0:
                        self._reject(rejects, "near_dedup", "near duplicate", record["metadata"],
                                     detail={"id": record["id"],
                                             "similarity": round(float(
                                                 resolution.similarity[index]), 3)})
                        continue
                    split = SPLITS[self.split_of[int(resolution.group[index])]]
                    outs[split].write(_dumps(record) + "\n")
                    counts[split] += 1
                    histogram.add(tokens)
                    if self.recipe.slice_field:
                        value = record["metadata"].get(self.recipe.slice_field)
                        slices[split][str(value) if value is not None else "(none)"] += 1
            finally:
                for handle in outs.values():
                    handle.close()
        spool_path.unlink()
        source_facts = [{"name": s.name, "path": _relative(self.project, s.path), "tier": s.tier,
                         "format": s.format, "sha256": content_hash(s.path),
                         "subject_field": s.subject_field, "generated": _generated(s.path)}
                        for s in self.sources]
        recipe = self.recipe.model_dump(mode="json")
        files = {f: _sha256(self.staging / f) for f in
                 (*(f"{s}.jsonl" for s in SPLITS), "rejects.jsonl")}
        identity = {"format": FORMAT_VERSION, "recipe": recipe, "sources": source_facts,
                    "files": files, "redact": self.project.config.privacy.redact
                    if self.recipe.redact else []}
        version_id = hashlib.sha256(_dumps(identity).encode()).hexdigest()[:16]
        return {
            "id": version_id,
            "format": FORMAT_VERSION,
            "recipe": recipe,
            "sources": source_facts,
            "base_model": self.project.config.base_model.path,
            "files": files,
            "counts": counts,
            "steps": {"read": self.read,
                      "removed": {step: dict(c) for step, c in self.removed.items()},
                      "kept": sum(counts.values())},
            "pii_redacted": dict(sorted(self.pii.items())),
            "token_histogram": histogram.as_dict(),
            "slices": {s: dict(sorted(c.items())) for s, c in slices.items()}
            if self.recipe.slice_field else {},
        }

    def _read_source(self, source: SourceInfo, spool: TextIO, rejects: TextIO) -> None:
        cleaner = Cleaner(source.name, subject_field=source.subject_field,
                          redactor=self.redactor, pii_counts=self.pii)
        batch: list[dict[str, Any]] = []
        for row in iter_rows(source.path, source.format):
            self.read += 1
            if self.progress and self.read % 1000 == 0:
                self.progress(self.read)
            if row.error is not None:
                self._bad(rejects, source, row, row.error, row.excerpt)
                continue
            try:
                record = cleaner.clean(row)
            except RecordInvalid as exc:
                self._bad(rejects, source, row, str(exc), json.dumps(row.data, default=str))
                continue
            except RecursionError:
                # Nested JSON inside a field (a CSV cell of messages): a reject, not a traceback.
                self._bad(rejects, source, row, "a field holds JSON nested too deeply", "")
                continue
            key = int(record["id"][:16], 16)
            if key in self.seen:
                # Same id, same conversation: the id names the record it duplicates.
                self._reject(rejects, "exact_dedup", "exact duplicate", record["metadata"],
                             detail={"id": record["id"]})
                continue
            self.seen.add(key)
            batch.append(record)
            if len(batch) >= BATCH:
                self._filter(batch, spool, rejects)
                batch = []
        self._filter(batch, spool, rejects)
        if self.progress:
            self.progress(self.read)

    def _filter(self, batch: list[dict[str, Any]], spool: TextIO, rejects: TextIO) -> None:
        recipe = self.recipe
        lengths = message_lengths(self.tokenizer, [r["messages"] for r in batch])
        for record, (prompt, output) in zip(batch, lengths, strict=True):
            reason = None
            if not record["messages"][-1]["content"]:
                reason = "empty output"
            elif output < recipe.min_output_tokens:
                reason = f"output shorter than {recipe.min_output_tokens} tokens"
            elif output > recipe.max_output_tokens:
                reason = f"output longer than {recipe.max_output_tokens} tokens"
            elif prompt > recipe.max_input_tokens:
                reason = f"input longer than {recipe.max_input_tokens} tokens"
            if reason:
                self._reject(rejects, "quality", reason, record["metadata"],
                             detail={"id": record["id"], "input_tokens": prompt,
                                     "output_tokens": output})
                continue
            text = "\n".join(m["content"] for m in record["messages"] if m["role"] != "system")
            index = self.near.add(text)
            # A group goes to the split its first record hashes to (seeded, so reproducible).
            digest = hashlib.sha256(f"{recipe.seed}:{record['id']}".encode()).digest()
            self.split_of.append(_split_index(digest, recipe))
            assert index == len(self.split_of) - 1
            record["_tokens"] = prompt + output
            spool.write(_dumps(record) + "\n")

    def _bad(self, rejects: TextIO, source: SourceInfo, row: Row, reason: str,
             excerpt: str) -> None:
        if self.strict:
            raise DataError(reason, path=row.path, line=row.line,
                            hint="fix the record, or build without --strict to set bad records "
                                 "aside in rejects.jsonl")
        if self.redactor is not None and excerpt:
            # A broken line is still customer data: it is kept only in redacted form.
            excerpt = self.redactor.redact(excerpt).text
        self._reject(rejects, "validate", _reason_class(reason),
                     {"source": source.name, "line": row.line},
                     detail={"path": _relative(self.project, Path(row.path)), "detail": reason,
                             "excerpt": excerpt[:300]})

    def _reject(self, rejects: TextIO, step: str, reason: str, metadata: dict[str, Any],
                detail: dict[str, Any]) -> None:
        self.removed.setdefault(step, Counter())[reason] += 1
        entry = {"step": step, "reason": reason, "source": metadata.get("source"),
                 "line": metadata.get("line"), **detail}
        rejects.write(_dumps(entry) + "\n")


def _split_index(digest: bytes, recipe: DatasetConfig) -> int:
    point = int.from_bytes(digest[:8], "big") / 2**64
    if point < recipe.split.train:
        return 0
    return 1 if point < recipe.split.train + recipe.split.validation else 2


def _reason_class(reason: str) -> str:
    # Counts group by kind of problem; the full reason stays in rejects.jsonl.
    for prefix in ("broken JSON", "not UTF-8", "expected a JSON object", "row has"):
        if reason.startswith(prefix):
            return prefix
    return reason.split(";")[0][:80]


def _generated(path: Path) -> dict[str, Any] | None:
    """The lineage `data synth` wrote beside a generated source (its generator), if any."""
    sidecar = path.with_suffix(".lineage.json")
    if not path.is_file() or not sidecar.is_file():
        return None
    return json.loads(sidecar.read_text(encoding="utf-8"))


def _read_spool(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      default=str)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _relative(project: Project, path: Path) -> str:
    try:
        return path.resolve().relative_to(project.root).as_posix()
    except ValueError:
        return str(path)
