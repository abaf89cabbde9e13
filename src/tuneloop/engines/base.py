"""The one interface every inference engine implements (llama.cpp, transformers, OpenAI HTTP).

Evaluation, serving and data synthesis talk to this interface only. Every call reports token
counts, time to first token, total time and the finish reason, so latency is always measured the
same way whichever engine runs.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tuneloop.engines.structured import ResponseFormat
    from tuneloop.engines.tool_request import ToolRequest

# {"role": "system"|"user"|"assistant"|"tool", "content": str}; an assistant message may also
# carry OpenAI-shaped "tool_calls", a tool message its "tool_call_id"
Message = dict[str, Any]
FinishReason = Literal["stop", "length", "error", "cancelled", "tool_calls"]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters shared by every engine."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = 0
    #: end the answer at its first verbatim repetition of a sentence (`StopMatcher`)
    stop_repeats: bool = False
    #: constrain the answer to JSON / a JSON Schema (engines/structured.py)
    response_format: ResponseFormat | None = None
    #: tools the model may call, and how (engines/tools.py)
    tools: ToolRequest | None = None


@dataclass
class Completion:
    """The result of one call, with its measurements."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float  # time to first token, seconds
    total_s: float  # wall time of the whole call, seconds
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: OpenAI-shaped tool calls ({"id", "type": "function", "function": {"name", "arguments"}})
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        decode = self.total_s - self.ttft_s
        return self.completion_tokens / decode if decode > 0 and self.completion_tokens else 0.0


@dataclass
class Delta:
    """One streamed piece of text; the last event of a stream carries `completion`."""

    text: str
    completion: Completion | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class Engine(abc.ABC):
    """An inference engine. Implementations must be safe to share between threads."""

    #: short engine kind: "llama.cpp", "transformers", "openai"
    kind: str = ""
    #: the model name this engine serves
    model_name: str = ""
    #: context window in tokens
    context_length: int = 2048
    #: whether `GenerationParams.response_format` is honoured (enforced or forwarded)
    supports_grammar: bool = False

    @property
    def supports_tools(self) -> bool:
        """Whether `GenerationParams.tools` is honoured (the model's template renders tools
        and tuneloop parses its calls, or the request is forwarded to a server that does)."""
        return False

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        """One chat completion: by default the stream, collected (same timings either way)."""
        completion = None
        for delta in self.stream(messages, params):
            completion = delta.completion or completion
        if completion is None:
            raise RuntimeError(f"{type(self).__name__}.stream ended without a completion")
        return completion

    @abc.abstractmethod
    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        """A chat completion as text deltas; the final Delta has `completion` set.

        Closing the iterator early (client gone) stops generation.
        """

    def batch(self, conversations: Sequence[Sequence[Message]],
              params: GenerationParams) -> list[Completion]:
        """Many completions; engines that can batch or overlap requests override this."""
        return [self.chat(messages, params) for messages in conversations]

    @abc.abstractmethod
    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens these messages take once the chat template is applied."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Free the model's memory."""
