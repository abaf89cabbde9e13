"""Output for scripts: `--json` on every list/show/query/status command, and whole tables in pipes.

Commands render Rich tables for people. For scripts:

- `--json` prints one JSON document instead, built from exactly what the command would have
  shown, with stable keys:

      {"command": "rag query",
       "tables": [{"title": "4 hits for ivy ...", "columns": ["n", "chunk", ...],
                   "rows": [{"n": "1", "chunk": "faq.md:3", ..., "text": "..."}]}],
       "messages": ["lines the command printed outside tables"]}

  A column's key is its header in snake_case (`bm25 (rank)` -> `bm25_rank`, `#` -> `n`); cells
  are the text a person would read, markup removed, never truncated.
- When stdout is not a terminal (a pipe, a file, `| less`) tables are laid out on a wide page,
  so no column is squeezed out or cut; set `COLUMNS` to choose another width.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, get_type_hints

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

PIPE_WIDTH = 4000  # wide enough for a whole chunk or answer on one line
PANEL_WIDTH = 120
SCRIPT_COMMANDS = ("list", "show", "query", "status", "sources", "current", "online", "verify")
JSON_HELP = "Print one JSON document (tables as rows keyed by column) instead of tables."


def fit_to_pipe(console: Console) -> None:
    """Lay tables out on a wide page when stdout is not a terminal (unless COLUMNS says).

    Each table is given the width its content needs (up to the page), so a column that would
    stretch to fill the page (a `ratio` column) does not pad every line with spaces.
    """
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return
    console.width = PIPE_WIDTH
    if "print" in vars(console):  # already fitted
        return

    def print_fitted(*objects: Any, **kwargs: Any) -> None:
        for item in objects:
            if isinstance(item, Table) and item.width is None:
                item.width = Measurement.get(console, console.options, item).maximum
            elif isinstance(item, Panel) and item.width is None:
                item.width = PANEL_WIDTH  # a panel stretches to the page: keep it readable
        Console.print(console, *objects, **kwargs)

    console.print = print_fitted  # type: ignore[method-assign]


def key(header: str, index: int) -> str:
    """A column header as a JSON key: snake_case, `#` as `n`."""
    if header.strip() == "#":
        return "n"
    name = re.sub(r"[^0-9a-zA-Z]+", "_", header).strip("_").lower()
    return name or f"column_{index}"


def plain(renderable: Any) -> str:
    """What a person reads in a cell or a line, without markup."""
    if isinstance(renderable, str):
        return Text.from_markup(renderable).plain
    if isinstance(renderable, Text):
        return renderable.plain
    page = Console(width=PIPE_WIDTH, record=True, file=io.StringIO(), color_system=None)
    page.print(renderable)
    return page.export_text().rstrip("\n")


def table_document(table: Table) -> dict[str, Any]:
    """A Rich table as {"title", "columns", "rows"}."""
    headers = [plain(c.header) for c in table.columns]
    keys = [key(h, i) for i, h in enumerate(headers)]
    cells = [list(c.cells) for c in table.columns]
    rows = [{k: plain(column[r]) for k, column in zip(keys, cells, strict=True)}
            for r in range(table.row_count)]
    title = plain(table.title) if table.title is not None else None
    return {"title": title, "columns": keys, "rows": rows}


@contextlib.contextmanager
def captured(console: Console, command: str) -> Iterator[dict[str, Any]]:
    """Collect what `console.print` (and plain prints) would show into one JSON document."""
    document: dict[str, Any] = {"command": command, "tables": [], "messages": []}

    def collect(*objects: Any, **_: Any) -> None:
        for item in objects:
            if isinstance(item, Table):
                document["tables"].append(table_document(item))
            else:
                text = plain(item)
                if text.strip():
                    document["messages"].append(text)

    stray = io.StringIO()
    before = vars(console).get("print")
    console.print = collect  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(stray):
            yield document
    finally:
        if before is None:
            del console.print  # the class's own method is back
        else:
            console.print = before  # type: ignore[method-assign]
        document["messages"].extend(line for line in stray.getvalue().splitlines() if line)


def with_json(callback: Callable[..., Any], console: Console, command: str) -> Callable[..., Any]:
    """`callback` with a `--json` option that prints one JSON document of what it shows."""
    signature = inspect.signature(callback, eval_str=True)
    if "json_output" in signature.parameters:
        return callback
    option = inspect.Parameter("json_output", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                               default=typer.Option(False, "--json", help=JSON_HELP))

    @functools.wraps(callback)
    def command_with_json(*args: Any, json_output: bool = False, **kwargs: Any) -> Any:
        if not json_output:
            return callback(*args, **kwargs)
        with captured(console, command) as document:
            result = callback(*args, **kwargs)
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return result

    parameters = [p for p in signature.parameters.values()
                  if p.kind != inspect.Parameter.VAR_KEYWORD]
    command_with_json.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters, option])
    command_with_json.__annotations__ = {**get_type_hints(callback), "json_output": bool}
    return command_with_json


def add_json_options(app: typer.Typer, console: Console, prefix: str = "") -> None:
    """Give every list/show/query/status command under `app` (and `monitor`) `--json`."""
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        if info.callback is not None and (name in SCRIPT_COMMANDS or name == "monitor"):
            info.callback = with_json(info.callback, console, f"{prefix}{name}".strip())
    for group in app.registered_groups:
        if group.typer_instance is not None:
            add_json_options(group.typer_instance, console, f"{prefix}{group.name} ")
