"""Under load, through a crash, and across replicas: every answered request is in the log.

The servers here are real `uvicorn` processes on loopback serving the real app; their variants
run on the real llama.cpp engine over tiny models (see tests/test_serve_support.py), one model
per variant, so every answer can be checked against what the variant the caller's audience may
use answers directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.test_serve_support import (
    CONFIG,
    close_engines,
    direct_answer,
    free_port,
    llama_loader,
    make_keys,
    make_project,
    tiny_models,
)
from tuneloop import Project, rollout
from tuneloop.serve import requestlog
from tuneloop.store import Store
from tuneloop.store.serving import RequestLog

REPO = Path(__file__).resolve().parents[1]
# E-mail detection loads Presidio's recognisers (seconds per process); these prompts hold no
# e-mail addresses, so the servers here redact the other entities only and start faster.
LOAD_CONFIG = CONFIG.replace("queue_size: 64", "queue_size: 256").replace(
    "rate_limit_per_minute: 1000", "rate_limit_per_minute: 5000") + \
    "privacy:\n  redact: [PHONE_NUMBER, PERSON, CREDIT_CARD, IP_ADDRESS, SECRET]\n"
SERVER_SCRIPT = """
import json
import sys
import uvicorn
from tuneloop import Project
from tuneloop.serve.app import create_app
from tests.test_serve_support import llama_loader

project = Project.open(sys.argv[1])
app = create_app(project, variant_loader=llama_loader(project, json.loads(sys.argv[3])))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            limit_concurrency=1000)
"""
VARIANTS = ("base", "candidate")
QUESTIONS = 10  # distinct prompts, each asked by both audiences
ANSWER_TOKENS = 8  # answers in the first burst


@contextmanager
def server_processes(root: Path, count: int = 1, env: dict[str, str] | None = None
                     ) -> Iterator[list[tuple[str, subprocess.Popen]]]:
    """`count` uvicorn subprocesses serving the project on the session's tiny models, started
    together; yields URLs and processes once every one answers /health."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    paths = json.dumps(tiny_models().paths(VARIANTS))
    servers = []
    for _ in range(count):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(root), str(port),
                                 paths], cwd=REPO, env=full_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        servers.append((f"http://127.0.0.1:{port}", proc))
    try:
        deadline = time.monotonic() + 120
        for url, proc in servers:
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield servers
    finally:
        for _, proc in servers:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in servers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def question(i: int, words: int = 0) -> str:
    return f"request {i % QUESTIONS}" + " more" * words


def streamed_text(raw: str) -> str:
    """The answer carried by a server-sent event stream."""
    events = [line[len("data: "):] for line in raw.splitlines() if line.startswith("data: ")]
    return "".join(choice["delta"].get("content") or "" for event in events
                   if event != "[DONE]" for choice in json.loads(event).get("choices", []))


async def one(client: httpx.AsyncClient, url: str, key: str, i: int, stream: bool,
              words: int, max_tokens: int, done: list[str]) -> dict[str, Any]:
    result = await _one(client, url, key, i, stream, words, max_tokens)
    if result["complete"]:
        done.append(result["rid"])
    return result


async def _one(client: httpx.AsyncClient, url: str, key: str, i: int, stream: bool,
               words: int, max_tokens: int) -> dict[str, Any]:
    body = {"model": "assistant", "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": question(i, words)}]}
    headers = {"authorization": f"Bearer {key}"}
    try:
        if not stream:
            r = await client.post(url + "/v1/chat/completions", json=body, headers=headers)
            text = r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else ""
            return {"status": r.status_code, "rid": r.headers.get("x-request-id"),
                    "complete": r.status_code == 200, "text": text}
        async with client.stream("POST", url + "/v1/chat/completions", json=body,
                                 headers=headers) as r:
            raw = b"".join([chunk async for chunk in r.aiter_bytes()]).decode()
            return {"status": r.status_code, "rid": r.headers.get("x-request-id"),
                    "complete": raw.rstrip().endswith("data: [DONE]"),
                    "text": streamed_text(raw)}
    except httpx.TransportError as exc:
        return {"status": None, "rid": None, "complete": False, "error": repr(exc)}


async def burst(url: str, keys: list[str], n: int, words: int = 0,
                max_tokens: int = ANSWER_TOKENS,
                done: list[str] | None = None) -> list[dict[str, Any]]:
    """`n` concurrent requests (every third one streamed); `done` collects answered ids.

    One client (connection pool) per key, as separate callers would have: one pool of hundreds
    of connections spends more time checking its own connections than the server answering.
    """
    done = [] if done is None else done
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    clients = [httpx.AsyncClient(timeout=300, limits=limits) for _ in keys]
    try:
        return await asyncio.gather(*[one(clients[i % len(keys)], url, keys[i % len(keys)], i,
                                          i % 3 == 0, words, max_tokens, done)
                                      for i in range(n)])
    finally:
        for client in clients:
            await client.aclose()


