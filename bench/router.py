"""Query-type routing benchmark on the bundled example: router accuracy, added latency, and the
routed combination against the best single variant.

    tuneloop demo --dir /tmp/demo        # once: builds, trains and evaluates the four variants
    .venv/bin/python bench/router.py --project /tmp/demo [--eval-run N]

It works on a copy of the project's database (the project itself is not changed) and reads the
newest evaluation run of single variants, acting as the principal who ran it (Tier 2 tickets:
its `train`/`evaluate` approvals are used, as the demo's are).

1. Router accuracy on the `support` dataset's whole test split (the router is trained on its
   train split with `--features`, default the library's `embedding-int8+tfidf`: logistic
   regression over `category`), beside the fp32 `embedding` router (MiniLM alone) trained and
   measured in the same run as the baseline.
2. Added latency per request: what the server runs before a routed request can go to its
   variant (`serve.routing.Router.choose`: featurising the message on one thread, the
   classifier, the slice map), on every test message with the embedders' query caches emptied
   each time (no repeats), wall and thread-CPU time, p50 and p95, for the chosen router and the
   baseline taking turns on each message (ABBA), with their ratio: on a busy machine the wall
   times are inflated and the ratio and CPU times are the figures to compare. The goal is p95
   under 15 ms. A RAG variant embeds the same message with the fp32 model for retrieval: after
   the fp32 `embedding` router the query cache answers it (measured too).
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


def added_latency(project: Any, names: list[str], texts: list[str]) -> dict[str, Any]:
    """Wall and thread-CPU ms of the server's routing step per message for each routed variant
    in `names`, cache emptied each time; the routers take turns on each message (ABBA order), so
    a load drift on this shared machine hits them alike."""
    from tuneloop.rag.embed import get_embedder
    from tuneloop.router.features import forget_queries
    from tuneloop.serve.routing import Router

    router = Router(project)
    model = project.config.knowledge_base.embedding_model
    for name in names:
        router.choose(name, "bench", [{"role": "user", "content": "warm-up"}])
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    reuse = []
    for i, text in enumerate(texts):
        for name in (names if i % 2 == 0 else names[::-1]):
            forget_queries(model)
            w0, c0 = time.perf_counter(), time.thread_time()
            router.choose(name, "bench", [{"role": "user", "content": text}])
            wall[name].append((time.perf_counter() - w0) * 1000)
            cpu[name].append((time.thread_time() - c0) * 1000)
        # A RAG variant then embeds the same text for retrieval: the query cache answers when
        # the router ran the same fp32 embedding (the baseline ran last or first: see `reuse`).
        forget_queries(model)
        router.choose(names[-1], "bench", [{"role": "user", "content": text}])
        w0 = time.perf_counter()
        get_embedder(model).embed_query(text)
        reuse.append((time.perf_counter() - w0) * 1000)

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q))
    return {name: {"wall_p50": pct(wall[name], 50), "wall_p95": pct(wall[name], 95),
                   "cpu_p50": pct(cpu[name], 50), "cpu_p95": pct(cpu[name], 95)}
            for name in names} | {"reuse_p95": pct(reuse, 95)}


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


def train_and_score(project: Any, actor: Any, dataset: str, features: str,
                    name: str) -> dict[str, Any]:
    """Train a router with `features` on the train split; its accuracy on the test split."""
    from tuneloop.data.versions import get_version
    from tuneloop.router import train_router
    from tuneloop.router.train import labelled

    t0 = time.perf_counter()
    trained = train_router(project, actor, dataset, name=name, features=features)
    train_s = time.perf_counter() - t0
    record = trained.record
    texts, labels = labelled(get_version(project, record.dataset_version), "test",
                             record.slice_field)
    predicted = [p.slice for p in record.load().predict(texts)]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))
    return {"trained": trained, "record": record, "accuracy": accuracy, "train_s": train_s,
            "texts": texts, "features": features}


def main() -> int:
    from tuneloop.router.features import DEFAULT

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, required=True,
                        help="a project the demo ran in (its newest evaluation run is used)")
    parser.add_argument("--eval-run", type=int, default=None,
                        help="the evaluation run to route from (default: the newest)")
    parser.add_argument("--features", default=DEFAULT,
                        help=f"the router's features (default {DEFAULT}); the fp32 `embedding` "
                             "router is measured beside it as the baseline")
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.pop("TUNELOOP_DATABASE_URL", None)
    from tuneloop import Project
    from tuneloop.evaluate import load_run
    from tuneloop.governance import principals
    from tuneloop.router import define, evaluate_routed
    from tuneloop.router.evaluate import latest_completed_run
    from tuneloop.store.evals import EvalRun

    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-router-") as tmp:
        project = Project.open(copy_project(args.project.resolve(), Path(tmp) / "proj"))
        run_id = args.eval_run or latest_completed_run(project)
        source = load_run(project, run_id, with_outputs=False)
        with project.store.session(write=False) as session:
            row = session.get(EvalRun, run_id)
            assert row is not None
            who = row.actor
        actor = principals.get_actor(project.store, who)
        approve_on_copy(project, actor, source.dataset)
        # The version the run tested; the baseline is the fp32 embedding router.
        chosen = train_and_score(project, actor, source.dataset, args.features, "bench-router")
        base = train_and_score(project, actor, source.dataset, "embedding", "bench-baseline")
        result = evaluate_routed(project, actor, router=chosen["record"].ref, run_id=run_id,
                                 resamples=args.resamples, report=False)
        r = result.routed
        define(project, actor, "bench-baseline-routed", router=base["record"].ref,
               mapping=r.mapping, fallback=r.fallback, min_confidence=r.min_confidence)
        latency = added_latency(project, [r.name, "bench-baseline-routed"], chosen["texts"])
        load = os.getloadavg()[0]
        project.close()
    return report(source, chosen, base, result, latency, load)


def report(source: Any, chosen: dict[str, Any], base: dict[str, Any], result: Any,
           latency: dict[str, Any], load: float) -> int:
    """Print the table, then the figures as one JSON line."""
    s, gate = result.summary, result.gate
    best = gate["best_single"]
    best_p95 = source.summary["per_variant"][best]["latency"].get("total_ms_p95") or float("nan")
    lat = next(c for c in s["comparisons"] if c["a"] == best and c["metric"] == "total_ms_p95")
    counts = [sum(1 for e in s["examples"] if e["slice"] == x) for x in s["per_slice"]]
    majority = max(counts) / max(1, sum(counts))
    mine, theirs = latency[result.routed.name], latency["bench-baseline-routed"]
    record, n_test = chosen["record"], len(chosen["texts"])
    table = Table("figure", "value", "baseline (fp32 embedding, same run) / CI", "goal",
                  title=f"Query routing on {record.dataset_version} (eval run #{source.run_id}, "
                        f"load {load:.1f}), features {chosen['features']}")
    table.add_row(f"router accuracy, test split ({n_test})", f"{chosen['accuracy']:.3f}",
                  f"{base['accuracy']:.3f} (majority-slice guess {majority:.3f})",
                  f"≥ {GOAL_ACCURACY}")
    table.add_row("router accuracy, validation split",
                  _acc(chosen["trained"].validation_accuracy),
                  _acc(base["trained"].validation_accuracy), "")
    table.add_row("added latency per request, wall p50 / p95",
                  f"{mine['wall_p50']:.1f} / {mine['wall_p95']:.1f} ms",
                  f"{theirs['wall_p50']:.1f} / {theirs['wall_p95']:.1f} ms "
                  f"(ratio p95 {mine['wall_p95'] / theirs['wall_p95']:.2f}); best variant p95 "
                  f"{best_p95:.0f} ms", f"p95 < {GOAL_MS_P95:g} ms")
    table.add_row("added latency per request, thread CPU p50 / p95",
                  f"{mine['cpu_p50']:.1f} / {mine['cpu_p95']:.1f} ms",
                  f"{theirs['cpu_p50']:.1f} / {theirs['cpu_p95']:.1f} ms "
                  f"(ratio p95 {mine['cpu_p95'] / theirs['cpu_p95']:.2f})", "")
    table.add_row("retrieval's embedding of the message after the fp32 embedding router, p95",
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
    table.add_row("routing gate", gate["status"],
                  f"router trained in {chosen['train_s']:.1f} s", "pass")
    console.print(table)
    figures = {
        "bench": "router", "dataset": record.dataset_version, "eval_run": source.run_id,
        "features": chosen["features"],
        "router_accuracy": round(chosen["accuracy"], 3), "goal_router_accuracy": GOAL_ACCURACY,
        "baseline_features": "embedding", "baseline_accuracy": round(base["accuracy"], 3),
        "n_test": n_test, "added_ms_p50": round(mine["wall_p50"], 2),
        "added_ms_p95": round(mine["wall_p95"], 2), "goal_added_ms_p95": GOAL_MS_P95,
        "added_cpu_ms_p95": round(mine["cpu_p95"], 2),
        "baseline_ms_p95": round(theirs["wall_p95"], 2),
        "baseline_cpu_ms_p95": round(theirs["cpu_p95"], 2),
        "ratio_wall_p95": round(mine["wall_p95"] / theirs["wall_p95"], 3),
        "ratio_cpu_p95": round(mine["cpu_p95"] / theirs["cpu_p95"], 3),
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


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
