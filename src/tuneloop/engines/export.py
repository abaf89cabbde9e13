"""Export a llama-family Hugging Face model folder (safetensors) to a GGUF file llama.cpp serves.

Written with the `gguf` package's GGUFWriter: tensor names come from gguf's own llama name map,
the Q/K projection rows are permuted into the rotary layout llama.cpp expects (HF stores them
for rotate-half RoPE), and the tokenizer metadata is built from `tokenizer.json` (byte-level
BPE); for SmolLM2's vocabulary the result equals the bundled GGUF's fields.

    export_gguf(hf_dir, out_path, quantization="f16")   # "f32" | "f16" | "q8_0"

Weights load only from `.safetensors` files, never through pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tuneloop.errors import EngineError

Quantization = Literal["f32", "f16", "q8_0"]
QUANTIZATIONS: tuple[str, ...] = ("f32", "f16", "q8_0")
_LLAMA_ARCHS = {"LlamaForCausalLM", "MistralForCausalLM"}
# vocab_fingerprint() of SmolLM2's tokenizer (the bundled GGUF's tokenizer.ggml.tokens)
SMOLLM2_VOCAB_SHA256 = "6dae5ca0dff9573b1c5a7d6ab32c3498f4af9d3e3dc582f234af80ffc8c2543d"


def export_gguf(
    hf_dir: str | Path,
    out_path: str | Path,
    quantization: Quantization = "f16",
    *,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the llama-family model in `hf_dir` to `out_path` as GGUF and return the path.

    `quantization`: "f32" (exact), "f16" (2-D weights in half precision, norms in f32) or
    "q8_0" (2-D weights in 8-bit blocks). A merged fine-tune exports the same way as a base
    model. `progress(done, total)` is called after each tensor. The file is written under a
    temporary name and renamed, so a failed export leaves nothing behind.
    """
    import gguf

    src = Path(hf_dir)
    if quantization not in QUANTIZATIONS:
        raise EngineError(f"unknown GGUF quantization {quantization!r}",
                          hint=f"use one of: {', '.join(QUANTIZATIONS)}")
    config = _read_config(src)
    shape = _LlamaShape.of(src, config)
    out = Path(out_path)
    with _temporary_writer(gguf, out) as writer:
        _add_metadata(writer, gguf, config, shape, name or src.name, quantization)
        _add_tokenizer(writer, src)
        _add_weights(writer, gguf, src, config, shape, quantization, progress)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    return out


