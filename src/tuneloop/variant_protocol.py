"""The variant seam, typed: what evaluation and serving need of a variant, and what crosses it.

`tuneloop.variants.Variant` is the one implementation; the protocols say which part of it each
caller relies on, so a test double (a scripted variant in the evaluation tests, a loader's
variant in the server tests) is checked against the same contract as the real one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tuneloop.engines.base import Completion, Delta, Engine, GenerationParams, Message
from tuneloop.governance.tiers import Actor, Resource

if TYPE_CHECKING:
    from tuneloop.rag.retrieve import Hit


@dataclass
class Prepared:
    """The prompt a variant will send, with the retrieval that shaped it."""

    messages: list[Message]
    citations: list[dict[str, Any]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    # each cited source's text as the model sees it, parallel to `citations`
    context: list[str] = field(default_factory=list)


@dataclass
class VariantResult:
    """One answer from a variant: the engine's completion and the sources it was given."""

    completion: Completion
    citations: list[dict[str, Any]]
    hits: list[Hit]
    messages: list[Message]
    context: list[str] = field(default_factory=list)  # cited sources' text as shown


class RunnableVariant(Protocol):
    """What evaluation needs of a variant: a name, its settings, and one answer at a time."""

    @property
    def name(self) -> str: ...

    @property
    def uses_retrieval(self) -> bool: ...

    def params(self, **overrides: Any) -> GenerationParams: ...

    def run(self, messages: Sequence[Message], actor: Actor,
            params: GenerationParams | None = None) -> VariantResult: ...


class ServedVariant(RunnableVariant, Protocol):
    """What serving needs as well: the prompt and the engine apart (so the server can count the
    prompt's tokens and wait for room in the engine's context before generating), and the
    variant's tier and governed resource for the public-audience check."""

    @property
    def engine(self) -> Engine: ...

    @property
    def tier(self) -> int: ...

    @property
    def resource(self) -> Resource: ...

    def prepare(self, messages: Sequence[Message], actor: Actor) -> Prepared: ...

    def stream(self, prepared: Prepared,
               params: GenerationParams | None = None) -> Iterator[Delta]: ...
