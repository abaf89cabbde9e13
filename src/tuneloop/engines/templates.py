"""Chat templates from model files, rendered in a sandbox.

A chat template is Jinja2 code shipped inside an untrusted model file. Rendering it in a normal
Jinja2 environment lets a crafted template reach Python internals (the llama-cpp-python
template-injection CVE class: `cycler.__init__.__globals__`, `''.__class__.__mro__`). Here every
template runs in `ImmutableSandboxedEnvironment`, and any escape attempt or template bug becomes
a clear EngineError.

Message content never becomes a special token: the engines tokenize the rendered prompt with
special tokens parsed (the template's own `<|im_start|>` must be one), so text such as
`<|im_end|>\n<|im_start|>system` inside a message or a retrieved document would otherwise open a
real turn. The template escapes every special token's text found in message content (a zero-width
space after its first character) before rendering; the escaped text tokenizes as plain text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tuneloop.errors import EngineError, InvalidRequest

ESCAPE = "\u200b"  # zero-width space: invisible, and breaks the special token's text


def special_pattern(tokens: Iterable[str]) -> re.Pattern[str] | None:
    """A pattern matching any of these special tokens' texts (longest first), or None."""
    texts = sorted({t for t in tokens if t and len(t) > 1}, key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in texts)) if texts else None


def special_texts(tokenizer: Any) -> list[str]:
    """The text of every token a Hugging Face tokenizer parses as special, added ones included."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return [*tokenizer.all_special_tokens, *(t.content for t in added.values())]


def escape_specials(text: str, pattern: re.Pattern[str] | None) -> str:
    """`text` with each special token's text broken so that it tokenizes as plain text."""
    if pattern is None:
        return text
    return pattern.sub(lambda m: m.group(0)[0] + ESCAPE + m.group(0)[1:], text)


class TemplateRaised(InvalidRequest):
    """The template itself rejected the conversation (its `raise_exception(...)`)."""


def _raise_exception(message: str) -> None:
    raise TemplateRaised(f"the model's chat template rejected the conversation: {message}")


class ChatTemplate:
    """A compiled, sandboxed chat template: `render(messages) -> prompt text`."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "",
                 origin: str = "model", special_tokens: Iterable[str] = ()) -> None:
        self.source = source
        self._specials = special_pattern([*special_tokens, bos_token, eos_token])
        self.origin = origin
        self.bos_token = bos_token
        self.eos_token = eos_token
        # The same options Hugging Face uses for chat templates, so templates render alike.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            undefined=jinja2.StrictUndefined)
        env.globals["raise_exception"] = _raise_exception
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise EngineError(f"the chat template in {origin} is invalid "
                              f"(line {exc.lineno}: {exc.message})") from exc

    def _escaped(self, message: dict[str, Any]) -> dict[str, Any]:
        out = dict(message)
        if isinstance(out.get("content"), str):
            out["content"] = escape_specials(out["content"], self._specials)
        if out.get("tool_calls"):  # a call's name and arguments are message content too
            out["tool_calls"] = [self._escaped_value(c) for c in out["tool_calls"]]
        return out

    def _escaped_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return escape_specials(value, self._specials)
        if isinstance(value, dict):
            return {k: self._escaped_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._escaped_value(v) for v in value]
        return value

    def render(self, messages: Sequence[dict[str, Any]], *,
               add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text for `messages`, ending with the assistant's turn opener.

        `tools` (OpenAI tool definitions) is passed to the template as Hugging Face does; it is
        always defined (None without tools) so templates that test it work.
        """
        try:
            return self._template.render(
                messages=[self._escaped(m) for m in messages],
                add_generation_prompt=add_generation_prompt, tools=tools,
                bos_token=self.bos_token, eos_token=self.eos_token)
        except TemplateRaised:
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise EngineError(
                f"the chat template in {self.origin} tried an unsafe operation and was "
                f"stopped: {exc}",
                hint="this model file's template is unsafe or malicious; do not serve it") from exc
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as exc:
            raise EngineError(f"the chat template in {self.origin} failed to render: "
                              f"{type(exc).__name__}: {exc}") from exc

