"""Which base model a run starts from, as a Hugging Face folder transformers can load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tuneloop.engines.registry import get_model
from tuneloop.errors import NotFound

if TYPE_CHECKING:
    from tuneloop.project import Project

BUNDLED = "bundled:smollm2-135m"


@dataclass(frozen=True)
class BaseModel:
    """A base model: the name lineage records, its folder, and its tier (a fine-tuned model
    trained on Tier 2 data is Tier 2 itself, and so is anything trained on top of it)."""

    name: str
    hf_dir: Path
    tier: int = 1
    roots: frozenset[str] = field(default_factory=frozenset)


def resolve_base(project: Project, name: str | None = None) -> BaseModel:
    """Resolve `--base`: None or "base" (the config's base model), "bundled:smollm2-135m", a
    registered model name, or a path to a Hugging Face model folder."""
    if name in (None, "", "base"):
        configured = project.config.base_model
        return _from_path(project, configured.path, configured.name)
    if name == BUNDLED:
        return _from_path(project, BUNDLED, "smollm2-135m")
    candidate = project.path(name)
    if candidate.is_dir():
        return _from_path(project, str(candidate), name)
    registered = _registered(project, name)
    if registered is not None:
        return registered
    raise NotFound(f"no base model {name!r}: not a registered model and not a folder",
                   hint="pass a Hugging Face model folder, bundled:smollm2-135m, or a name "
                        "from `tuneloop models list`")


def _from_path(project: Project, path: str, name: str) -> BaseModel:
    if path == BUNDLED:
        from tuneloop.engines.bundled import bundled_hf_dir

        return BaseModel(BUNDLED, bundled_hf_dir(project.state_dir / "models"))
    folder = project.path(path)
    if not (folder / "config.json").is_file():
        raise NotFound(f"base model {name!r}: {folder} is not a Hugging Face model folder "
                       "(no config.json)",
                       hint="training needs safetensors weights; point base_model.path at the "
                            "model's folder")
    return BaseModel(name, folder)


def _registered(project: Project, name: str) -> BaseModel | None:
    try:
        model = get_model(project, name)
    except NotFound:
        return None
    folder = Path(model.path)
    if not (folder / "config.json").is_file():
        return None
    return BaseModel(model.name, folder, int(model.tier), frozenset(model.roots or ()))
