"""The demo's building blocks: options, the step runner, the example project and its people."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from tuneloop.governance import approvals, principals
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project

EXAMPLE = "support-desk"
KEYS_FILE = "demo-keys.json"
DEMO_ADMIN = "demo-admin"
PEOPLE = {
    # name: (role, audience, what they stand for)
    "dana": ("developer", "internal", "ML engineer who builds the assistant"),
    "priya": ("privacy", "internal", "privacy officer who approves Tier 2 use"),
    "ines": ("developer", "internal", "support agent, internal user of the assistant"),
    "omar": ("developer", "internal", "support agent, internal user of the assistant"),
}


@dataclass
class DemoOptions:
    """How big the demo is: `quick` is the CI-sized version."""

    quick: bool = False
    train_overrides: dict[str, object] = field(default_factory=dict)
    eval_limit: int | None = None
    traffic: int = 16
    port: int = 0

    @classmethod
    def for_mode(cls, quick: bool) -> DemoOptions:
        """The full demo trains as tuneloop.yaml says; the quick one only proves the pipeline
        (a few optimizer steps of one micro-batch: CPU training costs ~4 x 135M FLOPs a token)."""
        if quick:
            return cls(quick=True, eval_limit=4, traffic=6,
                       train_overrides={"max_steps": 3, "gradient_accumulation": 1,
                                        "eval_steps": 1000, "save_steps": 1000,
                                        "max_eval_examples": 8, "parity_prompts": 4})
        return cls(quick=False, eval_limit=None, traffic=16)


@dataclass
class DemoResult:
    """What the demo produced, for the summary and for tests."""

    project_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


def example_dir() -> Path:
    """The bundled example project, installed with the package."""
    return Path(str(resources.files("tuneloop").joinpath("examples", EXAMPLE)))


class Recipe:
    """Runs steps in order with a heading, a plain explanation and the time each took."""

    def __init__(self, console: Console, result: DemoResult) -> None:
        self.console = console
        self.result = result
        self.number = 0

    @contextmanager
    def step(self, title: str, explanation: str) -> Iterator[None]:
        self.number += 1
        self.console.print()
        self.console.print(Panel(explanation, title=f"[bold]{self.number}. {title}[/]",
                                 title_align="left", border_style="cyan"))
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        self.result.timings[title] = elapsed
        self.console.print(f"[dim]   ({elapsed:.1f} s)[/]")


INCOMING_SINCE = "2026-03-10"  # tickets from then on arrive after the dataset was built


def create_project(target: Path) -> Project:
    """Copy the example into `target` (keeping what a previous run made) and initialise it.

    The newest tickets are set aside in `data/incoming.jsonl`: they play the questions internal
    users ask once the assistant is live, so their corrections are new examples, not copies of
    what the dataset already holds. The split is deterministic, so re-runs build the same data.
    """
    source = example_dir()
    target.mkdir(parents=True, exist_ok=True)
    for item in ("tuneloop.yaml", "kb", "data", "README.md"):
        src, dst = source / item, target / item
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif not dst.exists() or item != "tuneloop.yaml":
            shutil.copy2(src, dst)
    _set_aside_incoming(target / "data" / "tickets.jsonl", target / "data" / "incoming.jsonl")
    return Project.init(target)


def _set_aside_incoming(tickets: Path, incoming: Path) -> None:
    kept: list[str] = []
    later: list[str] = []
    for line in tickets.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            kept.append(line)  # malformed lines stay: the validator reports them
            continue
        messages = record.get("messages") if isinstance(record, dict) else None
        usable = (isinstance(messages, list) and len(messages) >= 2
                  and messages[0].get("role") == "user"
                  and messages[-1].get("role") == "assistant"
                  and str(messages[-1].get("content") or "").strip())
        new = str(record.get("created_at", "")) >= INCOMING_SINCE if usable else False
        (later if new else kept).append(line)
    for path, lines in ((tickets, kept), (incoming, later)):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.replace(path)


def incoming_tickets(project: Project) -> list[dict]:
    """The tickets set aside by `create_project`, oldest first."""
    path = project.root / "data" / "incoming.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def demo_admin(project: Project) -> Actor:
    """Who makes the demo's keys: on a local SQLite store the account that created the project;
    on PostgreSQL, where administration takes a key, the first admin (`demo-admin`), bootstrapped
    once and its key kept with the demo's other keys (see `ensure_people`)."""
    if principals.keyless_admin(project.store):
        return principals.current_actor(project.store)
    path = project.state_dir / KEYS_FILE
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if known.get(DEMO_ADMIN):
        return principals.authenticate(project.store, known[DEMO_ADMIN])
    made = principals.bootstrap_admin(project.store, DEMO_ADMIN, label="tuneloop demo")
    known[DEMO_ADMIN] = made.secret
    _write_keys(path, known)
    return made.principal


def _write_keys(path: Path, known: dict[str, str]) -> None:
    """The demo's keys file, written whole and private (0600)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=2))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def ensure_people(project: Project, admin: Actor) -> dict[str, tuple[Actor, str]]:
    """The demo's people with their API keys; keys made on the first run are reused after.

    Keys are kept in `.tuneloop/demo-keys.json` (mode 0600) only because this is a demo that runs
    unattended; real keys are shown once and kept by their owners.
    """
    path = project.state_dir / KEYS_FILE
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    people: dict[str, tuple[Actor, str]] = {}
    for name, (role, audience, _) in PEOPLE.items():
        secret = known.get(name, "")
        actor = None
        if secret:
            try:
                actor = principals.authenticate(project.store, secret)
            except Exception:  # revoked or from another database: make a new one
                actor = None
        if actor is None:
            new = principals.create_key(project.store, admin, name, role=role, audience=audience,
                                        label="tuneloop demo")
            secret, actor = new.secret, new.principal
            known[name] = secret
        people[name] = (actor, secret)
    _write_keys(path, known)
    return people


def approve_tier2(project: Project, developer: Actor, officer: Actor, *,
                  scope: str | list[str] = "source:tickets",
                  uses: tuple[str, ...] = ("train", "evaluate", "view")) -> int:
    """The developer asks, the privacy officer (another person) grants: the only way in."""
    approval_id = approvals.request(
        project.store, developer, scope=[scope] if isinstance(scope, str) else scope,
        uses=list(uses),
        purpose="Fine-tune and evaluate the support-reply assistant on resolved tickets "
                "(redacted), for internal use first.",
    )
    approvals.grant(project.store, officer, approval_id, reason="Redaction on; internal use only")
    return approval_id


def people_table(people: dict[str, tuple[Actor, str]]) -> Table:
    table = Table(title="People in this demo")
    for col in ("name", "role", "audience", "stands for"):
        table.add_column(col)
    for name, (actor, _) in people.items():
        table.add_row(name, actor.role, actor.audience, PEOPLE[name][2])
    return table
