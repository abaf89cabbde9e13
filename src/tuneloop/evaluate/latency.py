"""Latency as users feel it: time to first token and total time at p50/p95/p99, tokens/s, tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PERCENTILES = (50, 95, 99)


def percentiles(values_s: Sequence[float]) -> dict[int, float]:
    """p50/p95/p99 of durations given in seconds, returned in milliseconds (NaN when empty)."""
    if len(values_s) == 0:
        return {p: float("nan") for p in PERCENTILES}
    ms = np.asarray(values_s, dtype=float) * 1000.0
    return {p: float(np.percentile(ms, p)) for p in PERCENTILES}


def summarize(ttft_s: Sequence[float], total_s: Sequence[float], prompt_tokens: Sequence[int],
              completion_tokens: Sequence[int], *, concurrency: int = 1,
              wall_s: float | None = None) -> dict[str, Any]:
    """Latency and token figures of one variant's requests.

    `tokens_per_s` is the median per-request decode rate (output tokens after the first token
    over the time after it); `throughput_tokens_per_s` is all output tokens over the wall time of
    the whole batch, which is what concurrency buys.
    """
    ttft = percentiles(ttft_s)
    total = percentiles(total_s)
    rates = [c / (t - f) for f, t, c in zip(ttft_s, total_s, completion_tokens, strict=True)
             if t - f > 0 and c > 0]
    out_tokens = int(sum(completion_tokens))
    summary: dict[str, Any] = {
        "n": len(total_s),
        "concurrency": concurrency,
        **{f"ttft_ms_p{p}": v for p, v in ttft.items()},
        **{f"total_ms_p{p}": v for p, v in total.items()},
        "tokens_per_s": float(np.median(rates)) if rates else 0.0,
        "prompt_tokens": int(sum(prompt_tokens)),
        "completion_tokens": out_tokens,
        "mean_completion_tokens": out_tokens / len(total_s) if len(total_s) else 0.0,
    }
    if wall_s:
        summary["wall_s"] = wall_s
        summary["throughput_tokens_per_s"] = out_tokens / wall_s
    return summary
