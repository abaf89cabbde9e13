"""Building datasets: the gate for Tier 2, deterministic version ids, rejects with file and line,
redaction, and splits that no near duplicate crosses."""

from __future__ import annotations

import json
import random
from itertools import combinations
from pathlib import Path

import pytest

from tuneloop import Project
from tuneloop.data.build import build_dataset
from tuneloop.data.dedup import shingles
from tuneloop.data.records import subject_hash
from tuneloop.data.versions import SPLITS, get_version, list_versions
from tuneloop.errors import ApprovalRequired, DataError, NotFound
from tuneloop.governance import approvals, audit
from tuneloop.governance.principals import actor_of, ensure_principal

TOPICS = ["reset my password", "export invoices as PDF", "add a team member", "enable SSO",
          "restore a deleted file", "change the billing card", "sync a shared folder",
          "raise the upload limit", "rotate an API token", "delete my account"]


def _config(tier: int = 1, threshold: float = 0.85, extra: str = "") -> str:
    return f"""
version: 1
task: {{name: helpdesk}}
sources:
  - name: tickets
    path: data/tickets.jsonl
    tier: {tier}
    subject_field: customer.email
datasets:
  - name: support
    sources: [tickets]
    near_dup_threshold: {threshold}
    max_output_tokens: 60
    seed: 3
    slice_field: category
{extra}
"""


def _ticket(i: int, rng: random.Random) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    words = " ".join(rng.choice(["quickly", "today", "again", "please", "for our team", "now",
                                 "before Friday", "on my laptop"]) for _ in range(6))
    return {"category": topic.split()[-1],
            "customer": {"email": f"user{i}@example.com"},
            "messages": [{"role": "user", "content": f"Ticket {i}: how do I {topic} {words}?"},
                         {"role": "assistant", "content": f"To {topic}, open Settings and follow "
                                                          f"step {i % 7}."}]}


def _project(root: Path, lines: list[str], config: str) -> Project:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "tickets.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "tuneloop.yaml").write_text(config, encoding="utf-8")
    return Project.init(root)


def _lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [json.dumps(_ticket(i, rng)) for i in range(n)]


@pytest.fixture
def sqlite_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    return tmp_path / "proj"


def test_tier2_source_is_refused_without_a_train_approval(project_dir: Path) -> None:
    project = _project(project_dir, _lines(30), _config(tier=2))
    dev = project.actor()
    with project.store.session() as session:
        privacy = actor_of(ensure_principal(session, "pia", role="privacy"))
    with pytest.raises(ApprovalRequired) as refused:
        build_dataset(project, dev, "support")
    assert "--scope source:tickets --use train" in str(refused.value)
    assert not list_versions(project)
    assert audit.list_events(project.store, action="access.refused")
    approval = approvals.request(project.store, dev, scope=["source:tickets"], uses=["train"],
                                 purpose="fine-tune the helpdesk model")
    approvals.grant(project.store, privacy, approval)
    version = build_dataset(project, dev, "support")
    assert (version.tier, version.roots, version.approvals) == (2, frozenset({"source:tickets"}),
                                                                (approval,))
    assert version.resource.roots == frozenset({"source:tickets"})
    assert get_version(project, "support").manifest["approvals"] == [approval]


def test_export_only_approval_does_not_allow_a_build(sqlite_root: Path) -> None:
    project = _project(sqlite_root, _lines(10), _config(tier=2))
    dev = project.actor()
    with project.store.session() as session:
        privacy = actor_of(ensure_principal(session, "pia", role="privacy"))
    approvals.grant(project.store, privacy, approvals.request(
        project.store, dev, scope=["source:tickets"], uses=["export"], purpose="share"))
    with pytest.raises(ApprovalRequired, match="allows export, not 'train'"):
        build_dataset(project, dev, "support")


def test_same_recipe_on_same_inputs_gives_the_same_version_id(sqlite_root: Path,
                                                              tmp_path: Path) -> None:
    lines = _lines(60)
    first = _project(sqlite_root, lines, _config())
    v1 = build_dataset(first, first.actor(), "support")
    v1_again = build_dataset(first, first.actor(), "support")
    other = _project(tmp_path / "elsewhere", lines, _config())
    v2 = build_dataset(other, other.actor(), "support")
    assert v1.id == v1_again.id == v2.id
    assert (v1.path / "train.jsonl").read_bytes() == (v2.path / "train.jsonl").read_bytes()
    assert len(list_versions(first, "support")) == 1
    changed = _project(tmp_path / "changed", lines[:-1], _config())
    assert build_dataset(changed, changed.actor(), "support").id != v1.id
    reseeded = _project(tmp_path / "reseeded", lines, _config().replace("seed: 3", "seed: 4"))
    assert build_dataset(reseeded, reseeded.actor(), "support").id != v1.id


