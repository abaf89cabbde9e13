"""Every command the code tells a user to run (`tuneloop ...` in hints and messages) exists."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import typer.main
from typer.testing import CliRunner

import tuneloop
from tuneloop.cli.main import app

SOURCE = Path(tuneloop.__file__).parent
# `tuneloop ...` in a hint or message (its closing backtick may be in the next string piece)
# and help examples; a hint may also be a bare command (hint="tuneloop review edit ID ...").
MENTION = re.compile(r"`tuneloop ([^`]+)|Examples?:\s+tuneloop ([^\n]+)", re.MULTILINE)
BARE_HINT = re.compile(r"^[a-zA-Z]*['\"]{1,3}tuneloop ([^'\"\n]+)")
WORD = re.compile(r"[a-z][a-z0-9-]*$")


def mentioned_commands() -> dict[str, str]:
    """`{"rag index": "src/.../train.py:51", ...}`: each command named in a string of the code."""
    found: dict[str, str] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
        before: list[str] = ["", ""]
        for token in tokens:
            if token.type not in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)):
                if token.type in (tokenize.NAME, tokenize.OP):
                    before = [before[-1], token.string]
                continue
            matches = list(MENTION.finditer(token.string))
            if before == ["hint", "="]:
                matches += list(BARE_HINT.finditer(token.string))
            for match in matches:
                words = []
                text = next(g for g in match.groups() if g)
                for word in text.split():
                    if not WORD.match(word):
                        break
                    words.append(word)
                if words:
                    where = f"{path.relative_to(SOURCE)}:{token.start[0]}"
                    found.setdefault(" ".join(words), where)
    return found


def command_path(words: list[str]) -> list[str]:
    """The longest prefix of `words` that names a command (`rag index my-kb` -> rag index)."""
    command = typer.main.get_command(app)
    path: list[str] = []
    for word in words:
        if word not in getattr(command, "commands", {}):
            break
        command = command.commands[word]
        path.append(word)
    return path


def test_every_command_a_hint_names_exists_and_has_help() -> None:
    mentions = mentioned_commands()
    assert {"rag index", "approvals request", "eval"} <= set(mentions)
    runner = CliRunner()
    for mention, where in mentions.items():
        path = command_path(mention.split())
        assert path, f"{where}: `tuneloop {mention}` names no command"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"{where}: `tuneloop {' '.join(path)} --help` failed"
        assert "Usage" in result.output
