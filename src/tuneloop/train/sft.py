"""Supervised fine-tuning on transformers' Trainer: the model (LoRA through PEFT, or full), the
training arguments derived from the run's parameters, and a thin Trainer subclass that counts
the real (non-padding) tokens it trains on.

Everything that decides the result (seed, data order, packing) is a pure function of the
parameters, so a resumed run retraces an uninterrupted one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    EarlyStoppingCallback,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from tuneloop.errors import TrainingError
from tuneloop.train.examples import IGNORE_INDEX


class TokenCountingTrainer(Trainer):
    """Trainer that counts real training tokens (the collators report them as `num_tokens`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_seen = 0
        # our compute_loss takes the step's labelled-token count: Trainer then counts it over
        # all accumulated micro-batches, so each token weighs the same whatever its batch
        self.model_accepts_loss_kwargs = True

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """Causal-LM loss computed only where there is something to learn.

        Only the assistant's tokens carry labels (a third of a support conversation), so the
        vocabulary projection, the largest single matrix of a small model, runs on the
        positions that predict a labelled token and nowhere else (`logits_to_keep` with a
        boolean mask). The loss is the same token-mean cross-entropy Trainer computes, each
        token scaled by its `loss_weights` in training when the rows carry them (copied facts,
        `examples.copy_weights`); the validation loss is never weighted.
        """
        tokens = inputs.pop("num_tokens", 0)
        weights = inputs.pop("loss_weights", None)
        if model.training:
            self.tokens_seen += int(tokens)
        labels = inputs.pop("labels")
        targets = labels[:, 1:]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = targets != IGNORE_INDEX
        outputs = model(**inputs, logits_to_keep=keep)
        wanted = targets[targets != IGNORE_INDEX]
        losses = torch.nn.functional.cross_entropy(outputs.logits.float(), wanted,
                                                   reduction="none")
        if weights is not None and model.training:  # validation loss stays plain
            losses = losses * weights[:, 1:][targets != IGNORE_INDEX].to(losses.dtype)
        loss = losses.sum()
        # With accumulation, Trainer counts the labelled tokens of the whole optimizer step
        # and the loss is already normalised for it; otherwise it is a per-batch mean.
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        if num_items_in_batch is not None:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        else:
            loss = loss / max(int(wanted.numel()), 1)
        return (loss, outputs) if return_outputs else loss


def load_tokenizer(base_dir: Path) -> Any:
    """The base model's tokenizer, with a pad token (its end-of-turn token when it has none)."""
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base_dir: Path, params: dict[str, Any]) -> Any:
    """The base model in float32 on CPU, wrapped with LoRA adapters when `method` is "lora"."""
    torch.manual_seed(params["seed"])  # LoRA's initial weights come from the global generator
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32,
                                                          attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the base model from {base_dir}: {exc}",
                            hint="pass --base with a Hugging Face model folder") from None
    model.config.use_cache = False
    if params["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        targets = params["lora_target_modules"]
        layers = _upper_layers(model, params.get("lora_layers"))
        if layers is not None and isinstance(targets, str):
            targets = _linear_names(model)  # PEFT takes a layer subset only with named targets
        lora = LoraConfig(r=int(params["lora_r"]), lora_alpha=int(params["lora_alpha"]),
                          lora_dropout=float(params["lora_dropout"]), target_modules=targets,
                          layers_to_transform=layers, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    return model


def _upper_layers(model: Any, count: int | None) -> list[int] | None:
    """The indices of the last `count` decoder layers (None: all layers)."""
    total = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    if not count or not total or count >= total:
        return None
    return list(range(total - count, total))


def _linear_names(model: Any) -> list[str]:
    """What "all-linear" means in PEFT: every linear layer's name except the output head."""
    output = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not output})


def training_arguments(params: dict[str, Any], output_dir: Path, *, has_eval: bool,
                       mlflow: bool) -> TrainingArguments:
    """Trainer's arguments from the run's parameters (config merged with overrides)."""
    early = has_eval and params.get("early_stopping_patience")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    eval_steps = int(params["eval_steps"])
    save_steps = int(params["save_steps"])
    if early and save_steps % eval_steps:
        raise TrainingError(
            f"early stopping keeps the best checkpoint, so save_steps ({save_steps}) must be a "
            f"multiple of eval_steps ({eval_steps})",
            hint="set training.save_steps to a multiple of training.eval_steps in tuneloop.yaml")
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=float(params["epochs"]),
        max_steps=int(params.get("max_steps") or -1),
        per_device_train_batch_size=int(params["batch_size"]),
        per_device_eval_batch_size=int(params["batch_size"]),
        prediction_loss_only=True,  # evaluation needs the loss; keeping logits costs GBs
        gradient_accumulation_steps=int(params["gradient_accumulation"]),
        learning_rate=float(params["learning_rate"]),
        lr_scheduler_type=params["lr_scheduler"],
        warmup_steps=float(params["warmup_ratio"]),  # a float below 1 is a ratio of all steps
        weight_decay=0.0,
        logging_steps=1,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        load_best_model_at_end=bool(early),
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        restore_callback_states_from_checkpoint=True,
        seed=int(params["seed"]),
        data_seed=int(params["seed"]),
        train_sampling_strategy="random" if params["packing"] else "group_by_length",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        bf16=use_bf16(params.get("precision", "auto")),
        report_to=["mlflow"] if mlflow else "none",
        run_name=params.get("run_name"),
        disable_tqdm=True,
        save_only_model=False,
        ddp_backend="gloo" if distributed and not torch.cuda.is_available() else None,
        ddp_find_unused_parameters=False,
    )


def use_bf16(precision: str) -> bool:
    """Whether to train with bfloat16 autocast: "auto" where the hardware computes it natively.

    On a CPU without native bfloat16 instructions, autocast emulates it and is slower than
    float32, so "auto" keeps float32 there.
    """
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return native_cpu_bf16()


def native_cpu_bf16() -> bool:
    """True when the CPU has bfloat16 instructions (AVX512-BF16 or AMX-BF16), read from the
    flags Linux reports; False elsewhere."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def build_trainer(model: Any, tokenizer: Any, train_rows: list[dict], eval_rows: list[dict],
                  params: dict[str, Any], output_dir: Path,
                  callbacks: list[TrainerCallback]) -> TokenCountingTrainer:
    """A ready-to-run `TokenCountingTrainer` on already tokenised (and packed) rows."""
    from tuneloop.train.packing import PackedCollator, PaddedCollator

    collator_class = PackedCollator if params["packing"] else PaddedCollator
    mlflow = bool(os.environ.get("MLFLOW_TRACKING_URI"))
    if mlflow:
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:
            raise TrainingError("MLFLOW_TRACKING_URI is set but mlflow is not installed",
                                hint="pip install 'tuneloop[mlflow]', or unset "
                                     "MLFLOW_TRACKING_URI")
    args = training_arguments(params, output_dir, has_eval=bool(eval_rows), mlflow=mlflow)
    if args.load_best_model_at_end:
        callbacks = [*callbacks,
                     EarlyStoppingCallback(int(params["early_stopping_patience"]))]
    trainer = TokenCountingTrainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_rows or None,
        data_collator=collator_class(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    # our progress callback reports instead; Trainer's printer would dump raw dicts to stdout
    trainer.remove_callback(PrinterCallback)
    return trainer
