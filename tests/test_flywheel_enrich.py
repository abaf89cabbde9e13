"""`enrich` and the review queue: logs and feedback become a dataset version with lineage."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_flywheel_support import (
    log_request,
    open_project,
    person,
    rate,
    records,
    sqlite_only,
)
from tuneloop import Project
from tuneloop.errors import ApprovalRequired, NotFound, TuneloopError
from tuneloop.flywheel import review
from tuneloop.flywheel.enrich import Filters, enrich
from tuneloop.governance import approvals, audit
from tuneloop.store.models import utcnow


def test_correction_replaces_output_and_thumbs_down_goes_to_review(project: Project) -> None:
    ivy = person(project, "ivy")
    liked = log_request(project, "How do I reset my password?", "Use the reset link.")
    fixed = log_request(project, "Where are invoices?", "I do not know.")
    disliked = log_request(project, "Why is sync slow?", "Because.")
    unrated = log_request(project, "What is a team folder?", "A shared folder.")
    rate(project, ivy, liked, rating=1)
    rate(project, ivy, fixed, rating=-1, corrected="Invoices are under Billing > Invoices.")
    rate(project, ivy, disliked, rating=-1, comment="not helpful")

    report = enrich(project, ivy, "from-logs")

    assert report.version is not None
    by_request = {r["metadata"]["request_id"]: r for r in records(report.version)}
    assert set(by_request) == {liked, fixed}
    assert by_request[fixed]["messages"][-1] == {
        "role": "assistant", "content": "Invoices are under Billing > Invoices."}
    assert by_request[liked]["messages"][-1]["content"] == "Use the reset link."
    assert by_request[liked]["messages"][0] == {"role": "user",
                                                "content": "How do I reset my password?"}
    assert sorted(report.version.manifest["lineage"]["request_ids"]) == sorted([liked, fixed])
    assert report.queued == [disliked] and unrated not in by_request
    queue = review.list_items(project)
    assert [(i.request_id, i.status) for i in queue] == [(disliked, "open")]
    assert report.counts["correction"] == 1 and report.counts["rated"] == 1


@sqlite_only
def test_reviewer_edit_enters_the_next_version_and_every_decision_is_kept(
        project: Project) -> None:
    ivy, rex = person(project, "ivy"), person(project, "rex")
    first = log_request(project, "Can I undo a deleted file?", "No.")
    second = log_request(project, "Does the app run on Linux?", "Maybe.")
    rate(project, ivy, first, rating=-1)
    rate(project, ivy, second, rating=-1)
    assert enrich(project, ivy, "from-logs").version is None  # nothing usable yet
    items = {i.request_id: i.id for i in review.list_items(project)}

    review.decide(project, rex, items[first], "accept", note="on reflection it is fine")
    review.decide(project, rex, items[first], "edit",
                  answer="Yes: deleted files stay in Trash for 30 days.", note="better")
    review.decide(project, rex, items[second], "reject", note="too vague to fix")
    with pytest.raises(TuneloopError, match="needs the corrected answer"):
        review.decide(project, rex, items[second], "edit", answer="  ")

    version = enrich(project, ivy, "from-logs").version
    assert version is not None
    answers = {r["metadata"]["request_id"]: r["messages"][-1]["content"] for r in records(version)}
    assert answers == {first: "Yes: deleted files stay in Trash for 30 days."}
    shown = review.show(project, rex, items[first])
    assert [d["decision"] for d in shown.decisions] == ["accepted", "edited"]
    assert shown.status == "edited" and shown.output == "No."
    logged = [e.action for e in audit.list_events(project.store, limit=100)]
    assert logged.count("review.edit") == 1 and logged.count("review.reject") == 1
    with pytest.raises(NotFound):
        review.show(project, rex, 9999)


@sqlite_only
def test_near_duplicates_of_existing_examples_are_dropped(project: Project) -> None:
    ivy = person(project, "ivy")
    question = "How do I share a folder with a colleague who is outside my company account?"
    answer = "Open the folder, choose Share, type their e-mail address and pick Can view."
    first_id = log_request(project, question, answer)
    rate(project, ivy, first_id, rating=1)
    first = enrich(project, ivy, "from-logs").version
    assert first is not None and len(records(first)) == 1

    again = log_request(project, question + "!", answer)  # the same exchange, nearly
    new = log_request(project, "What does error 429 mean?", "You hit the rate limit; wait.")
    rate(project, ivy, again, rating=1)
    rate(project, ivy, new, rating=1)
    report = enrich(project, ivy, "from-logs", filters=Filters(since=utcnow() -
                                                               dt.timedelta(minutes=5)))
    assert report.version is not None and report.version.id != first.id
    kept = {r["metadata"]["request_id"] for r in records(report.version)}
    # The new version is the first one plus what is new: the near copy is not.
    assert kept == {first_id, new}
    assert report.counts["near_duplicate"] >= 2  # the old one (seen in v1) and its near copy
    assert report.version.manifest["lineage"]["parent"] == first.ref
    assert report.version.manifest["lineage"]["new_request_ids"] == [new]


@sqlite_only
def test_filters_pick_variant_audience_window_and_slice(project: Project) -> None:
    ivy = person(project, "ivy")
    ids = {
        "old": log_request(project, "billing question one", "a1", age=dt.timedelta(days=3)),
        "cand": log_request(project, "billing question two", "a2", variant="candidate"),
        "base": log_request(project, "billing question three", "a3"),
        "other": log_request(project, "sync question", "a4"),
    }
    for rid in ids.values():
        rate(project, ivy, rid, rating=1)
    report = enrich(project, ivy, "sliced", filters=Filters(
        variant="base", audience="internal", since=utcnow() - dt.timedelta(days=1),
        slice="billing"))
    assert report.version is not None
    assert [r["metadata"]["request_id"] for r in records(report.version)] == [ids["base"]]
    assert records(report.version)[0]["metadata"]["slice"] == "billing"
    low = enrich(project, ivy, "strict", filters=Filters(min_rating=2))
    assert low.version is None and low.counts["below_min_rating"] == 4


def test_tier2_logs_cannot_be_enriched_without_a_train_approval(project: Project) -> None:
    dev, pia = person(project, "dan"), person(project, "pia", role="privacy")
    customer = person(project, "cus", audience="public")
    rid = log_request(project, "My invoice total is wrong", "Let me check.", principal="cus",
                      audience="public")
    rate(project, customer, rid, rating=1)

    with pytest.raises(ApprovalRequired, match="logs:base"):
        enrich(project, dev, "customers")
    assert review.list_items(project, status=None) == []
    refused = audit.list_events(project.store, limit=5)
    assert any(e.action == "access.refused" and "logs:base" in e.target for e in refused)

    asked = approvals.request(project.store, dev, scope=["logs:base"], uses=["train"],
                              purpose="learn from customer feedback")
    approvals.grant(project.store, pia, asked)
    version = enrich(project, dev, "customers").version
    assert version is not None and version.tier == 2
    assert version.roots == frozenset({"logs:base"}) and version.approvals == (asked,)


@pytest.mark.slow
def test_enrich_and_review_commands_work_from_the_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The commands are thin over the functions tested above, so SQLite alone is enough here.
    project = open_project(tmp_path / "cli", "sqlite", monkeypatch)
    ivy = person(project, "ivy")
    rate(project, ivy, log_request(project, "How do I add a device?", "Sign in on it."),
         rating=1)
    bad = log_request(project, "Can I pay by invoice?", "No idea.")
    rate(project, ivy, bad, rating=-1)
    done = run_cli("enrich", "from-logs", "--since", "1h", cwd=project.root)
    assert done.returncode == 0, done.stderr
    assert "from-logs@" in done.stdout and "queued for review" in done.stdout
    listed = run_cli("review", "list", cwd=project.root)
    assert bad in listed.stdout
    item = review.list_items(project)[0].id
    rejected = run_cli("review", "reject", str(item), "--note", "vague", cwd=project.root)
    assert rejected.returncode == 0 and "rejected" in rejected.stdout
    assert review.list_items(project, status="rejected")[0].request_id == bad
    bad_time = run_cli("enrich", "x", "--since", "yesterday", cwd=project.root)
    assert bad_time.returncode == 1 and "cannot read time" in bad_time.stderr
    project.close()
