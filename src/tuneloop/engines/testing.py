"""Tiny, randomly initialised llama models with the real SmolLM2 tokenizer, for tests.

Every engine, the exporter and the trainer can then be exercised in seconds without downloading
anything: the architecture is the real LlamaForCausalLM, only small; the tokenizer and chat
template are SmolLM2's own, taken from the bundled GGUF.

    from tuneloop.engines.testing import tiny_gguf, tiny_llama
    model_dir = tiny_llama(tmp_path)          # a normal HF model folder (safetensors)
    gguf_file = tiny_gguf(tmp_path, seed=3)   # the same kind of model, exported for llama.cpp
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

_lock = threading.RLock()  # re-entrant: tiny_llama holds it while fetching the tokenizer
_built: dict[tuple[object, ...], Path] = {}  # build key -> folder built in this process
_tokenizer_dir: Path | None = None
_scratch: Path | None = None


def _scratch_dir() -> Path:
    """This process's folder for the models and tokenizer it builds once and copies from;
    removed when the process exits (the copies callers asked for stay where they asked)."""
    global _scratch
    with _lock:
        if _scratch is None or not _scratch.is_dir():
            _scratch = Path(tempfile.mkdtemp(prefix="tuneloop-testing-"))
            atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
        return _scratch


def tiny_llama(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 2048,
    tie_word_embeddings: bool = True,
) -> Path:
    """Build (or reuse) a tiny random LlamaForCausalLM folder under `out_dir` and return its path.

    The folder holds `config.json`, `model.safetensors`, the SmolLM2 tokenizer and its chat
    template: a normal Hugging Face model folder. Defaults use grouped-query attention
    (`kv_heads` < `heads`) and tied embeddings, as SmolLM2 does, so converters meet the same
    cases as with the real model. The model is built once per process and per set of
    arguments; later calls copy it (a few MB), so tests may call this freely.
    """
    key = (seed, hidden_size, layers, heads, kv_heads, intermediate_size,
           max_position_embeddings, tie_word_embeddings)
    name = "tiny-llama-" + "-".join(str(int(k) if isinstance(k, bool) else k) for k in key)
    target = Path(out_dir) / name
    if (target / "model.safetensors").is_file():
        return target
    with _lock:
        source = _built.get(key)
        if source is None or not source.is_dir():
            source = _scratch_dir() / name
            _build(source, seed=seed, hidden_size=hidden_size, layers=layers, heads=heads,
                   kv_heads=kv_heads, intermediate_size=intermediate_size,
                   max_position_embeddings=max_position_embeddings,
                   tie_word_embeddings=tie_word_embeddings)
            _built[key] = source
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    shutil.copytree(source, tmp, dirs_exist_ok=True)
    os.replace(tmp, target)
    return target


def tiny_gguf(out_dir: str | Path, *, seed: int = 0, quantization: str = "f16",
              **options: int | bool) -> Path:
    """A tiny random llama (see `tiny_llama`, same `options`) exported to GGUF under `out_dir`.

    The file is built once per `out_dir` and arguments, then reused; llama.cpp loads it in a
    fraction of a second and answers in milliseconds. Different seeds give different weights,
    so two such models answer the same prompt differently.
    """
    from tuneloop.engines.export import export_gguf

    folder = tiny_llama(out_dir, seed=seed, **options)  # type: ignore[arg-type]
    target = Path(out_dir) / f"{folder.name}-{quantization}.gguf"
    if not target.is_file():  # export_gguf writes a temporary file and renames it
        export_gguf(folder, target, quantization)  # type: ignore[arg-type]
    return target


def smollm2_tokenizer_dir() -> Path:
    """A folder with the real SmolLM2 tokenizer (tokenizer.json, chat template), once per process.

    Taken from the bundled GGUF, so it works offline.
    """
    global _tokenizer_dir
    with _lock:
        if _tokenizer_dir is None or not (_tokenizer_dir / "tokenizer.json").is_file():
            from transformers import PreTrainedTokenizerFast

            from tuneloop.engines.bundled import bundled_gguf_path

            gguf = bundled_gguf_path()
            # The fast tokenizer class directly: AutoTokenizer first parses every field of the
            # GGUF (49k tokens, 49k merges) through gguf's reader only to learn the model type,
            # ~9 s instead of under 1; the files saved below are byte for byte the same.
            tokenizer = PreTrainedTokenizerFast.from_pretrained(gguf.parent, gguf_file=gguf.name)
            folder = _scratch_dir() / "smollm2-tokenizer"
            tokenizer.save_pretrained(folder)
            _tokenizer_dir = folder
        return _tokenizer_dir


def _build(folder: Path, *, seed: int, hidden_size: int, layers: int, heads: int,
           kv_heads: int, intermediate_size: int, max_position_embeddings: int,
           tie_word_embeddings: bool) -> None:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        dtype="float32",
    )
    torch.manual_seed(seed)
    # A larger init than the default 0.02 makes the random model's logits less flat, so greedy
    # decoding has clear winners and engines can be compared token for token.
    config.initializer_range = 0.5
    model = LlamaForCausalLM(config).float().eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def fixed_answer_llama(out_dir: str | Path, text: str) -> Path:
    """A tiny llama whose greedy answer to any prompt starts with `text` (one token of the
    SmolLM2 vocabulary, e.g. a digit), repeated: a real model folder for tests that need an
    engine to give a known answer, such as a judge's grade (see `_scripted_llama`)."""
    return _scripted_llama(out_dir, "fixed-answer", text, loop=False)


def looping_llama(out_dir: str | Path, text: str) -> Path:
    """A tiny llama whose greedy answer to any prompt is `text` said again and again, the loop
    a small model can fall into at temperature 0: a real model for tests of loop handling.
    The tokens of `text` must be distinct (see `_scripted_llama`)."""
    return _scripted_llama(out_dir, "looping", text, loop=True)


def _scripted_llama(out_dir: str | Path, kind: str, text: str, *, loop: bool) -> Path:
    """A tiny llama whose next token is a fixed function of the current one, built from
    `tiny_llama` by setting weights, not by training.

    Attention and MLP outputs are zeroed, so the last hidden state is the current token's
    embedding, and the final norm keeps only the dimensions used here. Every token is embedded
    in dimension 0, which the output head maps to the first token of `text`; with `loop`, each
    token of `text` gets a dimension of its own instead, which the head maps to the token after
    it (the last to the first). Without `loop`, `text` is one token, said again and again.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = Path(out_dir) / f"{kind}-{text.encode('utf-8').hex()[:48]}"
    if (target / "model.safetensors").is_file():
        return target
    source = tiny_llama(Path(out_dir) / f"{kind}-base", tie_word_embeddings=False)
    tokenizer = AutoTokenizer.from_pretrained(source)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    if not loop and len(ids) != 1:
        raise ValueError(f"{text!r} is {len(ids)} tokens; pass one token's text")
    if loop and (len(set(ids)) != len(ids) or len(ids) >= model.config.hidden_size):
        raise ValueError(f"{text!r} must be fewer than {model.config.hidden_size} distinct "
                         "tokens")
    chain = list(enumerate(ids, start=1)) if loop else []
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.zero_()
        model.model.norm.weight[: len(chain) + 1] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[ids[0], 0] = 1.0
        if loop:
            model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        for dim, token in chain:
            model.model.embed_tokens.weight[token] = 0.0
            model.model.embed_tokens.weight[token, dim] = 1.0
            model.lm_head.weight[ids[dim % len(ids)], dim] = 1.0
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target
