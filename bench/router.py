"""Query-type routing benchmark on the bundled example: router accuracy, added latency, and the
routed combination against the best single variant.

    tuneloop demo --dir /tmp/demo        # once: builds, trains and evaluates the four variants
    .venv/bin/python bench/router.py --project /tmp/demo [--eval-run N]

It works on a copy of the project's database (the project itself is not changed) and reads the
newest evaluation run of single variants, acting as the principal who ran it (Tier 2 tickets:
its `train`/`evaluate` approvals are used, as the demo's are).

1. Router accuracy on the `support` dataset's whole test split (the router is trained on its
   train split: MiniLM embeddings of the user's message, logistic regression over `category`).
2. Added latency per request: what the server runs before a routed request can go to its
   variant (`serve.routing.Router.choose`: embedding the message on this machine's cores, the
   classifier, the slice map), on every test message with the embedder's query cache emptied
   each time (no repeats), wall and CPU time, p50 and p95; the goal is p95 under 15 ms. Set
   against the best variant's p95 request latency from the same evaluation. A RAG variant embeds
   the same message with the same model for retrieval: the embedder's query cache answers that
   one, so for RAG variants the router's embedding is not an extra one (measured too).
3. Routed − best single variant on the primary metric and on p95 latency, paired bootstrap 95%
   CI, from the outputs the evaluation stored (`router.evaluate_routed`; nothing generated).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
console = Console()
GOAL_MS_P95 = 15.0
GOAL_ACCURACY = 0.8


def copy_project(source: Path, into: Path) -> Path:
    """The project's config and a consistent copy of its SQLite database (WAL included)."""
    into.mkdir(parents=True)
    shutil.copy(source / "tuneloop.yaml", into / "tuneloop.yaml")
    (into / ".tuneloop").mkdir()
    with sqlite3.connect(f"file:{source / '.tuneloop' / 'tuneloop.db'}?mode=ro", uri=True) as db, \
            sqlite3.connect(into / ".tuneloop" / "tuneloop.db") as out:
        db.backup(out)
    return into


def added_latency(project: Any, name: str, texts: list[str]) -> dict[str, float]:
    """Wall and CPU ms of the server's routing step per message, cache emptied each time."""
    from tuneloop.rag.embed import get_embedder
    from tuneloop.serve.routing import Router

    router = Router(project)
    router.choose(name, "bench", [{"role": "user", "content": "warm-up"}])
    embedder = get_embedder(project.config.knowledge_base.embedding_model)
    wall, cpu, reuse = [], [], []
    for text in texts:
        embedder.forget_queries()
        w0, c0 = time.perf_counter(), time.process_time()
        router.choose(name, "bench", [{"role": "user", "content": text}])
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        # A RAG variant then embeds the same text for retrieval: the query cache answers.
        w0 = time.perf_counter()
        embedder.embed_query(text)
        reuse.append((time.perf_counter() - w0) * 1000)
    return {"wall_p50": float(np.percentile(wall, 50)), "wall_p95": float(np.percentile(wall, 95)),
            "cpu_p50": float(np.percentile(cpu, 50)), "cpu_p95": float(np.percentile(cpu, 95)),
            "reuse_p95": float(np.percentile(reuse, 95))}


def approve_on_copy(project: Any, actor: Any, dataset: str) -> None:
    """On the copy only: the demo's approvals may have expired; a privacy principal of the
    project grants the run's principal `train` + `evaluate` on the dataset's Tier 2 sources."""
    from sqlalchemy import select

    from tuneloop.data.versions import get_version
    from tuneloop.governance import approvals, principals
    from tuneloop.store.models import Principal

    version = get_version(project, dataset)
    if version.tier < 2:
        return
    with project.store.session(write=False) as session:
        name = session.scalar(select(Principal.name).where(Principal.role == "privacy"))
    privacy = principals.get_actor(project.store, name)
    request = approvals.request(project.store, actor, scope=sorted(version.roots),
                                uses=["train", "evaluate"], purpose="bench/router.py on a copy")
    approvals.grant(project.store, privacy, request, reason="benchmark on a copy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, required=True,
                        help="a project the demo ran in (its newest evaluation run is used)")
    parser.add_argument("--eval-run", type=int, default=None,
                        help="the evaluation run to route from (default: the newest)")
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.pop("TUNELOOP_DATABASE_URL", None)
    from tuneloop import Project
    from tuneloop.evaluate import load_run
    from tuneloop.governance import principals
    from tuneloop.router import evaluate_routed, train_router
    from tuneloop.router.evaluate import latest_completed_run
    from tuneloop.router.train import labelled

    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-router-") as tmp:
        project = Project.open(copy_project(args.project.resolve(), Path(tmp) / "proj"))
        run_id = args.eval_run or latest_completed_run(project)
        source = load_run(project, run_id, with_outputs=False)
        with project.store.session(write=False) as session:
            from tuneloop.store.evals import EvalRun

            row = session.get(EvalRun, run_id)
            assert row is not None
            who = row.actor
        actor = principals.get_actor(project.store, who)
        approve_on_copy(project, actor, source.dataset)
        t0 = time.perf_counter()
        trained = train_router(project, actor, source.dataset)  # the version the run tested
        train_s = time.perf_counter() - t0
        record = trained.record
        from tuneloop.data.versions import get_version

        texts, labels = labelled(get_version(project, record.dataset_version), "test",
                                 record.slice_field)
        predicted = [p.slice for p in record.load().predict(texts)]
        accuracy = float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))
        result = evaluate_routed(project, actor, router=record.ref, run_id=run_id,
                                 resamples=args.resamples, report=False)
        latency = added_latency(project, result.routed.name, texts)
        load = os.getloadavg()[0]
        project.close()
    return report(source, record, trained, accuracy, len(texts), train_s, result, latency, load)


