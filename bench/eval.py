"""Evaluation benchmark: how fast and how trustworthy the comparison is, and what measuring costs.

    .venv/bin/python bench/eval.py            # full: 10,000 resamples, 16 questions to the model
    .venv/bin/python bench/eval.py --quick    # small version

Figures (each against a baseline measured in the same run):
- bootstrap_speedup: the vectorised paired bootstrap vs the same resampling in a Python loop.
- ci_coverage: share of 95% intervals that contain a known true difference (simulated data).
- eval_overhead_ratio: wall time of `run_variant` (prompt assembly, timing, bookkeeping) over
  calling the bundled model's engine directly on the same prompts, two passes each in ABBA order.
- concurrency_throughput_ratio: output tokens/s with 2 requests in flight over 1 (the bundled
  engine has one llama.cpp context, so the second request waits its turn: the goal is that
  concurrency costs nothing), two passes each in ABBA order.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tuneloop.evaluate.compare import paired_bootstrap

QUESTIONS = [
    ("How do I reset my password?", "Open Settings > Security and choose Reset password."),
    ("How long are deleted files kept?", "Deleted files stay in the trash for 30 days."),
    ("Which plans include SSO?", "SAML and OIDC single sign-on are in Business and Enterprise."),
    ("What does error E404 mean?", "E404 means the file was moved or deleted on the server."),
    ("How do I turn on two-factor authentication?", "Open Settings > Security > 2FA."),
    ("Can I sync only some folders?", "Yes, use Selective Sync in the desktop app."),
    ("What is the API rate limit?", "The API allows 600 requests per minute per token."),
    ("How do I share a link that expires?", "Create a sharing link and set an expiry date."),
]


def loop_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    n = len(a)
    diffs = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(sum(b[i] - a[i] for i in idx) / n)
    diffs.sort()
    return diffs[int(0.025 * resamples)], diffs[int(0.975 * resamples) - 1]


def bench_bootstrap(resamples: int, n: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, n)
    b = a + 0.05 + rng.normal(0, 0.1, n)
    paired_bootstrap(a, b, resamples=100)  # first-call costs (imports, allocator) are not measured
    start = time.perf_counter()
    paired_bootstrap(a, b, resamples=resamples)
    vectorised = time.perf_counter() - start
    start = time.perf_counter()
    loop_bootstrap(a.tolist(), b.tolist(), resamples, 0)
    loop = time.perf_counter() - start
    scipy_s = scipy_bootstrap(a, b, resamples)
    return {"vectorised_s": vectorised, "loop_s": loop, "speedup": loop / vectorised,
            "scipy_s": scipy_s, "vs_scipy": scipy_s / vectorised}


def scipy_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int) -> float:
    """Seconds for `scipy.stats.bootstrap(paired=True)` on the same pairs and resamples: the
    same percentile interval of the mean difference, by the library everyone would reach for."""
    from scipy import stats

    def mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(y - x, axis=axis)

    stats.bootstrap((a, b), mean_difference, paired=True, vectorized=True, n_resamples=100,
                    method="percentile", random_state=0)  # first-call costs, as above
    start = time.perf_counter()
    stats.bootstrap((a, b), mean_difference, paired=True, vectorized=True,
                    n_resamples=resamples, method="percentile", random_state=0)
    return time.perf_counter() - start


def bench_coverage(trials: int) -> float:
    rng = np.random.default_rng(1)
    covered = 0
    for t in range(trials):
        a = rng.normal(0.5, 0.2, 80)
        b = a + rng.normal(0.05, 0.15, 80)
        interval = paired_bootstrap(a, b, resamples=2000, seed=t)
        covered += interval.low <= 0.05 <= interval.high
    return covered / trials


def bench_engine(questions: int) -> dict[str, float] | None:
    from tuneloop import Project
    from tuneloop.evaluate.runner import examples_from_records, run_variant
    from tuneloop.project import starter_config
    from tuneloop.variants import get_variant

    records = [{"id": str(i), "messages": [{"role": "user", "content": q},
                                           {"role": "assistant", "content": r}]}
               for i, (q, r) in enumerate((QUESTIONS * 4)[:questions])]
    examples = examples_from_records(records)
    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-eval-") as tmp:
        os.environ.pop("TUNELOOP_DATABASE_URL", None)
        # The starter project's `base` variant on the bundled model, with shorter answers.
        config = starter_config().replace("max_tokens: 256", "max_tokens: 48")
        project = Project.init(Path(tmp) / "proj", config_text=config)
        actor = project.actor()
        variant = get_variant(project, "base")
        params = variant.params()
        engine = variant.engine
        prompts = [variant.prepare(e.messages, actor).messages for e in examples]
        for prompt in prompts[:3]:  # load, map the weights in, warm the caches
            engine.chat(prompt, params)

        def direct_pass() -> tuple[float, int]:
            start = time.perf_counter()
            tokens = sum(engine.chat(p, params).completion_tokens for p in prompts)
            return time.perf_counter() - start, tokens

        def runner_pass(concurrency: int) -> tuple[float, int, list]:
            outs, _, wall = run_variant(variant, examples, actor, concurrency=concurrency,
                                        warmup=False)
            return wall, sum(o.completion_tokens for o in outs), outs

        # Each pair is timed in ABBA order (A, B, B, A): on a shared machine the load drifts
        # during a run, and a linear drift adds the same to both sides of an ABBA sequence,
        # where comparing one pass with the best of two others would favour the baseline.
        d1 = direct_pass()
        r1, r2 = runner_pass(1), runner_pass(1)
        d2 = direct_pass()
        c1a, c2a, c2b, c1b = runner_pass(1), runner_pass(2), runner_pass(2), runner_pass(1)
        project.close()
    direct, direct_tokens = d1[0] + d2[0], d1[1] + d2[1]
    wall1 = r1[0] + r2[0]
    wall_c1, tokens1 = c1a[0] + c1b[0], c1a[1] + c1b[1]
    wall2, tokens2 = c2a[0] + c2b[0], c2a[1] + c2b[1]
    outs1, outs2 = c1a[2] + c1b[2], c2a[2] + c2b[2]
    return {"direct_s": direct, "runner_s": wall1, "runner2_s": wall2,
            "direct_tok_s": direct_tokens / direct, "tok_s_c1": tokens1 / wall_c1,
            "tok_s_c2": tokens2 / wall2,
            "p95_c1_ms": float(np.percentile([o.total_s for o in outs1], 95) * 1000),
            "p95_c2_ms": float(np.percentile([o.total_s for o in outs2], 95) * 1000)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small version")
    args = parser.parse_args()
    console = Console()
    resamples = 2000 if args.quick else 10_000
    boot = bench_bootstrap(resamples, 200)
    coverage = bench_coverage(100 if args.quick else 400)
    try:
        engine = bench_engine(6 if args.quick else 16)
    except ImportError as exc:  # an engine stage not in this checkout yet
        console.print(f"[yellow]engine part skipped: {exc}[/]")
        engine = None

    table = Table("figure", "value", "baseline", "ratio", "goal",
                  title="Evaluation benchmark" + (" (quick)" if args.quick else ""))
    table.add_row(f"paired bootstrap, {resamples} resamples × 200 pairs",
                  f"{boot['vectorised_s'] * 1000:.1f} ms", f"Python loop {boot['loop_s']:.2f} s",
                  f"{boot['speedup']:.0f}× faster", "≥ 20×")
    table.add_row("  the same against scipy.stats.bootstrap(paired=True)",
                  f"{boot['vectorised_s'] * 1000:.1f} ms", f"scipy {boot['scipy_s'] * 1000:.1f} ms",
                  f"{boot['vs_scipy']:.1f}× faster", "≥ 1×")
    table.add_row("95% CI coverage of a known difference", f"{coverage:.3f}", "nominal 0.950",
                  f"{coverage / 0.95:.3f}", "≥ 0.93")
    figures: dict[str, object] = {
        "bench": "eval", "quick": args.quick,
        "bootstrap_speedup": round(boot["speedup"], 1), "goal_bootstrap_speedup": 20,
        "bootstrap_vs_scipy": round(boot["vs_scipy"], 2),
        "ci_coverage": round(coverage, 3), "goal_ci_coverage": 0.93,
    }
    if engine:
        overhead = engine["runner_s"] / engine["direct_s"]
        conc = engine["tok_s_c2"] / engine["tok_s_c1"]
        table.add_row("runner (concurrency 1) vs direct engine calls",
                      f"{engine['runner_s']:.2f} s", f"direct {engine['direct_s']:.2f} s",
                      f"{overhead:.3f}", "≤ 1.05")
        table.add_row("output tokens/s, 2 in flight vs 1", f"{engine['tok_s_c2']:.1f}",
                      f"{engine['tok_s_c1']:.1f}", f"{conc:.2f}", "≥ 0.95")
        table.add_row("p95 total latency, 2 in flight vs 1", f"{engine['p95_c2_ms']:.0f} ms",
                      f"{engine['p95_c1_ms']:.0f} ms",
                      f"{engine['p95_c2_ms'] / engine['p95_c1_ms']:.2f}", "(reported)")
        figures.update({"eval_overhead_ratio": round(overhead, 3), "goal_eval_overhead_ratio": 1.05,
                        "concurrency_throughput_ratio": round(conc, 3),
                        "goal_concurrency_throughput_ratio": 0.95,
                        "p95_ms_c1": round(engine["p95_c1_ms"], 1),
                        "p95_ms_c2": round(engine["p95_c2_ms"], 1)})
    console.print(table)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
