"""The trainer's own pieces on a tiny model: the loss it computes on labelled positions only is
the usual causal-LM loss, and LoRA can be limited to the upper layers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneloop.config import TrainingConfig
from tuneloop.train.examples import IGNORE_INDEX
from tuneloop.train.packing import PackedCollator
from tuneloop.train.params import resolve_params
from tuneloop.train.sft import build_trainer, load_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneloop.engines.testing import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("models"), layers=4)


def _params(**overrides: object) -> dict:
    return resolve_params(TrainingConfig(), {"max_steps": 1, **overrides})


def _packed_batch() -> dict:
    """Two rows, each with two conversations; labels only on some "assistant" tokens."""
    rows = []
    for offset in (0, 40):
        ids = list(range(100 + offset, 130 + offset)) + list(range(300 + offset, 318 + offset))
        labels = [IGNORE_INDEX] * 20 + ids[20:30] + [IGNORE_INDEX] * 12 + ids[42:48]
        positions = list(range(30)) + list(range(18))
        rows.append({"input_ids": ids, "labels": labels, "position_ids": positions})
    rows[1] = {k: v[:40] for k, v in rows[1].items()}  # a shorter row: padding in the batch
    return PackedCollator(pad_token_id=0)(rows)


def test_loss_on_labelled_positions_equals_the_models_own_causal_lm_loss(
        tiny_model: Path, tmp_path: Path) -> None:
    params = _params(method="full")
    model = load_model(tiny_model, params)
    trainer = build_trainer(model, _tokenizer(tiny_model), [], [], params, tmp_path, [])
    batch = _packed_batch()
    batch.pop("num_tokens")
    model.eval()
    with torch.no_grad():
        reference = model(**batch).loss  # transformers: full logits, shifted labels, token mean
        ours = trainer.compute_loss(model, dict(batch))
        counted = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        ours_over_count = trainer.compute_loss(model, dict(batch), num_items_in_batch=counted)
    assert torch.isfinite(reference)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    assert ours_over_count.item() == pytest.approx(reference.item(), rel=1e-5)


def test_lora_layers_puts_adapters_on_the_upper_layers_only(tiny_model: Path) -> None:
    model = load_model(tiny_model, _params(lora_layers=1))
    adapted = {name.split(".layers.")[1].split(".")[0]
               for name, p in model.named_parameters() if p.requires_grad}
    assert adapted == {"3"}  # the last of 4 layers
    kinds = {name.split(".")[-4] for name, p in model.named_parameters() if p.requires_grad}
    assert {"q_proj", "v_proj", "down_proj"} <= kinds  # "all-linear" still means every linear

    everywhere = load_model(tiny_model, _params())
    layers = {name.split(".layers.")[1].split(".")[0]
              for name, p in everywhere.named_parameters() if p.requires_grad}
    assert layers == {"0", "1", "2", "3"}


def _tokenizer(model_dir: Path):
    from tuneloop.train.sft import load_tokenizer

    return load_tokenizer(model_dir)


def test_parity_check_agrees_with_a_faithful_export_and_catches_a_wrong_one(
        tmp_path: Path) -> None:
    from tuneloop.engines.testing import tiny_gguf, tiny_llama
    from tuneloop.train.parity import check_parity

    model = tiny_llama(tmp_path, seed=5)
    faithful = tiny_gguf(tmp_path, seed=5, quantization="f32")
    other = tiny_gguf(tmp_path, seed=6, quantization="f32")
    prompts = [[{"role": "user", "content": text}]
               for text in ("Where are my invoices?", "Reset my password please",
                            "Sync is stuck at 99% on the Linux client since the update")]
    good = check_parity(model, model, faithful, prompts, max_new_tokens=12, lora=False)
    bad = check_parity(model, model, other, prompts, max_new_tokens=12, lora=False)
    assert good.prompts == bad.prompts == 3
    assert good.agreement >= 0.9, good.samples  # batched transformers vs llama.cpp, same weights
    assert bad.agreement < 0.5, bad.samples
    assert good.samples[0]["adapter"] and good.samples[0]["export"]
