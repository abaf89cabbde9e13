"""The foundation's commands, run as a user runs them: init, keys, approvals, audit."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import click
import typer.main
from typer.testing import CliRunner

from tests.conftest import run_cli
from tuneloop.cli._help import reflow
from tuneloop.cli.main import app


def test_every_command_has_help_with_an_example() -> None:
    root = typer.main.get_command(app)
    missing = []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        elif "Example" not in (command.help or ""):
            missing.append(" ".join(path))

    walk(root, [])
    assert not missing, f"commands without an example in --help: {missing}"


def test_help_prose_is_wrapped_by_the_terminal_not_by_the_docstring() -> None:
    shown = [line.strip() for line in
             CliRunner().invoke(app, ["demo", "--help"], terminal_width=80).output.splitlines()]
    start = next(i for i, line in enumerate(shown) if line.startswith("Creates the project"))
    paragraph = shown[start:shown.index("", start)]
    # the docstring's own breaks left short lines ("tickets, builds") inside the paragraph
    assert len(paragraph) > 2 and all(len(line) > 60 for line in paragraph[:-1]), paragraph


def test_help_keeps_one_example_command_a_line_and_click_verbatim_blocks() -> None:
    doc = ("Do it\n    now.\n\nExample:  tuneloop x --a 1\n          --b 2\n"
           "  tuneloop y \\\n      --c\n\n\bkeep\n  as is")
    assert reflow(doc) == ("Do it now.\n\nExample:  tuneloop x --a 1 --b 2\n  tuneloop y --c"
                           "\n\nkeep\n  as is")


def test_init_writes_a_starter_project_and_is_safe_to_rerun(tmp_path: Path) -> None:
    target = tmp_path / "assistant"
    first = run_cli("init", str(target))
    assert first.returncode == 0, first.stderr
    assert "wrote a starter" in first.stdout
    assert (target / "tuneloop.yaml").read_text().startswith("# tuneloop.yaml")
    assert (target / ".tuneloop" / "tuneloop.db").exists()
    second = run_cli("init", str(target))
    assert second.returncode == 0 and "kept the existing" in second.stdout


def test_user_error_is_one_line_with_exit_1_and_usage_error_exit_2(tmp_path: Path) -> None:
    (tmp_path / "tuneloop.yaml").write_text("task:\n  name: Bad Name\n")
    result = run_cli("audit", "verify", cwd=tmp_path)
    assert result.returncode == 1
    assert "tuneloop.yaml:2: task.name: found 'Bad Name'" in result.stderr
    assert "Traceback" not in result.stderr
    usage = run_cli("approvals", "grant", "not-a-number", cwd=tmp_path)
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr


def test_the_privacy_flow_through_the_cli(tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert run_cli("init", str(project)).returncode == 0
    keys = {}
    for name, role in (("dana", "developer"), ("priya", "privacy")):
        made = run_cli("keys", "create", name, "--role", role, cwd=project)
        assert made.returncode == 0, made.stderr
        keys[name] = re.search(r"(tl_[0-9a-f]{8}_\S+)", made.stdout).group(1)

    dev = {"TUNELOOP_API_KEY": keys["dana"]}
    asked = run_cli(
        "approvals",
        "request",
        "--scope",
        "source:tickets",
        "--use",
        "train",
        "--purpose",
        "fine-tune on resolved tickets",
        cwd=project,
        env=dev,
    )
    assert asked.returncode == 0, asked.stderr
    approval_id = re.search(r"approval #(\d+)", asked.stdout).group(1)

    self_grant = run_cli("approvals", "grant", approval_id, cwd=project, env=dev)
    assert self_grant.returncode == 1 and "only the privacy team" in self_grant.stderr

    granted = run_cli(
        "approvals",
        "grant",
        approval_id,
        "--reason",
        "DPA signed",
        cwd=project,
        env={"TUNELOOP_API_KEY": keys["priya"]},
    )
    assert granted.returncode == 0, granted.stderr
    listing = run_cli("approvals", "list", cwd=project)
    assert "granted" in listing.stdout and "source:tickets" in listing.stdout

    audit_list = run_cli("audit", "list", cwd=project)
    for action in ("approval.request", "approval.refused", "approval.grant", "key.create"):
        assert action in audit_list.stdout
    assert run_cli("audit", "verify", cwd=project).returncode == 0

    db = sqlite3.connect(project / ".tuneloop" / "tuneloop.db")
    db.execute("UPDATE audit_events SET actor = 'mallory' WHERE action = 'approval.grant'")
    db.commit()
    db.close()
    broken = run_cli("audit", "verify", cwd=project)
    assert broken.returncode == 1 and "BROKEN" in broken.stdout and "edited" in broken.stdout


def test_keys_are_shown_once_and_revocable(tmp_path: Path) -> None:
    project = tmp_path / "p"
    run_cli("init", str(project))
    made = run_cli("keys", "create", "bot", "--service", "--audience", "public", cwd=project)
    secret = re.search(r"(tl_[0-9a-f]{8}_\S+)", made.stdout).group(1)
    listing = run_cli("keys", "list", cwd=project)
    assert secret not in listing.stdout and secret[:11] in listing.stdout
    assert run_cli("keys", "revoke", secret[:11], cwd=project).returncode == 0
    refused = run_cli("audit", "list", cwd=project, env={"TUNELOOP_API_KEY": secret})
    assert refused.returncode == 1 and "revoked" in refused.stderr
