"""The report's charts as inline SVG drawn by matplotlib: no JavaScript, works offline.

Each function takes the run summary (and outputs) and returns an `<svg>` string. Figures are
built with matplotlib's object API (never pyplot), so drawing holds no global state.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import Any, TypeGuard

import matplotlib

from tuneloop.evaluate.summary import Output

matplotlib.use("Agg")

from matplotlib.figure import Figure

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"]
VERDICT_COLORS = {"better": "#16a34a", "worse": "#dc2626", "no evidence": "#6b7280"}


def _svg(fig: Figure, name: str) -> str:
    buffer = io.StringIO()
    # A salt per chart keeps the ids of clip paths unique when several SVGs share one page.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"tuneloop-{name}"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    start = text.find("<svg")
    text = text[start:]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    return text.replace("<svg ", f'<svg role="img" aria-label="{name}" ', 1)


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and math.isfinite(value)


def quality_vs_latency(summary: dict[str, Any]) -> str:
    """Scatter of each variant's primary metric against its p95 total latency, with the SLOs."""
    metric = summary.get("primary_metric")
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for i, variant in enumerate(summary["variants"]):
        data = summary["per_variant"][variant]
        x = data["latency"].get("total_ms_p95")
        y = data["quality"].get(metric) if metric else None
        if not (_finite(x) and _finite(y)):
            continue
        ax.scatter([x], [y], s=90, color=COLORS[i % len(COLORS)], label=variant, zorder=3)
        ax.annotate(variant, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    slo = summary.get("slo", {}).get("p95_ms")
    if _finite(slo):
        ax.axvline(slo, color="#dc2626", linestyle="--", linewidth=1, label=f"p95 SLO {slo:g} ms")
    threshold = next((m.get("threshold") for m in summary.get("metrics", [])
                      if m["name"] == metric), None)
    if _finite(threshold):
        ax.axhline(threshold, color="#6b7280", linestyle=":", linewidth=1,
                   label=f"{metric} gate {threshold:g}")
    ax.set_xlabel("p95 total latency (ms)")
    ax.set_ylabel(f"{metric or 'quality'} (mean)")
    ax.set_title("Quality vs p95 latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _svg(fig, "quality-vs-latency")


def latency_distributions(summary: dict[str, Any], outputs: Sequence[Output]) -> str:
    """Box plots of time to first token and total time per variant (successful requests)."""
    variants = summary["variants"]
    fig = Figure(figsize=(8, 3.6))
    for col, (attr, title) in enumerate((("ttft_s", "Time to first token (ms)"),
                                         ("total_s", "Total time (ms)"))):
        ax = fig.add_subplot(1, 2, col + 1)
        data = [[getattr(o, attr) * 1000 for o in outputs if o.variant == v and not o.error]
                or [float("nan")] for v in variants]
        box = ax.boxplot(data, vert=False, patch_artist=True, showfliers=True,
                         whis=(5, 95), tick_labels=variants)
        for i, patch in enumerate(box["boxes"]):
            patch.set_facecolor(COLORS[i % len(COLORS)])
            patch.set_alpha(0.45)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle("Latency distributions (whiskers: p5–p95)", fontsize=11)
    return _svg(fig, "latency-distributions")


def slice_bars(summary: dict[str, Any]) -> str:
    """Grouped bars: the primary metric per slice and variant."""
    metric = summary.get("primary_metric")
    slices = summary.get("slices") or {}
    variants = summary["variants"]
    names = sorted(slices)
    fig = Figure(figsize=(max(6.0, 0.9 * len(names) * max(1, len(variants)) / 2 + 3), 4.0))
    ax = fig.add_subplot()
    if not names or not metric:
        ax.text(0.5, 0.5, "no slices in this dataset", ha="center", va="center")
        ax.set_axis_off()
        return _svg(fig, "slices")
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        values = [slices[s]["means"].get(variant, {}).get(metric) for s in names]
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [v if _finite(v) else 0 for v in values], width=width,
               color=COLORS[i % len(COLORS)], label=variant)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(names))])
    ax.set_xticklabels([f"{s}\n(n={slices[s]['n']})" for s in names], fontsize=8, rotation=30,
                       ha="right")
    ax.set_ylabel(f"{metric} (mean)")
    ax.set_title(f"{metric} per {summary.get('slice_field') or 'slice'}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _svg(fig, "slices")


def forest(comparisons: Sequence[dict[str, Any]], title: str, name: str) -> str:
    """Forest plot: each comparison's difference (B − A) with its 95% interval and verdict."""
    rows = [c for c in comparisons if _finite(c.get("diff"))]
    fig = Figure(figsize=(7.2, 0.8 + 0.36 * max(1, len(rows))))
    ax = fig.add_subplot()
    if not rows:
        ax.text(0.5, 0.5, "nothing to compare", ha="center", va="center")
        ax.set_axis_off()
        return _svg(fig, name)
    for y, comp in enumerate(reversed(rows)):
        low = comp["low"] if _finite(comp["low"]) else comp["diff"]
        high = comp["high"] if _finite(comp["high"]) else comp["diff"]
        color = VERDICT_COLORS[comp["verdict"]]
        ax.plot([low, high], [y, y], color=color, linewidth=2)
        ax.plot([comp["diff"]], [y], "o", color=color)
    ax.axvline(0, color="#111827", linewidth=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{c['b']} vs {c['a']} · {c['metric']}" for c in reversed(rows)],
                       fontsize=8)
    ax.set_xlabel("difference B − A (95% CI); green better, red worse, grey no evidence")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig, name)
