"""`load_engine(project, name_or_path, **options)`: one shared engine per model and options.

Resolves, in order: "base" (the config's base model); "bundled:smollm2-135m"; a registered model
(GGUF → llama.cpp, adapter → transformers on its base + the adapter, merged → transformers,
endpoint → OpenAI HTTP); a path to a .gguf file or a Hugging Face folder; an http(s) URL. Engines
are cached per process, so evaluation and serving share one loaded model.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.engines.base import Engine
from tuneloop.errors import EngineError, NotFound

if TYPE_CHECKING:
    from tuneloop.engines.registry import ModelRecord
    from tuneloop.project import Project

BUNDLED = "bundled:smollm2-135m"
# settings that only the llama.cpp engine takes: callers (eval, serve) may pass them for any model
_LLAMA_ONLY = ("n_ctx", "n_threads", "parallel", "n_batch", "kv_cache_type")
_cache: dict[tuple[Any, ...], Engine] = {}
_cache_lock = threading.Lock()


def load_engine(project: Project, name_or_path: str = "base", **options: Any) -> Engine:
    """A shared, cached engine for a model name, path or URL.

    `options`: `engine="llama.cpp"|"transformers"` to choose for a model both can run (the
    bundled model defaults to llama.cpp), and engine settings such as `n_threads`, `n_ctx`,
    `parallel`, `model` (the model id at an http(s) URL), `api_key_env`.
    """
    key = (str(project.root), name_or_path, tuple(sorted(options.items())))
    with _cache_lock:
        engine = _cache.get(key)
        if engine is None:
            engine = _build(project, name_or_path, dict(options))
            _cache[key] = engine
        return engine


def clear_engine_cache() -> None:
    """Close and forget every cached engine (tests, and the server on shutdown)."""
    with _cache_lock:
        for engine in _cache.values():
            engine.close()
        _cache.clear()


def _build(project: Project, spec: str, options: dict[str, Any]) -> Engine:
    from tuneloop.engines.registry import base_record, get_model

    base = base_record(project)
    if spec in ("base", base.name):
        if base.kind == "endpoint":
            cfg = project.config.base_model
            return _openai(base.path, _endpoint_model(cfg.path, cfg.name), base.name,
                           {"api_key_env": cfg.api_key_env, **options})
        options.setdefault("engine", None if project.config.base_model.engine == "auto"
                           else project.config.base_model.engine)
        options.setdefault("n_ctx", project.config.base_model.context_length)
        return _from_path(project, base.path, base.name, options)
    if spec == BUNDLED:
        return _from_path(project, BUNDLED, "smollm2-135m", options)
    if spec.startswith(("http://", "https://")):
        model = options.pop("model", None)
        if not model:
            raise EngineError(f"an endpoint needs a model name: load_engine(..., {spec!r}, "
                              "model='...')")
        return _openai(spec, model, model, options)
    try:
        record = get_model(project, spec)
    except NotFound:
        candidate = project.path(spec)
        if candidate.exists():
            return _from_path(project, str(candidate), candidate.name, options)
        raise NotFound(f"no model {spec!r}: not a registered model, a GGUF file, a model folder "
                       "or an http(s) URL",
                       hint="`tuneloop models list` shows the models this project knows") from None
    return _from_record(project, record, options)


def _from_record(project: Project, record: ModelRecord, options: dict[str, Any]) -> Engine:
    if record.kind == "endpoint":
        model = record.lineage.get("model") or record.name
        return _openai(record.path, model, record.name,
                       {"api_key_env": record.lineage.get("api_key_env"), **options})
    if record.kind == "adapter":
        from tuneloop.engines.transformers import TransformersEngine

        options.pop("engine", None)
        for key in _LLAMA_ONLY:
            options.pop(key, None)
        return TransformersEngine(hf_dir(project, record.base_model), adapter_dir=record.path,
                                  name=record.name, **options)
    return _from_path(project, record.path, record.name, options)


def _from_path(project: Project, path: str, name: str, options: dict[str, Any]) -> Engine:
    engine = options.pop("engine", None)
    if path == BUNDLED:
        from tuneloop.engines.bundled import bundled_gguf_path, bundled_hf_dir

        if engine == "transformers":
            return _transformers(bundled_hf_dir(project.state_dir / "models"), name, options)
        return _llama_cpp(bundled_gguf_path(), name, options)
    target = project.path(path)
    if target.is_file() and target.suffix.lower() == ".gguf":
        if engine == "transformers":
            raise EngineError(f"{target} is a GGUF file: the transformers engine needs a "
                              "Hugging Face folder", hint="use engine: llama.cpp")
        return _llama_cpp(target, name, options)
    if target.is_dir() and (target / "config.json").is_file():
        if engine == "llama.cpp":
            raise EngineError(f"{target} is a Hugging Face folder: llama.cpp needs a GGUF file",
                              hint="export it with tuneloop's GGUF exporter, or use transformers")
        return _transformers(target, name, options)
    raise NotFound(f"no model at {target}",
                   hint="give a .gguf file or a folder with config.json and *.safetensors")


def hf_dir(project: Project, name: str) -> Path:
    """The Hugging Face folder of a base model name (for adapters and training)."""
    from tuneloop.engines.bundled import bundled_hf_dir
    from tuneloop.engines.registry import base_record, get_model

    base = base_record(project)
    path = base.path if name in ("base", base.name) else name
    if path == BUNDLED:
        return bundled_hf_dir(project.state_dir / "models")
    candidate = project.path(path)
    if candidate.is_dir():
        return candidate
    record = get_model(project, name)
    if record.kind in ("merged", "base") and project.path(record.path).is_dir():
        return project.path(record.path)
    raise NotFound(f"base model {name!r} has no Hugging Face folder to load an adapter onto")


def _llama_cpp(path: Path, name: str, options: dict[str, Any]) -> Engine:
    from tuneloop.engines.llama_cpp import LlamaCppEngine

    return LlamaCppEngine(path, name=name, **options)


def _transformers(path: Path, name: str, options: dict[str, Any]) -> Engine:
    from tuneloop.engines.transformers import TransformersEngine

    for key in _LLAMA_ONLY:
        options.pop(key, None)
    return TransformersEngine(path, name=name, **options)


def _openai(url: str, model: str, name: str, options: dict[str, Any]) -> Engine:
    from tuneloop.engines.openai import OpenAIEngine

    options.pop("engine", None)
    for key in _LLAMA_ONLY:
        options.pop(key, None)
    return OpenAIEngine(url, model, name=name, **options)


def _endpoint_model(path: str, name: str) -> str:
    return name if path.startswith("bundled:") else path