def test_bad_records_are_set_aside_with_file_line_and_reason(sqlite_root: Path) -> None:
    lines = _lines(20)
    lines[4] = '{"messages": [{"role": "user", "content": "broken'
    lines[9] = json.dumps({"input": "What is 2+2?"})
    lines[12] = json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                         {"role": "assistant", "content": "  "}]})
    lines[15] = lines[3]
    project = _project(sqlite_root, lines, _config())
    version = build_dataset(project, project.actor(), "support")
    rejects = [json.loads(line) for line in version.rejects_path.read_text().splitlines()]
    by_line = {r["line"]: r for r in rejects}
    assert by_line[5]["step"] == "validate" and by_line[5]["reason"] == "broken JSON"
    assert by_line[5]["path"] == "data/tickets.jsonl"
    assert by_line[10]["reason"] == "field 'output' is missing"
    assert by_line[5]["detail"].startswith("broken JSON: ")
    assert by_line[13]["reason"] == "empty output"
    assert by_line[16]["step"] == "exact_dedup"
    removed = version.manifest["steps"]["removed"]
    assert removed["validate"] == {"broken JSON": 1, "field 'output' is missing": 1}
    assert removed["quality"] == {"empty output": 1} and removed["exact_dedup"] == {
        "exact duplicate": 1}
    assert len(version) == 16 == version.manifest["steps"]["kept"]


def test_strict_build_fails_on_the_first_bad_record_and_writes_nothing(sqlite_root: Path) -> None:
    lines = _lines(10)
    lines[6] = "not json"
    project = _project(sqlite_root, lines, _config())
    with pytest.raises(DataError, match=r"tickets.jsonl:7: broken JSON"):
        build_dataset(project, project.actor(), "support", strict=True)
    assert list((project.state_dir / "datasets" / "support").iterdir()) == []
    assert not list_versions(project)


def test_pii_is_redacted_everywhere_and_the_subject_is_kept_as_a_hash(sqlite_root: Path) -> None:
    record = {"customer": {"email": "jane.roe@example.com", "name": "Jane Roe"},
              "messages": [{"role": "user", "content": "I am Jane Roe, call +1 415 555 0199, "
                            "card 4539 1488 0343 6467."},
                           {"role": "assistant", "content": "Hi Jane, we refunded the card."}]}
    project = _project(sqlite_root, [json.dumps(record), *_lines(5)], _config())
    version = build_dataset(project, project.actor(), "support")
    everything = "".join(version.split_path(s).read_text() for s in SPLITS)
    everything += version.rejects_path.read_text() + json.dumps(version.manifest)
    for secret in ("jane.roe@example.com", "Jane", "Roe", "555 0199", "4539"):
        assert secret not in everything
    (redacted,) = [r for s in SPLITS for r in version.iter_split(s)
                   if r["metadata"]["line"] == 1]
    assert redacted["messages"][0]["content"] == ("I am <PERSON_1>, call <PHONE_NUMBER_1>, card "
                                                  "<CREDIT_CARD_1>.")
    assert redacted["messages"][1]["content"] == "Hi <PERSON_1>, we refunded the card."
    assert redacted["metadata"]["customer"] == {"name": "<PERSON_1>"}
    assert redacted["subject"] == subject_hash("Jane.Roe@example.com")
    assert version.manifest["pii_redacted"]["PERSON"] == 3


