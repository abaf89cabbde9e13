"""Flywheel benchmark: monitor, enrich and erase over a request log of N rows, each against the
unavoidable cost measured in the same run (reading the same rows straight from the store).

    .venv/bin/python bench/flywheel.py [--quick]

Rows are inserted directly (no redaction: the point is the flywheel's own cost). The last line is
one JSON object with the figures and their goals.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import insert, select

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("TUNELOOP_DATABASE_URL", None)

CONFIG = """\
version: 1
task: {name: bench}
variants: [{name: base}, {name: candidate}]
"""
GOALS = {"monitor_ratio": 20.0, "enrich_ratio": 20.0, "erase_ratio": 20.0}
WORDS = [
    "sync", "conflict", "device", "laptop", "phone", "folder", "share", "invoice", "billing",
    "password", "reset", "error", "upload", "download", "quota", "team", "admin", "audit",
    "login", "token", "webhook", "offline", "mobile", "version", "restore", "trash", "link",
    "guest", "storage", "plan", "refund", "region", "proxy", "firewall", "update",
]


def seed(project, n: int) -> None:
    from tuneloop.data.records import subject_hash
    from tuneloop.store.models import utcnow
    from tuneloop.store.serving import Feedback, RequestLog

    now = utcnow()
    logs, feedback = [], []
    rng = random.Random(7)
    for i in range(n):
        # Distinct questions, so that near-duplicate removal keeps most of them.
        words = " ".join(rng.choices(WORDS, k=12))
        rid = f"r{i:08d}"
        subject = subject_hash("target@example.com") if i % 100 == 0 else None
        logs.append({"id": rid, "created_at": now, "principal": "ivy", "audience": "internal",
                     "model": "assistant", "variant": "base" if i % 2 else "candidate",
                     "tier": 1, "status": 500 if i % 50 == 7 else 200, "error": "", "stream": False,
                     "prompt": [{"role": "user", "content": f"{words}?"}],
                     "output": f"answer {i}: {' '.join(rng.choices(WORDS, k=10))}",
                     "redactions": {}, "chunk_ids": [], "finish_reason": "stop",
                     "prompt_tokens": 12, "completion_tokens": 9, "ttft_ms": 40.0 + i % 30,
                     "total_ms": 200.0 + i % 300, "replica": "bench", "subject": subject,
                     "shadow_of": None})
        if i % 3 == 0:
            feedback.append({"request_id": rid, "principal": "ivy",
                             "rating": 1 if i % 9 else -1, "comment": "", "redactions": {},
                             "corrected": f"corrected answer {i}" if i % 27 == 0 else None,
                             "created_at": now})
    with project.store.session() as session:
        for start in range(0, n, 5000):
            session.execute(insert(RequestLog), logs[start:start + 5000])
        for start in range(0, len(feedback), 5000):
            session.execute(insert(Feedback), feedback[start:start + 5000])


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def raw_scan(project) -> int:
    from tuneloop.store.serving import Feedback, RequestLog

    with project.store.session(write=False) as session:
        rows = session.execute(select(RequestLog.id, RequestLog.prompt, RequestLog.output,
                                      RequestLog.total_ms)).all()
        rows += session.execute(select(Feedback.id, Feedback.rating)).all()
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 rows instead of 20,000")
    args = parser.parse_args()
    n = 2_000 if args.quick else 20_000
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tuneloop import Project
    from tuneloop.flywheel.enrich import enrich
    from tuneloop.flywheel.erasure import erase
    from tuneloop.flywheel.monitor import monitor

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        root.mkdir()
        (root / "tuneloop.yaml").write_text(CONFIG, encoding="utf-8")
        Project.init(root).close()
        project = Project.open(root)
        seed(project, n)
        actor = project.actor()  # the creator: an admin, who may erase
        import datasketch  # noqa: F401  (a one-time import of seconds, not the flywheel's cost)
        raw_s, _ = timed(lambda: raw_scan(project))
        monitor_s, report = timed(lambda: monitor(project))
        enrich_s, enriched = timed(lambda: enrich(project, actor, "bench"))
        erase_s, erased = timed(lambda: erase(project, actor, "target@example.com"))
        project.close()
    figures = {"monitor": monitor_s, "enrich": enrich_s, "erase": erase_s}
    table = Table(title=f"flywheel over {n:,} logged requests (baseline: read them, {raw_s:.2f} s)")
    for col in ("step", "seconds", "x baseline", "goal", "what it did"):
        table.add_column(col, justify="left" if col in ("step", "what it did") else "right")
    done = {"monitor": f"{len(report.variants)} variants, breached={report.breached}",
            "enrich": f"{len(enriched.version or [])} records, "
                      f"{len(enriched.queued)} queued for review",
            "erase": f"{erased.counts['request_logs']} logs, "
                     f"{erased.counts['dataset_records']} dataset records"}
    for step, seconds in figures.items():
        table.add_row(step, f"{seconds:.2f}", f"{seconds / raw_s:.1f}",
                      f"<= {GOALS[step + '_ratio']:g}", done[step])
    console.print(table)
    out = {"bench": "flywheel", "rows": n, "baseline_read_s": round(raw_s, 3)}
    for step, seconds in figures.items():
        out[f"{step}_s"] = round(seconds, 3)
        out[f"{step}_ratio"] = round(seconds / raw_s, 2)
        out[f"goal_{step}_ratio"] = GOALS[f"{step}_ratio"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
