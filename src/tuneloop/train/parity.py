"""Parity check: does the exported GGUF answer like the adapter that was trained and evaluated?

The same prompts go, greedy, through the adapter on transformers and through the GGUF on
llama.cpp. Both sides get the very same prompt token ids (rendered once with the base model's
chat template), so a disagreement can only come from the weights: a bad merge, a lossy
quantisation, a broken conversion. Agreement per prompt is the share of the longer answer's
tokens that both answers have in common from the start (greedy decoding never recovers after a
first difference, so the common prefix is what counts); the check's figure is the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ParityReport:
    """Agreement between the adapter (transformers) and the export (llama.cpp)."""

    agreement: float
    exact: float
    prompts: int
    samples: list[dict[str, Any]] = field(default_factory=list)


def prompt_messages(records: list[dict[str, Any]], system_prompt: str | None,
                    limit: int) -> list[list[dict[str, str]]]:
    """The conversations up to (not including) their last assistant turn, as parity prompts."""
    prompts = []
    for record in records:
        messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        if not messages:
            continue
        if system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system_prompt})
        prompts.append(messages)
        if len(prompts) == limit:
            break
    return prompts


def check_parity(base_dir: Path, adapter_dir: Path, gguf_path: Path,
                 prompts: list[list[dict[str, str]]], *, max_new_tokens: int = 32,
                 lora: bool = True) -> ParityReport:
    """Generate greedily on both sides and measure how far the answers agree."""
    from tuneloop.train.sft import load_tokenizer

    tokenizer = load_tokenizer(adapter_dir)
    eos = tokenizer.eos_token_id
    prompt_ids = [
        tokenizer(tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False)["input_ids"]
        for m in prompts
    ]
    ours = _transformers_answers(base_dir, adapter_dir, prompt_ids, max_new_tokens, eos, lora)
    served = _llama_cpp_answers(gguf_path, prompt_ids, max_new_tokens, eos)
    scores, exact, samples = [], 0, []
    for a, b in zip(ours, served, strict=True):
        common = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            common += 1
        longest = max(len(a), len(b))
        scores.append(common / longest if longest else 1.0)
        exact += a == b
        samples.append({"adapter": tokenizer.decode(a), "export": tokenizer.decode(b)})
    n = len(prompts)
    return ParityReport(sum(scores) / n if n else 1.0, exact / n if n else 1.0, n, samples)


def _transformers_answers(base_dir: Path, adapter_dir: Path, prompt_ids: list[list[int]],
                          max_new_tokens: int, eos: int, lora: bool) -> list[list[int]]:
    import torch
    from transformers import AutoModelForCausalLM

    source = base_dir if lora else adapter_dir
    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    if lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    answers = []
    with torch.inference_mode():
        for ids in prompt_ids:
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                 dtype=torch.long), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=eos, pad_token_id=eos)
            answer = out[0, len(ids):].tolist()
            answers.append(answer[: answer.index(eos)] if eos in answer else answer)
    return answers


def _llama_cpp_answers(gguf_path: Path, prompt_ids: list[list[int]], max_new_tokens: int,
                       eos: int) -> list[list[int]]:
    from llama_cpp import Llama

    longest = max((len(p) for p in prompt_ids), default=0) + max_new_tokens + 8
    from tuneloop.engines.llama_cpp import FLASH_ATTENTION

    llm = Llama(model_path=str(gguf_path), n_ctx=max(512, longest), n_threads=2, seed=0,
                verbose=False, logits_all=False, flash_attn=FLASH_ATTENTION)
    answers = []
    try:
        for ids in prompt_ids:
            answer: list[int] = []
            for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0,
                                      reset=True):
                if token in (eos, llm.token_eos()) or len(answer) >= max_new_tokens:
                    break
                answer.append(token)
            answers.append(answer)
    finally:
        llm.close()
    return answers