def test_no_near_duplicate_crosses_splits(sqlite_root: Path) -> None:
    rng = random.Random(5)
    lines = []
    for i in range(120):
        base = _ticket(i, rng)
        lines.append(json.dumps(base))
        # A variant adds a word at the end: Jaccard similarity about 0.93 with the original.
        for word in rng.sample(["Thanks", "Cheers", "Regards"], rng.randint(0, 2)):
            variant = json.loads(json.dumps(base))
            variant["messages"][1]["content"] += f" {word}"
            lines.append(json.dumps(variant))
    project = _project(sqlite_root, lines, _config(threshold=0.85))
    version = build_dataset(project, project.actor(), "support")
    texts = {s: [" ".join(m["content"] for m in r["messages"]) for r in version.iter_split(s)]
             for s in SPLITS}
    assert all(texts.values())
    sets = {s: [set(shingles(t)) for t in ts] for s, ts in texts.items()}
    for a, b in combinations(SPLITS, 2):
        for x in sets[a]:
            for y in sets[b]:
                assert len(x & y) / len(x | y) < 0.85, f"a near duplicate crosses {a} and {b}"
    variants = len(lines) - 120
    assert version.manifest["steps"]["removed"]["near_dedup"]["near duplicate"] == variants


def test_quality_filters_drop_too_long_outputs(sqlite_root: Path) -> None:
    long = {"messages": [{"role": "user", "content": "Tell me everything"},
                         {"role": "assistant", "content": "word " * 200}]}
    project = _project(sqlite_root, [json.dumps(long), *_lines(5)], _config())
    version = build_dataset(project, project.actor(), "support")
    assert version.manifest["steps"]["removed"]["quality"] == {
        "output longer than 60 tokens": 1}
    assert len(version) == 5


def test_get_version_by_name_prefix_and_errors(project_dir: Path) -> None:
    project = _project(project_dir, _lines(12), _config())
    version = build_dataset(project, project.actor(), "support")
    assert get_version(project, f"support@{version.id[:6]}") == version
    assert get_version(project, "support").ref == f"support@{version.id}"
    assert sum(1 for _ in version.iter_split("train")) == version.counts["train"]
    with pytest.raises(NotFound, match="dataset 'other' has no version yet"):
        get_version(project, "other")
    with pytest.raises(NotFound, match="no version 'ffff' of dataset 'support'"):
        get_version(project, "support@ffff")


def test_a_generated_source_carries_its_generator_into_the_lineage(sqlite_root: Path) -> None:
    project = _project(sqlite_root, _lines(8), _config())
    generator = {"from": {"source": "kb"}, "generator": {"model": "bundled:smollm2-135m"}}
    (sqlite_root / "data" / "tickets.lineage.json").write_text(json.dumps(generator))
    version = build_dataset(project, project.actor(), "support")
    assert version.manifest["sources"][0]["generated"] == generator


def test_a_record_nested_100000_levels_deep_is_a_reject_with_file_and_line(
        sqlite_root: Path) -> None:
    lines = _lines(12)
    lines[3] = '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}"
    project = _project(sqlite_root, lines, _config())
    version = build_dataset(project, project.actor(), "support")
    rejects = [json.loads(line) for line in version.rejects_path.read_text().splitlines()]
    deep = next(r for r in rejects if r["line"] == 4)
    assert deep["step"] == "validate" and deep["path"] == "data/tickets.jsonl"
    assert deep["reason"].startswith("nested more than 64 levels deep")
    assert len(version) == 11
    with pytest.raises(DataError, match=r"tickets.jsonl:4: nested more than 64 levels deep"):
        build_dataset(project, project.actor(), "support", strict=True)


def test_a_build_whose_every_record_is_rejected_fails_and_publishes_nothing(
        sqlite_root: Path) -> None:
    lines = ['{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}", "not json", "[1, 2]",
             json.dumps({"input": "What is 2+2?"})]
    project = _project(sqlite_root, lines, _config())
    with pytest.raises(DataError) as info:
        build_dataset(project, project.actor(), "support")
    message = str(info.value)
    assert "nothing to publish: every one of the 4 records read was rejected" in message
    assert "validate: nested more than 64 levels deep" in message
    assert "validate: broken JSON (1)" in message
    kept = project.root / message.split("are in ")[1].split()[0]
    assert {json.loads(line)["line"] for line in kept.read_text().splitlines()} == {1, 2, 3, 4}
    assert not list_versions(project)
    assert list((project.state_dir / "datasets" / "support").iterdir()) == []


def test_a_file_of_blank_lines_fails_the_build_and_publishes_nothing(sqlite_root: Path) -> None:
    project = _project(sqlite_root, ["", "   ", "\t", ""], _config())
    with pytest.raises(DataError, match=r"no record was read from tickets .*only blank lines"):
        build_dataset(project, project.actor(), "support")
    assert not list_versions(project)
