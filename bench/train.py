"""Training throughput: `tuneloop train` (packed rows) against what a user would pick instead, on
the same data, model and LoRA settings, measured in the same run:

- a plain transformers Trainer + PEFT loop (one conversation per row, padded per batch);
- TRL's `SFTTrainer` with padding-free packing (best-fit decreasing) and assistant-only loss.

Throughput is real (non-padding) training tokens per second of `trainer.train()`; the goal is
tuneloop / TRL >= 1.0.

    .venv/bin/python bench/train.py            # the bundled SmolLM2-135M
    .venv/bin/python bench/train.py --quick    # a tiny random llama, a few steps
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("TUNELOOP_DATABASE_URL", None)

from rich.console import Console
from rich.table import Table

GOAL_RATIO = 1.0
# SmolLM2's ChatML template with `{% generation %}` markers around the assistant's reply (and its
# end-of-turn token), which TRL's assistant-only loss needs; it renders exactly the same text.
TRAINING_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\n' }}{% else %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TOPICS = ["password reset", "invoice download", "sync conflict", "SSO setup", "refund",
          "storage quota", "two-factor login", "sharing link", "offline mode", "webhooks"]


def records(n: int, seed: int = 0) -> list[dict]:
    """Support-style conversations of very different lengths, as real data has."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        topic = rnd.choice(TOPICS)
        question = f"I have a problem with {topic}. " + "It started yesterday. " * rnd.randint(0, 8)
        answer = (f"For {topic}, open Settings and follow the steps. "
                  + "Then check the status page and retry. " * rnd.randint(0, 14))
        out.append({"id": str(i), "metadata": {}, "subject": None,
                    "messages": [{"role": "user", "content": question},
                                 {"role": "assistant", "content": answer}]})
    return out


