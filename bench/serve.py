"""What `tuneloop serve` costs on top of the engine, and how many requests per second it serves.

    .venv/bin/python bench/serve.py [--quick]

The same chat requests go straight to the engine (`variant.engine.chat` on the prompt the variant
builds) and through the server over loopback HTTP (auth, routing, limits, redaction, request log
committed before the answer), alternating one by one so both see the same machine load. Then
requests per second through the server at concurrency 1, 4 and 16. Model: the bundled
SmolLM2-135M-Instruct on llama.cpp, no RAG. Goal: served/direct latency ratio ≤ 1.05.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("TUNELOOP_DATABASE_URL", None)

import httpx
from rich.console import Console
from rich.table import Table

from tuneloop import Project
from tuneloop.governance import principals
from tuneloop.serve.app import create_app
from tuneloop.serve.background import serve_in_background

GOAL_RATIO = 1.05
CONFIG = """\
version: 1
task:
  name: bench-serve
  system_prompt: You are a helpful assistant. Answer briefly.
variants:
  - name: base
    generation: {max_tokens: 32, temperature: 0}
server:
  queue_size: 64
  rate_limit_per_minute: 100000
"""
QUESTIONS = [
    "How do I reset my password?", "What is two-factor authentication?",
    "How can I share a folder with my team?", "Why is my sync slow?",
    "How do I install the client on Linux?", "What happens to deleted files?",
    "Can I restore an older version of a file?", "How do refunds work?",
    "What is selective sync?", "How do I set up single sign-on?",
    "What are the API rate limits?", "How do I invite a new admin?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small version (fewer requests)")
    args = parser.parse_args()
    rounds = 6 if args.quick else 24
    per_level = {1: 4, 4: 8, 16: 16} if args.quick else {1: 8, 4: 16, 16: 32}
    console = Console(stderr=False)

    root = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    (root / "tuneloop.yaml").write_text(CONFIG, encoding="utf-8")
    Project.init(root).close()
    project = Project.open(root)
    key = principals.create_key(project.store, project.actor(), "bench").secret
    app = create_app(project, retention=False)
    server_state = app.state.server
    variant = server_state.variant("base")
    with console.status("loading the model..."):
        engine = variant.engine
        params = variant.params()
        engine.chat(variant.prepare([{"role": "user", "content": "hi"}],
                                    project.actor()).messages, params)
    actor = project.actor()
    # serve_in_background: a TCP socket with Nagle off, as uvicorn serves in production
    with serve_in_background(app) as url:
        headers = {"authorization": f"Bearer {key}"}
        client = httpx.Client(timeout=120, headers=headers)
        # Warm the server path (first request loads the redactor's and HTTP stack's caches).
        client.post(url + "/v1/chat/completions",
                    json={"model": "base", "messages": [{"role": "user", "content": "hi"}]})

        direct: list[float] = []
        served: list[float] = []
        same_text = 0
        for i in range(rounds):
            messages = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]

            def via_engine(messages: list[dict[str, str]] = messages) -> str:
                start = time.perf_counter()
                prepared = variant.prepare(messages, actor)
                text = engine.chat(prepared.messages, params).text
                direct.append(time.perf_counter() - start)
                return text

            def via_server(messages: list[dict[str, str]] = messages) -> str:
                start = time.perf_counter()
                r = client.post(url + "/v1/chat/completions",
                                json={"model": "base", "messages": messages})
                r.raise_for_status()
                served.append(time.perf_counter() - start)
                return r.json()["choices"][0]["message"]["content"]

            first, second = (via_engine, via_server) if i % 2 == 0 else (via_server, via_engine)
            a, b = first(), second()
            same_text += a == b

        throughput: dict[int, float] = {}
        for level, count in per_level.items():
            def one(i: int) -> None:
                r = client.post(url + "/v1/chat/completions", json={
                    "model": "base",
                    "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]})
                r.raise_for_status()

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=level) as pool:
                list(pool.map(one, range(count)))
            throughput[level] = count / (time.perf_counter() - start)

        client.close()
    project.close()

    med_d, med_s = statistics.median(direct), statistics.median(served)
    p95_d, p95_s = percentile(direct, 95), percentile(served, 95)
    table = Table(title=f"tuneloop serve vs the engine directly ({rounds} requests each, "
                        "SmolLM2-135M on llama.cpp, 32 tokens)")
    for col in ("", "engine direct", "through serve", "ratio (goal ≤ 1.05)"):
        table.add_column(col, justify="right")
    table.add_row("median latency", f"{med_d * 1000:.0f} ms", f"{med_s * 1000:.0f} ms",
                  f"{med_s / med_d:.3f}")
    table.add_row("p95 latency", f"{p95_d * 1000:.0f} ms", f"{p95_s * 1000:.0f} ms",
                  f"{p95_s / p95_d:.3f}")
    console.print(table)
    rps = Table(title="requests per second through tuneloop serve")
    rps.add_column("concurrency", justify="right")
    rps.add_column("requests", justify="right")
    rps.add_column("req/s", justify="right")
    rps.add_column("vs concurrency 1", justify="right")
    for level, value in throughput.items():
        rps.add_row(str(level), str(per_level[level]), f"{value:.2f}",
                    f"{value / throughput[1]:.2f}x")
    console.print(rps)
    console.print(f"identical answers direct vs served at temperature 0: {same_text}/{rounds}")
    figures = {"bench": "serve", "quick": args.quick, "requests": rounds,
               "median_ms_direct": round(med_d * 1000, 1),
               "median_ms_served": round(med_s * 1000, 1),
               "p95_ms_direct": round(p95_d * 1000, 1), "p95_ms_served": round(p95_s * 1000, 1),
               "median_ratio": round(med_s / med_d, 4), "p95_ratio": round(p95_s / p95_d, 4),
               "goal_median_ratio": GOAL_RATIO, "goal_p95_ratio": GOAL_RATIO,
               "rps_c1": round(throughput[1], 3), "rps_c4": round(throughput[4], 3),
               "rps_c16": round(throughput[16], 3), "same_answers": same_text}
    sys.stdout.flush()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