@dataclass(frozen=True)
class _LlamaShape:
    """The numbers of a llama-family config that the GGUF metadata and the weights need."""

    layers: int
    heads: int
    kv_heads: int
    hidden: int
    head_dim: int
    rope_theta: float
    rope_type: str
    rope_factor: float | None

    @classmethod
    def of(cls, src: Path, config: dict[str, Any]) -> _LlamaShape:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        rope = config.get("rope_parameters") or {}
        rope_type = (rope.get("rope_type") or (config.get("rope_scaling") or {}).get("type")
                     or "default")
        if rope_type not in ("default", "linear"):
            raise EngineError(f"{src}: rope type {rope_type!r} is not supported by the GGUF "
                              "exporter",
                              hint="export llama-family models with default or linear RoPE")
        factor = (float(rope.get("factor") or config["rope_scaling"]["factor"])
                  if rope_type == "linear" else None)
        return cls(layers=int(config["num_hidden_layers"]), heads=heads,
                   kv_heads=int(config.get("num_key_value_heads") or heads), hidden=hidden,
                   head_dim=int(config.get("head_dim") or hidden // heads),
                   rope_theta=float(config.get("rope_theta") or rope.get("rope_theta")
                                    or 10000.0),
                   rope_type=rope_type, rope_factor=factor)


@contextmanager
def _temporary_writer(gguf: Any, out: Path) -> Iterator[Any]:
    """A GGUF writer on a temporary file next to `out`, renamed to `out` when the block ends
    without error and removed when it does not."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    writer = gguf.GGUFWriter(tmp, "llama")
    try:
        yield writer
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise


def _add_metadata(writer: Any, gguf: Any, config: dict[str, Any], shape: _LlamaShape,
                  name: str, quantization: str) -> None:
    """The model's hyperparameters and file type, as llama.cpp's llama loader reads them."""
    writer.add_name(name)
    writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    if shape.rope_factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(shape.rope_factor)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps") or 1e-5))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32,
                          "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quantization])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_weights(writer: Any, gguf: Any, src: Path, config: dict[str, Any], shape: _LlamaShape,
                 quantization: str, progress: Callable[[int, int], None] | None) -> None:
    """Every tensor under its GGUF name, Q/K rows permuted for llama.cpp's rotary layout."""
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.layers)
    tensors = dict(_iter_safetensors(src))
    if config.get("tie_word_embeddings"):
        tensors.pop("lm_head.weight", None)  # llama.cpp reuses token_embd as the output
    total = len(tensors)
    for done, (hf_name, data) in enumerate(sorted(tensors.items()), start=1):
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise EngineError(
                f"{src}: tensor {hf_name!r} has no llama GGUF equivalent",
                hint="only llama-family models export to GGUF; merge adapters first")
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = _permute(data, shape.heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = _permute(data, shape.kv_heads)
        _add_tensor(writer, gguf, gguf_name, data, quantization)
        if progress is not None:
            progress(done, total)


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF llama Q/K rows (rotate-half pairs) → the interleaved pairs llama.cpp's RoPE uses."""
    rows = weights.shape[0]
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _add_tensor(writer: Any, gguf: Any, name: str, data: np.ndarray, quantization: str) -> None:
    data = np.ascontiguousarray(data, dtype=np.float32)
    # Norms and other 1-D tensors stay f32 (llama.cpp expects it); only matrices shrink.
    if data.ndim < 2 or quantization == "f32":
        writer.add_tensor(name, data)
    elif quantization == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[
            gguf.GGMLQuantizationType.Q8_0][0] == 0:
        q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        writer.add_tensor(name, data.astype(np.float16))


def _read_config(src: Path) -> dict[str, Any]:
    path = src / "config.json"
    if not path.is_file():
        raise EngineError(f"{src} is not a Hugging Face model folder (no config.json)",
                          hint="pass the folder that holds config.json and *.safetensors")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EngineError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    archs = set(config.get("architectures") or [])
    if config.get("model_type") not in ("llama", "mistral") and not archs & _LLAMA_ARCHS:
        raise EngineError(
            f"{src}: model type {config.get('model_type')!r} is not llama-family",
            hint="the GGUF exporter handles llama-family models (Llama, SmolLM, Mistral)")
    return config


def _iter_safetensors(src: Path) -> Iterator[tuple[str, np.ndarray]]:
    from safetensors import safe_open

    files = sorted(src.glob("*.safetensors"))
    if not files:
        pickled = [p.name for p in src.glob("*.bin")] + [p.name for p in src.glob("*.pt")]
        hint = ("weights load only from safetensors, never through pickle; re-save the model "
                "with save_pretrained(safe_serialization=True)") if pickled else None
        raise EngineError(f"{src}: no .safetensors weights found", hint=hint)
    for file in files:
        with safe_open(file, framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118  (safe_open is not a mapping)
                yield key, fh.get_tensor(key).float().numpy()


def _add_tokenizer(writer: Any, src: Path) -> None:
    tok_path = src / "tokenizer.json"
    if not tok_path.is_file():
        raise EngineError(f"{src}: no tokenizer.json",
                          hint="save the tokenizer beside the model (tokenizer.save_pretrained)")
    tok = json.loads(tok_path.read_text(encoding="utf-8"))
    tok_config = _read_json(src / "tokenizer_config.json")
    tokens = _vocab_list(tok)
    _build_bpe_fields(writer, src, tok, tok_config, tokens)
    template = _chat_template(src, tok_config)
    if template:
        writer.add_chat_template(template)


def vocab_fingerprint(tokens: list[str]) -> str:
    """SHA-256 of a vocabulary (tokens in id order): recognises SmolLM2's tokenizer."""
    return hashlib.sha256(json.dumps(tokens).encode("utf-8")).hexdigest()


def _vocab_list(tok: dict[str, Any]) -> list[str]:
    vocab: dict[str, int] = dict(tok["model"].get("vocab") or {})
    for added in tok.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    tokens = [""] * (max(vocab.values()) + 1 if vocab else 0)
    for text, idx in vocab.items():
        tokens[idx] = text
    return tokens


def _build_bpe_fields(writer: Any, src: Path, tok: dict[str, Any], tok_config: dict[str, Any],
                      tokens: list[str]) -> None:
    import gguf

    model = tok["model"]
    if model.get("type") != "BPE":
        raise EngineError(f"{src}: tokenizer type {model.get('type')!r} is not supported",
                          hint="the GGUF exporter writes byte-level BPE tokenizers (GPT-2 style)")
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    types = []
    for idx in range(len(tokens)):
        if idx in added:
            types.append(gguf.TokenType.CONTROL if added[idx].get("special")
                         else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    # llama.cpp picks its pre-tokenizer regex by name: SmolLM2's own for its vocabulary (the
    # bundled GGUF's fields are exactly these, a test checks it), else the generic GPT-2 one.
    pre = "smollm" if vocab_fingerprint(tokens) == SMOLLM2_VOCAB_SHA256 else "default"
    writer.add_tokenizer_pre(pre)
    writer.add_add_space_prefix(False)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    index = {t: i for i, t in enumerate(tokens)}
    special_ids = (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                   ("unk_token", writer.add_unk_token_id), ("pad_token", writer.add_pad_token_id))
    for field, adder in special_ids:
        value = tok_config.get(field)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in index:
            adder(index[value])
    writer.add_add_bos_token(False)


def _chat_template(src: Path, tok_config: dict[str, Any]) -> str | None:
    jinja = src / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = tok_config.get("chat_template")
    return template if isinstance(template, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EngineError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
