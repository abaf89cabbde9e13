"""Chat templates from model files, rendered in a sandbox.

A chat template is Jinja2 code shipped inside an untrusted model file. Rendering it in a normal
Jinja2 environment lets a crafted template reach Python internals (the llama-cpp-python
template-injection CVE class: `cycler.__init__.__globals__`, `''.__class__.__mro__`). Here every
template runs in `ImmutableSandboxedEnvironment`, and any escape attempt or template bug becomes
a clear EngineError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tuneloop.errors import EngineError, InvalidRequest


class TemplateRaised(InvalidRequest):
    """The template itself rejected the conversation (its `raise_exception(...)`)."""


def _raise_exception(message: str) -> None:
    raise TemplateRaised(f"the model's chat template rejected the conversation: {message}")


class ChatTemplate:
    """A compiled, sandboxed chat template: `render(messages) -> prompt text`."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "",
                 origin: str = "model") -> None:
        self.source = source
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

    def render(self, messages: Sequence[dict[str, Any]], *,
               add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages`, ending with the assistant's turn opener."""
        try:
            return self._template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
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

