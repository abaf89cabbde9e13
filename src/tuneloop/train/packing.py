"""Batches for training: packed rows (several conversations per row) or padded rows.

Packing puts whole conversations side by side in rows of at most `max_length` tokens (best fit,
longest first), so little compute goes to padding. The conversations in a row must not see each
other: the collator restarts `position_ids` at 0 for every conversation and passes no attention
mask, and transformers then builds a block-diagonal causal mask from the position ids
(`masking_utils.find_packed_sequence_indices`), on CPU with SDPA or eager attention alike. The
first token of every conversation carries no label, so no loss crosses a boundary either.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from tuneloop.train.examples import IGNORE_INDEX, TokenizedExample


@dataclass
class PackedRow:
    """Several conversations laid end to end, with per-conversation positions."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    example_ids: list[str]
    weights: list[float] | None = None  # per-token loss weights, when the examples have any

    def __len__(self) -> int:
        return len(self.input_ids)


def pack(examples: list[TokenizedExample], max_length: int) -> list[PackedRow]:
    """Pack conversations into rows of at most `max_length` tokens, best fit decreasing.

    Deterministic: the same examples in the same order give the same rows, which checkpoint
    resume relies on. No conversation is split across rows.
    """
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]), i))
    rows: list[list[int]] = []  # member indices per row
    free: list[tuple[int, int]] = []  # (free space, row index), kept sorted
    for i in order:
        size = min(len(examples[i]), max_length)
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            space, row = free.pop(at)
            rows[row].append(i)
            if space - size > 0:
                bisect.insort(free, (space - size, row))
        else:
            rows.append([i])
            if max_length - size > 0:
                bisect.insort(free, (max_length - size, len(rows) - 1))
    weighted = any(ex.weights is not None for ex in examples)
    packed = []
    for members in rows:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        weights: list[float] = []
        for i in sorted(members):  # original order inside a row: stable across runs
            ex = examples[i]
            ids += ex.input_ids
            labels += [IGNORE_INDEX, *ex.labels[1:]]
            positions += list(range(len(ex)))
            weights += ex.weights[:len(ex)] if ex.weights is not None else [1.0] * len(ex)
        packed.append(PackedRow(ids, labels, positions, [examples[i].id for i in sorted(members)],
                                weights if weighted else None))
    return packed


class PackedCollator:
    """Stacks packed rows, padding the short ones with a trailing dummy sequence of pad tokens.

    The padding gets its own positions (0, 1, ...), so it forms a separate block of the mask
    and never mixes with real tokens; its labels are ignored. `num_tokens` counts real tokens.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 8) -> None:
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = _round_up(max(len(r["input_ids"]) for r in rows), self.multiple)
        ids, labels, positions = [], [], []
        for r in rows:
            pad = width - len(r["input_ids"])
            ids.append(r["input_ids"] + [self.pad_token_id] * pad)
            labels.append(r["labels"] + [IGNORE_INDEX] * pad)
            positions.append(r["position_ids"] + list(range(pad)))
        batch = {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "position_ids": torch.tensor(positions),
            "num_tokens": sum(len(r["input_ids"]) for r in rows),
        }
        return _with_weights(batch, rows, width)


class PaddedCollator:
    """One conversation per row, right-padded with an attention mask (the unpacked path)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 8) -> None:
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = _round_up(max(len(r["input_ids"]) for r in rows), self.multiple)
        ids, labels, mask = [], [], []
        for r in rows:
            pad = width - len(r["input_ids"])
            ids.append(r["input_ids"] + [self.pad_token_id] * pad)
            labels.append(r["labels"] + [IGNORE_INDEX] * pad)
            mask.append([1] * len(r["input_ids"]) + [0] * pad)
        batch = {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
            "num_tokens": sum(len(r["input_ids"]) for r in rows),
        }
        return _with_weights(batch, rows, width)


def _with_weights(batch: dict[str, Any], rows: list[dict[str, Any]], width: int) -> dict:
    """Add `loss_weights` (padding weighs 1, its labels are ignored anyway) when rows carry any."""
    import torch

    if any(r.get("weights") is not None for r in rows):
        batch["loss_weights"] = torch.tensor(
            [(r.get("weights") or [1.0] * len(r["input_ids"]))
             + [1.0] * (width - len(r["input_ids"])) for r in rows])
    return batch


def as_rows(examples: list[TokenizedExample], max_length: int, packing: bool) -> list[dict]:
    """The training rows as plain dicts, the form Trainer's data loader and samplers expect."""
    if packing:
        return [{"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids,
                 **({"weights": r.weights} if r.weights is not None else {})}
                for r in pack(examples, max_length)]
    return [{"input_ids": e.input_ids, "labels": e.labels,
             **({"weights": e.weights[:len(e)]} if e.weights is not None else {})}
            for e in examples]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n