def expected_answers(project: Project) -> dict[tuple[str, str], str]:
    """`{(variant, question): answer}` as each variant answers directly (in this process, on
    the same model files as the server), checking that the variants' answers differ."""
    loader = llama_loader(project, tiny_models().paths(VARIANTS))
    answers = {(v, question(i)): direct_answer(loader, v, [{"role": "user",
                                                           "content": question(i)}],
                                               max_tokens=ANSWER_TOKENS).text
               for v in VARIANTS for i in range(QUESTIONS)}
    close_engines(loader)
    assert all(answers["base", question(i)] != answers["candidate", question(i)]
               for i in range(QUESTIONS))
    return answers


def stored(project: Project, prompt: str, answer: str) -> str:
    """`answer` as the request log stores it: redacted together with the prompt."""
    return requestlog.redact(project.config.privacy.redact, [prompt, answer])[0][-1]


def log_rows(store: Store) -> list[RequestLog]:
    with store.session(write=False) as session:
        return list(session.execute(select(RequestLog)).scalars())


@pytest.fixture
def load_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "proj", LOAD_CONFIG)
    yield project
    project.close()


def roll_out(project: Project) -> None:
    """base serves everyone, candidate only internal callers (its evaluation passed)."""
    me = project.actor()
    rollout.set_stage(project, me, "assistant", "candidate", "internal")
    from tests.test_serve_rollout import record_eval

    record_eval(project, "base", passed=True)
    rollout.set_stage(project, me, "assistant", "base", "all")


@pytest.mark.slow
def test_200_concurrent_requests_then_kill_9_lose_no_answered_request(
        load_project: Project) -> None:
    keys = make_keys(load_project)
    roll_out(load_project)
    audience = {keys.internal: "internal", keys.internal2: "internal", keys.public: "public",
                keys.public2: "public"}
    key_list = list(audience)
    expected = expected_answers(load_project)
    with server_processes(load_project.root) as [(url, proc)]:
        results = asyncio.run(burst(url, key_list, 200))
        assert [r for r in results if r["status"] is None or r["status"] >= 500] == []
        assert all(r["status"] == 200 and r["complete"] for r in results)
        rows = log_rows(load_project.store)
        assert len(rows) == 200
        assert {r.id for r in rows} == {r["rid"] for r in results}
        served = {(row.audience, row.variant) for row in rows}
        assert served == {("internal", "candidate"), ("public", "base")}
        # Each caller got exactly what the variant its audience may use answers to its question,
        # and the log holds that answer (redacted as the server redacts).
        by_id = {row.id: row for row in rows}
        for i, r in enumerate(results):
            variant = "candidate" if audience[key_list[i % 4]] == "internal" else "base"
            assert r["text"] == expected[variant, question(i)], (i, variant)
            assert by_id[r["rid"]].output == stored(load_project, question(i), r["text"])

        # A second burst of longer answers; SIGKILL while the server is answering it.
        async def burst_and_kill() -> list[dict[str, Any]]:
            done: list[str] = []
            task = asyncio.create_task(burst(url, key_list, 200, words=40, max_tokens=32,
                                             done=done))
            while len(done) < 30 and not task.done():
                await asyncio.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
            return await task

        second = asyncio.run(burst_and_kill())
    path = load_project.store.sqlite_path
    assert path is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reopened = Store(f"sqlite:///{path}")
    logged = {row.id for row in log_rows(reopened)}
    answered = [r["rid"] for r in second if r["complete"]]
    assert answered, "the kill came before any answer; nothing was tested"
    assert len(answered) < 200, "the kill came after every answer; nothing was tested"
    assert set(answered) <= logged
    reopened.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_replicas_on_one_postgres_both_log_every_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    monkeypatch.setenv("TUNELOOP_DATABASE_URL", postgres_url)
    project = make_project(tmp_path / "proj", LOAD_CONFIG)
    keys = make_keys(project)
    roll_out(project)
    env = {"TUNELOOP_DATABASE_URL": postgres_url}
    expected = expected_answers(project)
    with server_processes(project.root, 2, env=env) as [(first, _), (second, _)]:
        async def both() -> list[list[dict[str, Any]]]:
            return list(await asyncio.gather(
                burst(first, [keys.internal, keys.public], 60),
                burst(second, [keys.internal2, keys.public2], 60)))

        results = asyncio.run(both())
    assert all(r["status"] == 200 and r["complete"] for batch in results for r in batch)
    for batch in results:  # internal and public callers alternate in each burst
        for i, r in enumerate(batch):
            variant = "candidate" if i % 2 == 0 else "base"
            assert r["text"] == expected[variant, question(i)], (i, variant)
    rows = log_rows(project.store)
    assert len(rows) == 120
    by_replica: dict[str, set[str]] = {}
    for row in rows:
        by_replica.setdefault(row.replica, set()).add(row.id)
    # Each replica logged exactly the requests it answered.
    assert len(by_replica) == 2
    assert {frozenset(ids) for ids in by_replica.values()} == {
        frozenset(r["rid"] for r in batch) for batch in results}
    with project.store.session(write=False) as session:
        public_variants = set(session.execute(
            select(RequestLog.variant).where(RequestLog.audience == "public")).scalars())
        assert public_variants == {"base"}
        assert session.scalar(select(func.count()).select_from(RequestLog)) == 120
    project.close()
