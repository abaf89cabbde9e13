"""Paired bootstrap confidence intervals for the difference between two variants, and verdicts.

Both variants answered the same examples, so the comparison resamples *examples* and takes the
difference on each resample (a paired bootstrap): example difficulty cancels out and the
interval is far narrower than comparing two independent means. The verdict is "better" or
"worse" only when the 95% interval excludes zero; otherwise "no evidence".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Verdict = Literal["better", "worse", "no evidence"]
RESAMPLES = 10_000
# Resample in chunks so that memory stays bounded (chunk × examples indices) on big eval sets.
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A difference (B minus A) with its bootstrap confidence interval."""

    diff: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Comparison:
    """B against A on one metric (optionally within one slice), with a plain verdict."""

    metric: str
    a: str
    b: str
    n: int
    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    verdict: Verdict
    higher_is_better: bool
    slice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _stat_fn(stat: str) -> Callable[[np.ndarray], np.ndarray]:
    if stat == "mean":
        return lambda m: m.mean(axis=-1)
    if stat.startswith("p") and stat[1:].isdigit():
        q = float(stat[1:])
        return lambda m: np.percentile(m, q, axis=-1)
    raise ValueError(f"unknown statistic {stat!r}; use 'mean' or a percentile such as 'p95'")


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                     stat: str = "mean", resamples: int = RESAMPLES, confidence: float = 0.95,
                     seed: int = 0) -> Interval:
    """Difference stat(B) - stat(A) over paired values and its percentile bootstrap interval.

    Pairs where either value is NaN (metric not applicable) are dropped. With fewer than two
    pairs the interval is infinite, so no verdict can come of it.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape[0]} and {y.shape[0]}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.shape[0])
    if n == 0:
        return Interval(float("nan"), float("-inf"), float("inf"), 0)
    fn = _stat_fn(stat)
    diff = float(fn(y) - fn(x))
    if n < 2:
        return Interval(diff, float("-inf"), float("inf"), n)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CHUNK_CELLS // n))
    # The narrowest index type: drawing and gathering 16-bit indices is ~1.7x faster than 64-bit.
    index_type = np.int16 if n < 2**15 else np.int32 if n < 2**31 else np.int64
    stats: list[np.ndarray] = []
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        idx = rng.integers(0, n, size=(size, n), dtype=index_type)
        if stat == "mean":
            # For the mean, resampling the per-example differences is the same and half the work.
            stats.append((y - x)[idx].mean(axis=1))
        else:
            stats.append(fn(y[idx]) - fn(x[idx]))
        done += size
    all_stats = np.concatenate(stats)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(all_stats, [tail, 100 - tail])
    return Interval(diff, float(low), float(high), n)


def verdict(interval: Interval, higher_is_better: bool) -> Verdict:
    """"better" when the interval lies wholly on the good side of 0, "worse" on the bad side."""
    if not np.isfinite(interval.low) or not np.isfinite(interval.high):
        return "no evidence"
    if interval.low > 0:
        return "better" if higher_is_better else "worse"
    if interval.high < 0:
        return "worse" if higher_is_better else "better"
    return "no evidence"


def compare_pair(metric: str, a_name: str, b_name: str, a: Sequence[float], b: Sequence[float],
                 *, higher_is_better: bool = True, stat: str = "mean",
                 slice: str | None = None, resamples: int = RESAMPLES,
                 seed: int = 0) -> Comparison:
    """B against A on one metric: means, difference, interval and verdict."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    interval = paired_bootstrap(x, y, stat=stat, resamples=resamples, seed=seed)
    fn = _stat_fn(stat)
    mean_a = float(fn(x[keep])) if keep.any() else float("nan")
    mean_b = float(fn(y[keep])) if keep.any() else float("nan")
    return Comparison(metric, a_name, b_name, interval.n, mean_a, mean_b, interval.diff,
                      interval.low, interval.high, verdict(interval, higher_is_better),
                      higher_is_better, slice)
