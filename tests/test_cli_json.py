"""The CLI for scripts: `--json` on every list/show/query/status command, whole text in pipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tuneloop import Project
from tuneloop.cli._output import SCRIPT_COMMANDS
from tuneloop.cli.main import app
from tuneloop.rag import index_knowledge_base

CONFIG = """
version: 1
task: {name: json-test}
sources:
  - {name: handbook, path: handbook, kind: documents, tier: 1}
  - {name: faq, path: faq.jsonl, kind: records, tier: 1}
knowledge_base:
  sources: [handbook]
  chunk_tokens: 128
  overlap_tokens: 16
datasets:
  - name: support
    sources: [faq]
    split: {train: 0.8, validation: 0.1, test: 0.1}
"""
LONG = ("Raise the inotify watch limit with sysctl when sync is slow; " * 5).strip()
HANDBOOK = {
    "linux.md": f"# Linux install\n\n{LONG}\n",
    "sso.md": "# Single sign-on\n\nSAML needs the identity provider metadata URL.\n",
}

pytestmark = pytest.mark.slow  # indexes with the real embedding model


def every_script_command(group: typer.Typer, prefix: str = "") -> list[str]:
    """The names of the commands that must take --json ("rag query", "monitor", ...)."""
    found = []
    for info in group.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        if name in SCRIPT_COMMANDS or name == "monitor":
            found.append(f"{prefix}{name}")
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            found += every_script_command(sub.typer_instance, f"{prefix}{sub.name} ")
    return found


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-json") / "proj"
    Project.init(root).close()
    (root / "tuneloop.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "handbook").mkdir()
    for name, text in HANDBOOK.items():
        (root / "handbook" / name).write_text(text, encoding="utf-8")
    rows = [{"input": f"question {i}?", "output": f"answer {i}."} for i in range(20)]
    (root / "faq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    project = Project.open(root)
    index_knowledge_base(project, project.actor())
    project.close()
    return root


def cli(root: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["-C", str(root), *args], env={"COLUMNS": ""})
    return result


# Each command with the arguments that make it show something in the project above.
ARGUMENTS = {
    "data show": ["support"],
    "rag query": ["inotify watch limit", "--full"],
}


def test_every_list_show_query_status_command_prints_one_json_document(
        project_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    monkeypatch.chdir(project_root)
    built = cli(project_root, "data", "build", "support")
    assert built.exit_code == 0, built.output
    commands = every_script_command(app)
    for expected in ("rag query", "rag status", "data list", "approvals list", "keys list",
                     "rollout status", "monitor", "eval online", "runs list"):
        assert expected in commands
    # Nothing in this project to show by id (no training, evaluation or review item yet):
    # their --json is the same wrapper, checked on its help.
    needs_an_id = {"eval show", "runs show", "review show"}
    shown = 0
    for command in commands:
        args = [*command.split(), *ARGUMENTS.get(command, [])]
        if command in needs_an_id:
            assert "--json" in cli(project_root, *command.split(), "--help").output
            continue
        result = cli(project_root, *args, "--json")
        assert result.exit_code == 0, (command, result.output)
        document = json.loads(result.stdout)
        assert document["command"] == command
        assert set(document) == {"command", "tables", "messages"}
        for table in document["tables"]:
            assert all(list(row) == table["columns"] for row in table["rows"])
        shown += 1
    assert shown >= 15
    hits = json.loads(cli(project_root, "rag", "query", "inotify watch limit", "--json").stdout)
    [table] = hits["tables"]
    assert table["columns"][:2] == ["n", "chunk"]
    assert table["rows"][0]["chunk"] == "handbook:linux.md#0"
    data = json.loads(cli(project_root, "data", "list", "--json").stdout)
    assert any("support" in json.dumps(row) for row in data["tables"][0]["rows"])


def test_a_pipe_gets_whole_tables_and_full_text(project_root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    # CliRunner's stdout is not a terminal, as with `| less`.
    result = cli(project_root, "rag", "query", "inotify watch limit", "--full")
    assert result.exit_code == 0, result.output
    assert LONG in result.stdout  # the whole chunk, on one line, not folded or cut
    assert "handbook:linux.md#0" in result.stdout
    # As wide as the text needs, not padded out to the page.
    assert max(len(line) for line in result.stdout.splitlines()) < len(LONG) + 120
