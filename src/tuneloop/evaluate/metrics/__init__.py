"""Quality metrics as plug-ins with one small interface, and the registry that finds them by name.

A metric is a class with a `name` and `score(prediction, reference, record, context)` returning a
float in [0, 1] (higher is better for every built-in metric) or None when it does not apply to an
example (recall@k without gold sources, groundedness without retrieval). Metrics that are cheaper
in bulk (embeddings, an LLM judge) also override `score_batch`. Parameters come from
`metrics[].params` in `tuneloop.yaml` as keyword arguments of the class.

    from tuneloop.evaluate.metrics import Metric, register

    @register
    class Shouting(Metric):
        name = "shouting"
        def score(self, prediction, reference, record, context):
            return float(prediction.isupper())

Third-party packages can also expose metric classes under the `tuneloop.metrics` entry point group.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from tuneloop.config import MetricConfig, TaskConfig
from tuneloop.errors import ConfigError

ENTRY_POINT_GROUP = "tuneloop.metrics"


@dataclass
class MetricContext:
    """What a metric may need beyond the texts: the task, the project, what was retrieved."""

    task: TaskConfig | None = None
    project: Any = None  # tuneloop.Project, for metrics that load models (judge, embeddings)
    # chunks the variant retrieved for this example: dicts with chunk_id, doc_id, source, text
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    retrieval_enabled: bool = False


@dataclass
class Sample:
    """One example to score: the variant's answer, the reference, the record and its context."""

    prediction: str
    reference: str
    record: dict[str, Any]
    context: MetricContext


class Metric:
    """Base class of quality metrics: override `score`, and `score_batch` when bulk is cheaper."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """The score of one example in [0, 1], or None when the metric does not apply to it."""
        raise NotImplementedError

    def score_batch(self, samples: Sequence[Sample]) -> list[float | None]:
        """Scores of many examples, in order; the default scores them one by one."""
        return [self.score(s.prediction, s.reference, s.record, s.context) for s in samples]

    def close(self) -> None:
        """Free what the metric loaded (models, engines)."""


def record_field(record: dict[str, Any], name: str) -> Any:
    """A field of an example: from its `metadata` (where datasets keep it), else the top level."""
    metadata = record.get("metadata") or {}
    return metadata[name] if name in metadata else record.get(name)


_REGISTRY: dict[str, type[Metric]] = {}
_loaded_entry_points = False


def register(metric: type[Metric]) -> type[Metric]:
    """Make a metric class available by its `name` in `tuneloop.yaml` (usable as a decorator)."""
    if not getattr(metric, "name", ""):
        raise ValueError(f"metric class {metric.__name__} needs a non-empty `name`")
    _REGISTRY[metric.name] = metric
    return metric


def available() -> dict[str, type[Metric]]:
    """Every registered metric class by name (built-ins and entry points)."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def create(config: MetricConfig, *, index: int | None = None) -> Metric:
    """Build the metric a `metrics[]` entry of `tuneloop.yaml` names, with its params."""
    classes = available()
    where = f"metrics[{index}]" if index is not None else "metric"
    cls = classes.get(config.name)
    if cls is None:
        raise ConfigError(
            f"tuneloop.yaml: {where}.name: unknown metric {config.name!r}; available: "
            f"{', '.join(classes)}",
            hint="register your own with tuneloop.evaluate.metrics.register",
        )
    accepted = _params_of(cls)
    unknown = sorted(set(config.params) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise ConfigError(
            f"tuneloop.yaml: {where}.params: metric {config.name!r} has no parameter "
            f"{', '.join(map(repr, unknown))}; allowed: {allowed}"
        )
    try:
        return cls(**config.params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tuneloop.yaml: {where}.params: {exc}") from None


def _params_of(cls: type[Metric]) -> list[str]:
    signature = inspect.signature(cls.__init__)
    return [p.name for p in signature.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _load_builtins() -> None:
    global _loaded_entry_points
    # Importing the modules registers their classes.
    from tuneloop.evaluate.metrics import judge, retrieval, semantic, structured, text  # noqa: F401

    if not _loaded_entry_points:
        _loaded_entry_points = True
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            register(entry.load())


__all__ = ["Metric", "MetricContext", "Sample", "available", "create", "record_field",
           "register"]