def baseline(model_dir: Path, data: list[dict], params: dict, out: Path) -> float:
    """Plain Trainer + PEFT: one conversation per row, padded per batch."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    for r in data:
        ids = tokenizer.apply_chat_template(r["messages"], tokenize=False)
        ids = tokenizer(ids, add_special_tokens=False)["input_ids"][: params["max_seq_length"]]
        rows.append({"input_ids": ids})
    seen = [0]

    def collate(batch: list[dict]) -> dict:
        width = max(len(b["input_ids"]) for b in batch)
        ids = [b["input_ids"] + [tokenizer.pad_token_id] * (width - len(b["input_ids"]))
               for b in batch]
        mask = [[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch]
        labels = [[t if m else -100 for t, m in zip(i, k, strict=True)]
                  for i, k in zip(ids, mask, strict=True)]
        seen[0] += sum(map(sum, mask))
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
                "labels": torch.tensor(labels)}

    torch.manual_seed(params["seed"])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=params["lora_r"], lora_alpha=params["lora_alpha"],
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=str(out), max_steps=params["max_steps"],
                             per_device_train_batch_size=params["batch_size"],
                             learning_rate=params["learning_rate"], save_strategy="no",
                             report_to="none", disable_tqdm=True, use_cpu=True,
                             bf16=params["precision"] == "bf16",
                             remove_unused_columns=False, logging_steps=10**6,
                             seed=params["seed"])
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    return seen[0] / (time.perf_counter() - started)


def trl_sft(model_dir: Path, data: list[dict], params: dict, out: Path) -> float:
    """TRL's SFTTrainer: conversations packed padding-free, loss on the assistant turns only."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sample = data[0]["messages"]
    same = tokenizer.apply_chat_template(sample, tokenize=False)
    tokenizer.chat_template = TRAINING_TEMPLATE
    assert tokenizer.apply_chat_template(sample, tokenize=False) == same, "template differs"
    torch.manual_seed(params["seed"])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = SFTConfig(output_dir=str(out), max_steps=params["max_steps"],
                       per_device_train_batch_size=params["batch_size"],
                       learning_rate=params["learning_rate"], max_length=params["max_seq_length"],
                       packing=True, packing_strategy="bfd", padding_free=True,
                       assistant_only_loss=True, save_strategy="no", report_to="none",
                       # TRL turns recomputation on by default; the other loops do not use it.
                       gradient_checkpointing=False,
                       bf16=params["precision"] == "bf16",
                       disable_tqdm=True, use_cpu=True, logging_steps=10**6, seed=params["seed"])
    trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer,
                         train_dataset=Dataset.from_list([{"messages": r["messages"]}
                                                          for r in data]),
                         peft_config=LoraConfig(r=params["lora_r"],
                                                lora_alpha=params["lora_alpha"],
                                                target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    trainer.remove_callback(PrinterCallback)
    collate, seen = trainer.data_collator, [0]

    def counting(batch: list[dict]) -> dict:
        # Padding-free: every position of the flattened batch is a real token.
        out = collate(batch)
        seen[0] += int(out["input_ids"].numel())
        return out

    trainer.data_collator = counting
    started = time.perf_counter()
    trainer.train()
    return seen[0] / (time.perf_counter() - started)


def ours(model_dir: Path, data: list[dict], params: dict, root: Path) -> float:
    """`tuneloop train` through its Python entry point, on a dataset version."""
    from tuneloop import Project
    from tuneloop.data.versions import publish
    from tuneloop.train.run import train

    project = Project.init(root / "proj")
    staging = project.state_dir / "staging"
    staging.mkdir(parents=True)
    (staging / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    for split in ("validation", "test"):
        (staging / f"{split}.jsonl").write_text("")
    (project.state_dir / "datasets" / "bench").mkdir(parents=True)
    version = publish(project, staging, {"name": "bench", "id": "b1", "tier": 1, "roots": [],
                                         "approvals": [], "counts": {"train": len(data)}},
                      created_by="bench")
    result = train(project, project.actor(), version.ref, base=str(model_dir), export=False,
                   overrides={**params, "save_steps": 10**6, "eval_steps": 10**6,
                              "warmup_ratio": 0.0})
    project.close()
    return result.metrics["tokens_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    console = Console()
    from tuneloop.train.sft import use_bf16  # all three loops train at the same precision

    root = Path(tempfile.mkdtemp(prefix="tuneloop-bench-train-"))
    if args.quick:
        from tuneloop.engines.testing import tiny_llama

        model_dir, name = tiny_llama(root), "tiny random llama"
    else:
        from tuneloop.engines.bundled import bundled_hf_dir

        model_dir, name = bundled_hf_dir(root / "models"), "SmolLM2-135M (bundled)"
    params = {"max_steps": args.steps or (6 if args.quick else 12), "batch_size": 4,
              "max_seq_length": 256, "learning_rate": 2e-4, "lora_r": 16, "lora_alpha": 32,
              "seed": 0, "precision": "bf16" if use_bf16("auto") else "fp32"}
    data = records(64)
    with console.status("baseline: Trainer + PEFT, padded rows"):
        base_rate = baseline(model_dir, data, params, root / "baseline")
    with console.status("TRL SFTTrainer, padding-free packing, assistant-only loss"):
        trl_rate = trl_sft(model_dir, data, params, root / "trl")
    with console.status("tuneloop train, packed rows"):
        our_rate = ours(model_dir, data, params, root)
    table = Table(title=f"training throughput on {name}, {params['max_steps']} steps of "
                        f"{params['batch_size']} rows, LoRA r={params['lora_r']}, "
                        f"{params['precision']}")
    for column in ("loop", "real tokens/s", "vs padded", "tuneloop vs this"):
        table.add_column(column, justify="right")
    table.add_row("Trainer + PEFT, padded (baseline)", f"{base_rate:.0f}", "1.00",
                  f"{our_rate / base_rate:.2f}")
    table.add_row("TRL SFTTrainer, padding-free packing, assistant-only loss",
                  f"{trl_rate:.0f}", f"{trl_rate / base_rate:.2f}", f"{our_rate / trl_rate:.2f}")
    table.add_row("tuneloop train, packed", f"{our_rate:.0f}", f"{our_rate / base_rate:.2f}", "")
    console.print(table)
    import trl

    print(json.dumps({"bench": "train", "model": name, "quick": args.quick,
                      "steps": params["max_steps"], "precision": params["precision"],
                      "trl_version": trl.__version__,
                      "baseline_tokens_per_s": round(base_rate, 1),
                      "trl_tokens_per_s": round(trl_rate, 1),
                      "tuneloop_tokens_per_s": round(our_rate, 1),
                      "tokens_per_s_ratio": round(our_rate / base_rate, 3),
                      "tokens_per_s_ratio_vs_trl": round(our_rate / trl_rate, 3),
                      "goal_tokens_per_s_ratio": GOAL_RATIO,
                      "goal_tokens_per_s_ratio_vs_trl": GOAL_RATIO}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
