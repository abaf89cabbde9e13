"""Help text that reads well at any terminal width.

A docstring is wrapped at 100 columns for the source; Typer's help keeps those line breaks and
then wraps again at the terminal's width, so prose came out ragged ("builds" alone on a line).
`reflow_help` joins the lines of each prose paragraph, so the terminal does the only wrapping.
An example paragraph (one starting with "Example") keeps one line per command, a command wrapped
in the source joined again; a paragraph starting with Click's `\b` marker is kept as written
(the marker dropped).
"""

from __future__ import annotations

import inspect

import typer

VERBATIM = "\b"


def reflow(text: str) -> str:
    """`text` with each prose paragraph on one line and each example command on one line."""
    out = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith(VERBATIM):
            out.append(paragraph.removeprefix(VERBATIM).lstrip("\n"))
        elif paragraph.startswith("Example"):
            out.append(_examples(paragraph))
        else:
            out.append(" ".join(line.strip() for line in paragraph.splitlines()))
    return "\n\n".join(out)


def _examples(paragraph: str) -> str:
    """One line per command: a line that continues the command before it (it starts with an
    option, or the line before ends with a backslash) is joined to that line. Typer removes the
    indentation that every line after the first shares, so a continuation kept on its own line
    could lose its indent."""
    lines: list[str] = []
    for line in paragraph.splitlines():
        if lines and (line.lstrip().startswith("-") or lines[-1].endswith("\\")):
            lines[-1] = lines[-1].removesuffix("\\").rstrip() + " " + line.strip()
        else:
            lines.append(line.rstrip())
    return "\n".join(lines)


def reflow_help(app: typer.Typer) -> None:
    """Reflow the help of every command and group under `app` (their docstrings stay as they
    are in the source)."""
    if isinstance(app.info.help, str):
        app.info.help = reflow(app.info.help)
    for info in app.registered_commands:
        doc = info.help or (inspect.getdoc(info.callback) if info.callback else None)
        if doc:
            info.help = reflow(doc)
    for group in app.registered_groups:
        if isinstance(group.help, str):
            group.help = reflow(group.help)
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)
