"""Variants: a deployable recipe (model + prompt + retrieval + generation settings) in one place.

Evaluation and serving both run a variant through this module, so what was measured offline is
exactly what users are served: same system prompt, same retrieval with the caller's permissions,
same prompt assembly, same generation parameters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tuneloop.config import VariantConfig
from tuneloop.engines.base import Delta, Engine, GenerationParams, Message
from tuneloop.errors import InvalidRequest, NotFound
from tuneloop.governance.tiers import Actor, Resource, derived_tier
from tuneloop.project import Project
from tuneloop.variant_protocol import Prepared, VariantResult

if TYPE_CHECKING:
    from tuneloop.engines.structured import ResponseFormat
    from tuneloop.rag.retrieve import Hit

BASE_MODEL = "base"

__all__ = ["BASE_MODEL", "Prepared", "Variant", "VariantResult", "all_variants",
           "get_variant", "last_user_text", "text_counter"]


class Variant:
    """A runnable variant. Cheap to build; the engine behind it is shared and cached."""

    def __init__(self, project: Project, config: VariantConfig) -> None:
        self.project = project
        self.config = config
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def uses_retrieval(self) -> bool:
        return self.config.retrieval.enabled

    @property
    def model_name(self) -> str:
        return self.config.model

    # -- taint -----------------------------------------------------------------------------------

    def _model_taint(self) -> tuple[int, frozenset[str]]:
        if self.config.model == BASE_MODEL:
            return 1, frozenset()
        from tuneloop.engines import registry

        record = registry.get_model(self.project, self.config.model)
        return int(record.tier), frozenset(getattr(record, "roots", None) or ())

    def _index_taint(self) -> tuple[int, frozenset[str]]:
        if not self.uses_retrieval:
            return 1, frozenset()
        tiers, roots = [], set()
        from tuneloop.data.sources import find_source

        for name in self.project.config.knowledge_base.sources:
            # Either registry: a Tier 2 source added with `data add` taints the variant too.
            source = find_source(self.project, name)
            if source is not None:
                tiers.append(source.tier)
                if source.tier == 2:
                    roots.add(f"source:{name}")
        return derived_tier(tiers), frozenset(roots)

    @property
    def tier(self) -> int:
        """The highest tier of the model and the retrieval index (DESIGN.md: taint propagates)."""
        return derived_tier(self._model_taint()[0], self._index_taint()[0])

    @property
    def resource(self) -> Resource:
        """The variant as a governed resource, for `require(..., "deploy-public", ...)`."""
        model_tier, model_roots = self._model_taint()
        index_tier, index_roots = self._index_taint()
        return Resource(
            "variant",
            self.name,
            derived_tier(model_tier, index_tier),
            roots=model_roots | index_roots,
        )

    # -- running ---------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine serving this variant's model (loaded once, shared by every caller)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    from tuneloop.engines import load_engine

                    self._engine = load_engine(self.project, self.config.model)
        return self._engine

    def params(self, **overrides: Any) -> GenerationParams:
        """The variant's generation settings, with per-request overrides (None means unset)."""
        gen = self.config.generation
        params = GenerationParams(
            max_tokens=gen.max_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            stop=tuple(gen.stop),
            seed=gen.seed,
            stop_repeats=gen.stop_repeats,
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "stop" in clean:
            clean["stop"] = tuple(clean["stop"])
        if "response_format" not in clean and "tools" not in clean:
            params = replace(params, response_format=self.task_format())
        return replace(params, **clean)

    def task_format(self) -> ResponseFormat | None:
        """The task's JSON Schema as a response format, for a `task.format: json` project whose
        engine enforces it (so serving and evaluation get valid JSON by construction)."""
        task = self.project.config.task
        if task.format != "json" or not task.json_schema:
            return None
        if not getattr(self.engine, "supports_grammar", False):
            return None
        from tuneloop.engines.structured import from_schema

        return from_schema(task.json_schema, task.name)

    def system_prompt(self) -> str:
        return self.config.prompt or self.project.config.task.system_prompt

    def split_messages(self, messages: Sequence[Message]) -> tuple[str, list[Message]]:
        """The system text (the variant's prompt, then any system messages of the request)
        and the conversation without system messages."""
        if not messages:
            raise InvalidRequest("messages must contain at least one message")
        system_parts = [self.system_prompt()]
        conversation: list[Message] = []
        for message in messages:
            if message.get("role") == "system":
                system_parts.append(str(message.get("content") or ""))
            else:
                conversation.append(dict(message))
        if not conversation:
            raise InvalidRequest("messages must contain a user message, not only system messages")
        return "\n\n".join(p for p in system_parts if p.strip()), conversation

    def retrieve(self, query: str, actor: Actor, *, top_k: int | None = None) -> list[Hit]:
        """The chunks this variant's retrieval finds for `query`, under `actor`'s rights."""
        from tuneloop.rag import retrieve

        return retrieve.search(self.project, actor, query,
                               top_k=top_k or self.config.retrieval.top_k,
                               reranker=self.config.retrieval.reranker,
                               sources=self.project.config.knowledge_base.sources)

    def assemble(self, system: str, conversation: Sequence[Message], hits: Sequence[Hit],
                 count_text: Callable[[str], int]) -> Prepared:
        """The prompt with `hits` as sources, laid out by this variant's retrieval settings.

        Training with retrieval calls this with the hits it chose and the training tokenizer's
        counter, so a model is trained on exactly the prompt layout it is served with.
        """
        from tuneloop.rag import prompt as rag_prompt

        settings = self.config.retrieval
        built = rag_prompt.assemble(system, conversation, hits, settings.context_tokens,
                                    count_text, min_score_ratio=settings.min_score_ratio,
                                    sentences=settings.sentences, placement=settings.placement,
                                    instructions=settings.instructions)
        return Prepared(built.messages, built.citations, list(hits), built.context)

    def count_text(self) -> Callable[[str], int]:
        """Tokens of a piece of text in this variant's model (the chat template's own tokens
        around a message are not counted)."""
        return text_counter(self.engine.count_tokens)

    def prepare(self, messages: Sequence[Message], actor: Actor) -> Prepared:
        """Build the prompt: the variant's system prompt, then retrieval under `actor`'s rights."""
        system, conversation = self.split_messages(messages)
        if not self.uses_retrieval:
            return Prepared([{"role": "system", "content": system}, *conversation])
        hits = self.retrieve(last_user_text(conversation), actor)
        return self.assemble(system, conversation, hits, self.count_text())

    def run(
        self, messages: Sequence[Message], actor: Actor, params: GenerationParams | None = None
    ) -> VariantResult:
        """Answer once."""
        prepared = self.prepare(messages, actor)
        completion = self.engine.chat(prepared.messages, params or self.params())
        return VariantResult(completion, prepared.citations, prepared.hits, prepared.messages,
                             prepared.context)

    def stream(self, prepared: Prepared, params: GenerationParams | None = None) -> Iterator[Delta]:
        """Stream an answer to a prompt made by `prepare` (closing the iterator stops it)."""
        return self.engine.stream(prepared.messages, params or self.params())


def last_user_text(messages: Sequence[Message]) -> str:
    """The content of the last user message ("" when there is none): the retrieval query."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def text_counter(count_messages: Callable[[list[Message]], int]) -> Callable[[str], int]:
    """Count the tokens of a text with a messages counter (an engine's `count_tokens`, or a
    tokenizer's chat template), less what the template adds around one user message."""
    overhead = count_messages([{"role": "user", "content": ""}])

    def count(text: str) -> int:
        return max(0, count_messages([{"role": "user", "content": text}]) - overhead)

    return count


def get_variant(project: Project, name: str) -> Variant:
    """The variant of this name from `tuneloop.yaml`."""
    config = project.config.variant(name)
    if config is None:
        names = ", ".join(v.name for v in project.config.variants) or "none"
        raise NotFound(f"no variant named {name!r} in {project.config_path}; variants: {names}")
    return Variant(project, config)


def all_variants(project: Project) -> list[Variant]:
    return [Variant(project, v) for v in project.config.variants]