def report(source: Any, record: Any, trained: Any, accuracy: float, n_test: int,
           train_s: float, result: Any, latency: dict[str, float], load: float) -> int:
    """Print the table, then the figures as one JSON line."""
    s, gate = result.summary, result.gate
    best = gate["best_single"]
    best_p95 = source.summary["per_variant"][best]["latency"].get("total_ms_p95") or float("nan")
    lat = next(c for c in s["comparisons"] if c["a"] == best and c["metric"] == "total_ms_p95")
    counts = [sum(1 for e in s["examples"] if e["slice"] == x) for x in s["per_slice"]]
    majority = max(counts) / max(1, sum(counts))
    table = Table("figure", "value", "baseline / CI", "goal",
                  title=f"Query routing on {record.dataset_version} (eval run #{source.run_id}, "
                        f"load {load:.1f})")
    table.add_row(f"router accuracy, test split ({n_test})", f"{accuracy:.3f}",
                  f"majority-slice guess {majority:.3f}",
                  f"≥ {GOAL_ACCURACY}")
    table.add_row("router accuracy, validation split",
                  "-" if trained.validation_accuracy is None else
                  f"{trained.validation_accuracy:.3f}", "", "")
    table.add_row("added latency per request, wall p50 / p95",
                  f"{latency['wall_p50']:.1f} / {latency['wall_p95']:.1f} ms",
                  f"best variant p95 {best_p95:.0f} ms", f"p95 < {GOAL_MS_P95:g} ms")
    table.add_row("added latency per request, CPU p50 / p95",
                  f"{latency['cpu_p50']:.1f} / {latency['cpu_p95']:.1f} ms", "", "")
    table.add_row("retrieval's embedding of the same message after routing, p95",
                  f"{latency['reuse_p95']:.2f} ms", "(query cache: RAG variants pay once)", "")
    table.add_row(f"routed − {best}, {gate['metric']} ({s['router']['n']} examples)",
                  f"{gate['diff']:+.4f}", f"{gate['low']:+.4f} … {gate['high']:+.4f}",
                  f"lower bound > −{gate['margin']:g}")
    table.add_row(f"routed − {best}, p95 latency (router included)", f"{lat['diff']:+.0f} ms",
                  f"{lat['low']:+.0f} … {lat['high']:+.0f}", "(reported)")
    table.add_row("routed by the map / to the fallback (confidence < "
                  f"{s['routed']['min_confidence']:g})",
                  f"{s['router']['n'] - s['router']['fallbacks']} / {s['router']['fallbacks']}",
                  f"test examples seen in training: {s['router']['train_overlap']}", "0 seen")
    table.add_row("slice → variant", ", ".join(f"{k}→{v}" for k, v in
                                               s["routed"]["mapping"].items()),
                  f"fallback {s['routed']['fallback']}", "")
    table.add_row("routing gate", gate["status"], f"router trained in {train_s:.1f} s", "pass")
    console.print(table)
    figures = {
        "bench": "router", "dataset": record.dataset_version, "eval_run": source.run_id,
        "router_accuracy": round(accuracy, 3), "goal_router_accuracy": GOAL_ACCURACY,
        "n_test": n_test, "added_ms_p50": round(latency["wall_p50"], 2),
        "added_ms_p95": round(latency["wall_p95"], 2), "goal_added_ms_p95": GOAL_MS_P95,
        "added_cpu_ms_p95": round(latency["cpu_p95"], 2),
        "rag_reuse_ms_p95": round(latency["reuse_p95"], 3),
        "best_single": best, "metric": gate["metric"],
        "routed_minus_best": round(gate["diff"], 4),
        "ci_low": round(gate["low"], 4), "ci_high": round(gate["high"], 4),
        "goal_ci_low": -gate["margin"], "gate": gate["status"],
        "routed_minus_best_p95_ms": round(lat["diff"], 1), "load_avg": round(load, 1),
        "fallbacks": s["router"]["fallbacks"], "train_overlap": s["router"]["train_overlap"],
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
