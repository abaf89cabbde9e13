"""The `tuneloop data` commands end to end, and exports with their approval gate."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from tuneloop import Project
from tuneloop.data.build import build_dataset
from tuneloop.data.export import export_version
from tuneloop.errors import ApprovalRequired, TuneloopError
from tuneloop.governance import approvals
from tuneloop.governance.principals import actor_of, ensure_principal

CONFIG = """
version: 1
task: {name: helpdesk}
sources:
  - {name: tickets, path: data/tickets.jsonl, tier: TIER}
datasets:
  - {name: support, sources: [tickets], seed: 1}
"""


def _records(n: int) -> str:
    return "".join(json.dumps({"input": f"How do I reset password number {i} on device {i * 7}?",
                               "output": f"Open Settings, then Security, then step {i}.",
                               "metadata": {"category": "account"}}) + "\n" for i in range(n))


def _project(root: Path, tier: int) -> Project:
    (root / "data").mkdir(parents=True)
    (root / "data" / "tickets.jsonl").write_text(_records(40), encoding="utf-8")
    (root / "tuneloop.yaml").write_text(CONFIG.replace("TIER", str(tier)), encoding="utf-8")
    return Project.init(root)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    return tmp_path / "proj"


def test_export_of_tier2_data_needs_an_export_approval(root: Path) -> None:
    project = _project(root, tier=2)
    dev = project.actor()
    with project.store.session() as session:
        privacy = actor_of(ensure_principal(session, "pia", role="privacy"))
    approvals.grant(project.store, privacy, approvals.request(
        project.store, dev, scope=["source:tickets"], uses=["train"], purpose="fine-tune"))
    version = build_dataset(project, dev, "support")
    with pytest.raises(ApprovalRequired, match="'export'"):
        export_version(project, dev, "support", root / "out")
    assert not (root / "out").exists()
    approvals.grant(project.store, privacy, approvals.request(
        project.store, dev, scope=["source:tickets"], uses=["export"], purpose="vendor fine-tune"))
    folder = export_version(project, dev, "support", root / "out", "jsonl")
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert len(rows) == version.counts["train"]
    assert set(rows[0]) == {"messages"} and rows[0]["messages"][0]["role"] == "user"
    assert json.loads((folder / "lineage.json").read_text())["dataset"] == version.ref


def test_parquet_and_hf_exports_hold_every_record(root: Path) -> None:
    import datasets

    project = _project(root, tier=1)
    version = build_dataset(project, project.actor(), "support")
    parquet = export_version(project, project.actor(), "support", root / "pq", "parquet")
    table = pq.read_table(parquet / "test.parquet")
    assert table.num_rows == version.counts["test"]
    assert table.column("messages")[0].as_py()[1]["role"] == "assistant"
    hf = export_version(project, project.actor(), "support", root / "hf", "hf")
    loaded = datasets.load_from_disk(str(hf))
    assert {s: loaded[s].num_rows for s in loaded} == version.counts
    with pytest.raises(TuneloopError, match="exists already"):
        export_version(project, project.actor(), "support", root / "hf", "jsonl")


@pytest.mark.slow
def test_cli_adds_a_source_builds_and_shows_lineage(root: Path) -> None:
    _project(root, tier=1)
    (root / "more.csv").write_text("input,output\nWhat is SSO?,Single sign-on for your team.\n"
                                   "broken,row,extra\n", encoding="utf-8")
    added = run_cli("data", "add", "more.csv", "--name", "more", "--tier", "1", cwd=root)
    assert added.returncode == 0, added.stderr
    listed = run_cli("data", "sources", cwd=root)
    assert "more" in listed.stdout and "tickets" in listed.stdout
    built = run_cli("data", "build", "support", cwd=root)
    assert built.returncode == 0, built.stderr
    assert "40 read" in built.stdout
    shown = run_cli("data", "show", "support", cwd=root)
    assert shown.returncode == 0, shown.stderr
    for expected in ("Sources", "Steps", "Token lengths", "kept", "tickets"):
        assert expected in shown.stdout


@pytest.mark.slow
def test_cli_strict_build_names_file_and_line(root: Path) -> None:
    _project(root, tier=1)
    with (root / "data" / "tickets.jsonl").open("a") as handle:
        handle.write('{"input": "half a record"\n')
    result = run_cli("data", "build", "support", "--strict", cwd=root)
    assert result.returncode == 1
    assert "tickets.jsonl:41: broken JSON" in result.stderr


def test_a_source_added_with_data_add_can_be_named_in_a_recipe_and_built(root: Path) -> None:
    _project(root, tier=1)
    (root / "faq.csv").write_text("input,output\n" + "".join(
        f"How do I rename folder {i}?,Right-click folder {i} and choose Rename.\n"
        for i in range(30)), encoding="utf-8")
    recipe = "  - {name: faq, sources: [faq, tickets], seed: 1}\n"
    refused = (root / "tuneloop.yaml").read_text() + recipe
    (root / "tuneloop.yaml").write_text(refused, encoding="utf-8")
    unknown = run_cli("data", "build", "faq", cwd=root)
    assert unknown.returncode != 0
    assert "datasets[1].sources[0]: unknown source 'faq'" in " ".join(unknown.stderr.split())
    added = run_cli("data", "add", "faq.csv", "--name", "faq", "--tier", "1", cwd=root)
    assert added.returncode == 0, added.stderr
    listed = run_cli("data", "sources", cwd=root)
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines()
            if line.count("│") > 3}
    assert "data add" in rows["faq"] and "tuneloop.yaml" in rows["tickets"]
    built = run_cli("data", "build", "faq", cwd=root)
    assert built.returncode == 0, built.stderr
    assert "70 read" in built.stdout


def test_a_tier2_folder_added_with_data_add_serves_the_knowledge_base_and_taints_it(
        root: Path) -> None:
    from tuneloop.data.sources import get_source
    from tuneloop.variants import get_variant

    project = _project(root, tier=1)
    (root / "notes").mkdir()
    (root / "notes" / "vip.md").write_text("# VIP\n\nCall the account manager.\n")
    text = (root / "tuneloop.yaml").read_text() + (
        "knowledge_base: {sources: [notes]}\n"
        "variants:\n  - {name: rag, retrieval: {enabled: true}}\n")
    (root / "tuneloop.yaml").write_text(text, encoding="utf-8")
    added = run_cli("data", "add", "notes", "--name", "notes", "--tier", "2", cwd=root)
    assert added.returncode == 0, added.stderr
    project = Project.open(root)
    assert get_source(project, "notes").kind == "documents"
    assert get_variant(project, "rag").tier == 2
    project.close()
