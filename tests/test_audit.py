"""The audit chain detects every kind of tampering done directly in SQL, and stays whole under
concurrent appends from many processes."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from sqlalchemy import text

from tuneloop.governance import audit
from tuneloop.store import AuditEvent, Store


def seed(store: Store, n: int = 6) -> None:
    with store.session() as s:
        for i in range(n):
            audit.record(
                s,
                actor=f"user{i % 2}",
                action="test.event",
                target=f"thing:{i}",
                tier=1 + i % 2,
                details={"i": i, "note": "ünïcode"},
            )


def run_sql(store: Store, sql: str, **params) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(sql), params)


def test_untouched_chain_verifies(store) -> None:
    seed(store)
    result = audit.verify(store)
    assert result.ok and result.count == 6
    assert "6 events" in str(result)


def test_edited_event_is_detected_and_named(store) -> None:
    seed(store)
    run_sql(store, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    result = audit.verify(store)
    assert not result.ok and result.first_bad_seq == 3
    assert "edited" in result.problem and "mallory" in result.problem


def test_edited_details_are_detected(store) -> None:
    seed(store)
    run_sql(store, "UPDATE audit_events SET details = :d WHERE seq = 5", d='{"i":99}')
    assert audit.verify(store).first_bad_seq == 5


def test_deleted_event_is_detected(store) -> None:
    seed(store)
    run_sql(store, "DELETE FROM audit_events WHERE seq = 2")
    result = audit.verify(store)
    assert not result.ok and result.first_bad_seq == 2 and "missing" in result.problem


def test_deleted_last_event_is_detected(store) -> None:
    seed(store)
    run_sql(store, "DELETE FROM audit_events WHERE seq = 6")
    result = audit.verify(store)
    assert not result.ok and "deleted" in result.problem


def test_inserted_event_is_detected(store) -> None:
    seed(store)
    # Make room at seq 4 by shifting the tail, then insert a forged event there.
    run_sql(store, "UPDATE audit_events SET seq = seq + 100 WHERE seq >= 4")
    run_sql(store, "UPDATE audit_events SET seq = seq - 99 WHERE seq >= 104")
    run_sql(
        store,
        "INSERT INTO audit_events (seq, ts, actor, action, target, tier, details, "
        "prev_hash, hash) SELECT 4, ts, 'mallory', 'approval.grant', 'x', 2, '{}', "
        "hash, hash FROM audit_events WHERE seq = 3",
    )
    result = audit.verify(store)
    assert not result.ok and result.first_bad_seq == 4


def test_reordered_events_are_detected(store) -> None:
    seed(store)
    run_sql(store, "UPDATE audit_events SET seq = 100 WHERE seq = 2")
    run_sql(store, "UPDATE audit_events SET seq = 2 WHERE seq = 3")
    run_sql(store, "UPDATE audit_events SET seq = 3 WHERE seq = 100")
    result = audit.verify(store)
    assert not result.ok and result.first_bad_seq == 2


def test_recomputing_one_hash_does_not_hide_an_edit(store) -> None:
    seed(store)
    with store.session(write=False) as s:
        row = s.execute(text("SELECT prev_hash FROM audit_events WHERE seq = 3")).one()
    # An attacker edits event 3 and re-links it correctly; event 4 no longer follows it.
    run_sql(store, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    with store.session(write=False) as s:
        event = s.get(AuditEvent, 3)
        forged = audit._event_hash(event, row.prev_hash, audit.chain_key(store))
    run_sql(store, "UPDATE audit_events SET hash = :h WHERE seq = 3", h=forged)
    result = audit.verify(store)
    assert not result.ok and result.first_bad_seq == 4


def _append_many(url: str, worker: int, count: int) -> None:
    store = Store(url)
    for i in range(count):
        with store.session() as s:
            audit.record(s, actor=f"worker{worker}", action="load.append", target=str(i))
    store.dispose()


@pytest.mark.slow
def test_eight_processes_appending_at_once_leave_one_valid_chain(database_url) -> None:
    Store(database_url).dispose()  # migrate once before the race
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(database_url, w, 200)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0
    store = Store(database_url)
    result = audit.verify(store)
    assert result.ok, str(result)
    assert result.count == 1600
    with store.session(write=False) as s:
        per_worker = s.execute(
            text("SELECT actor, COUNT(*) FROM audit_events GROUP BY actor ORDER BY actor")
        ).all()
    assert [(a, n) for a, n in per_worker] == [(f"worker{w}", 200) for w in range(8)]
    store.dispose()
