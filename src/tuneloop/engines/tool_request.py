"""The tools of one request (the OpenAI `tools` and `tool_choice` fields), as a value.

Its own module because both the engine interface (`GenerationParams.tools`, engines/base.py) and
the tool-call handling that uses the interface (engines/tools.py) need it; `ToolRequest` is
still importable from `tuneloop.engines.tools`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolRequest:
    """The tools of one request: their definitions (canonical JSON) and the caller's choice.

    `choice` is "auto", "none", "required", or the name of the one function to call.
    """

    tools_json: str
    choice: str = "auto"

    @property
    def tools(self) -> list[dict[str, Any]]:
        return json.loads(self.tools_json)

    @property
    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def active(self) -> bool:
        """Whether the model is shown the tools at all (not for tool_choice "none")."""
        return self.choice != "none"

    @property
    def forced(self) -> bool:
        """Whether the answer must be a tool call."""
        return self.choice not in ("auto", "none")
