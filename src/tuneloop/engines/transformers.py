"""The transformers engine on a Hugging Face model folder, optionally with a PEFT adapter.

Weights load from safetensors only (`use_safetensors=True`; an adapter must be
`adapter_model.safetensors`), never through pickle. `stream` runs its own decode loop over the
KV cache, so time to first token is measured exactly and closing the stream stops generation;
`batch` runs real batched generation with left padding.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tuneloop.engines._common import StopMatcher, check_context, validate_request
from tuneloop.engines.base import Completion, Delta, Engine, FinishReason, GenerationParams, Message
from tuneloop.engines.templates import ChatTemplate, special_texts
from tuneloop.errors import EngineError, NotFound


class TransformersEngine(Engine):
    """Chat with a Hugging Face causal LM (plus optional PEFT adapter) on the CPU."""

    kind = "transformers"

    def __init__(self, model_dir: str | Path, *, adapter_dir: str | Path | None = None,
                 name: str | None = None, dtype: str = "float32") -> None:
        """Load the model folder (config.json + *.safetensors + tokenizer) and the adapter."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise NotFound(f"no Hugging Face model folder at {folder} (config.json is missing)")
        if not any(folder.glob("*.safetensors")):
            raise EngineError(f"{folder} has no .safetensors weights",
                              hint="weights load only from safetensors, never through pickle; "
                              "re-save with save_pretrained(safe_serialization=True)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(
                folder, use_safetensors=True, dtype=getattr(torch, dtype))
        except (OSError, ValueError) as exc:
            raise EngineError(f"transformers could not load {folder}: {exc}") from exc
        if adapter_dir is not None:
            model = _with_adapter(model, Path(adapter_dir))
        self.model = model.eval()
        self.model_dir = folder
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        self.model_name = name or folder.name
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        source = self.tokenizer.chat_template
        if not source:
            raise EngineError(f"{folder} has no chat template",
                              hint="save the tokenizer with its chat_template")
        self.template = ChatTemplate(source, bos_token=self.tokenizer.bos_token or "",
                                     eos_token=self.tokenizer.eos_token or "",
                                     special_tokens=special_texts(self.tokenizer),
                                     origin=str(folder))
        eos = model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos])
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = next(iter(self._eos_ids))
        # transformers renamed `past_key_values` to `cache` during 5.x: use what this one takes
        base_of = getattr(model, "get_base_model", None)  # a PEFT model wraps the base model
        inner = base_of() if base_of is not None else model
        self._cache_arg = ("cache" if "cache" in inspect.signature(inner.forward).parameters
                           else "past_key_values")
        # One generation at a time: torch already spreads each one over every core.
        self._lock = threading.Lock()

    def _decode(self, tokens: list[int]) -> str:
        """The text of generated tokens, special tokens left out."""
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    # -- the Engine interface ---------------------------------------------------------------

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        """Text deltas as tokens are decoded; the request is checked before this returns."""
        started = time.perf_counter()
        validate_request(messages, params)
        prompt = self._prompt_ids(messages)
        check_context(len(prompt), self.context_length, self.model_name)
        return self._generate(prompt, params, started)

    def batch(self, conversations: Sequence[Sequence[Message]],
              params: GenerationParams) -> list[Completion]:
        """All conversations in one left-padded batched `generate` call."""
        import torch

        started = time.perf_counter()
        prompts = []
        for messages in conversations:
            validate_request(messages, params)
            ids = self._prompt_ids(messages)
            check_context(len(ids), self.context_length, self.model_name)
            prompts.append(ids)
        if not prompts:
            return []
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self._pad_id] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        budget = min(params.max_tokens, self.context_length - width)
        first_step: list[float] = []

        def note_first_step(_ids: Any, scores: Any) -> Any:
            if not first_step:
                first_step.append(time.perf_counter() - started)
            return scores

        kwargs = self._sampling_kwargs(params)
        with self._lock, torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=budget,
                pad_token_id=self._pad_id, eos_token_id=sorted(self._eos_ids),
                logits_processor=[note_first_step], **kwargs)
        total = time.perf_counter() - started
        results = []
        for row, prompt in zip(out[:, width:].tolist(), prompts, strict=True):
            tokens: list[int] = []
            finish: FinishReason = "length"
            for token in row:
                if token in self._eos_ids:
                    finish = "stop"
                    break
                tokens.append(token)
            text = self._decode(tokens)
            stopper = StopMatcher(params.stop, repeats=params.stop_repeats)
            cut = stopper.feed(text) + stopper.flush()
            if stopper.stopped:
                finish = "stop"
            results.append(Completion(
                text=cut, finish_reason=finish, prompt_tokens=len(prompt),
                completion_tokens=len(tokens), ttft_s=first_step[0] if first_step else total,
                total_s=total, model=self.model_name, extra={"batch_size": len(prompts)}))
        return results

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens once the chat template is applied."""
        return len(self._prompt_ids(messages))

    def close(self) -> None:
        """Drop the model so its memory can be freed."""
        self.model = None

    # -- internals ----------------------------------------------------------------------------

    def _prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        if self.model is None:
            raise EngineError(f"the engine for {self.model_name} is closed")
        text = self.template.render(messages)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @staticmethod
    def _sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
        if params.temperature == 0:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": float(params.temperature),
                "top_p": float(params.top_p), "top_k": None}

    def _generate(self, prompt: list[int], params: GenerationParams,
                  started: float) -> Iterator[Delta]:
        import torch

        budget = min(params.max_tokens, self.context_length - len(prompt))
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        stopper = StopMatcher(params.stop, repeats=params.stop_repeats)
        produced: list[int] = []
        pieces: list[str] = []
        emitted = ""  # decoded text so far: decode the whole tail so multi-byte text is right
        finish: FinishReason = "length"
        ttft = 0.0
        with self._lock, torch.inference_mode():
            out = self.model(torch.tensor([prompt]), use_cache=True)
            past = _cache_of(out)
            for _ in range(budget):
                token = _pick(out.logits[0, -1], params, generator)
                if not produced:
                    ttft = time.perf_counter() - started
                if token in self._eos_ids:
                    finish = "stop"
                    break
                produced.append(token)
                decoded = self._decode(produced)
                # a trailing U+FFFD is an incomplete UTF-8 sequence: wait for the next token
                if not decoded.endswith("\ufffd"):
                    piece = stopper.feed(decoded[len(emitted):])
                    emitted = decoded
                    if piece:
                        pieces.append(piece)
                        yield Delta(piece)
                    if stopper.stopped:
                        finish = "stop"
                        break
                if len(produced) >= budget:
                    break
                out = self.model(torch.tensor([[token]]), use_cache=True,
                                 **{self._cache_arg: past})
                past = _cache_of(out)
        if not stopper.stopped:
            decoded = self._decode(produced)
            tail = stopper.feed(decoded[len(emitted):]) + stopper.flush()
            if tail:
                pieces.append(tail)
                yield Delta(tail)
        total = time.perf_counter() - started
        yield Delta("", completion=Completion(
            text="".join(pieces), finish_reason=finish, prompt_tokens=len(prompt),
            completion_tokens=len(produced), ttft_s=ttft or total, total_s=total,
            model=self.model_name))


def _cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _pick(logits: Any, params: GenerationParams, generator: Any) -> int:
    """Greedy at temperature 0; otherwise temperature + nucleus (top-p) sampling."""
    import torch

    if params.temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / float(params.temperature), dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


def _with_adapter(model: Any, adapter: Path) -> Any:
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise NotFound(f"no PEFT adapter at {adapter} (adapter_config.json is missing)")
    if not (adapter / "adapter_model.safetensors").is_file():
        raise EngineError(f"{adapter} has no adapter_model.safetensors",
                          hint="adapters load only from safetensors, never through pickle")
    try:
        return PeftModel.from_pretrained(model, adapter, use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        raise EngineError(f"could not apply the adapter in {adapter}: {exc}") from exc
