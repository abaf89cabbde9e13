"""Scoring stored outputs with the project's metrics (each metric sees every output at once, so
metrics with a batch form — embeddings, the LLM judge — batch across variants)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneloop.config import MetricConfig, TaskConfig
from tuneloop.evaluate import metrics as metrics_mod
from tuneloop.evaluate.metrics import MetricContext, Sample
from tuneloop.evaluate.runner import Example
from tuneloop.evaluate.summary import Output


def score_outputs(outputs: Sequence[Output], examples: dict[str, Example],
                  configs: Sequence[MetricConfig], *, task: TaskConfig | None = None,
                  project: Any = None,
                  retrieved: dict[tuple[str, str], list[dict[str, Any]]] | None = None,
                  retrieval_enabled: dict[str, bool] | None = None) -> list[str]:
    """Fill `output.scores[metric]` for every output and metric (None where it does not apply).

    `retrieved[(variant, record_id)]` are the chunks a RAG variant was given for that example.
    Returns notes for the reader (for example, judge replies that had no usable grade).
    """
    retrieved = retrieved or {}
    retrieval_enabled = retrieval_enabled or {}
    samples = []
    for out in outputs:
        example = examples[out.record_id]
        context = MetricContext(task=task, project=project,
                                retrieved=retrieved.get((out.variant, out.record_id), []),
                                retrieval_enabled=retrieval_enabled.get(out.variant, False))
        samples.append(Sample(out.output, out.reference, example.record, context))
    notes: list[str] = []
    for index, config in enumerate(configs):
        metric = metrics_mod.create(config, index=index)
        try:
            values = metric.score_batch(samples)
        finally:
            metric.close()
        for out, value in zip(outputs, values, strict=True):
            out.scores[config.name] = None if value is None else float(value)
        unparsed = getattr(metric, "unparsed", 0)
        if unparsed:
            notes.append(f"{config.name}: {unparsed} of {len(samples)} judge replies had no "
                         "usable grade and were left unscored")
    return notes
