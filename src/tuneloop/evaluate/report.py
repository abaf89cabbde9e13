"""The evaluation report: one self-contained HTML file (inline SVG charts, inline CSS, no
JavaScript), plus `summary.md` and `summary.json` for humans in a terminal and for machines."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import jinja2

from tuneloop.evaluate import charts
from tuneloop.evaluate.summary import Output, grounding_rows
from tuneloop.numbers import fmt

WORST_PER_VARIANT = 5


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("tuneloop.evaluate", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["fmt"] = fmt
    return env


def worst_examples(outputs: list[Output], variant: str, metric: str | None,
                   k: int = WORST_PER_VARIANT) -> list[Output]:
    """The `k` outputs of `variant` that scored lowest on `metric` (errors first)."""
    rows = [o for o in outputs if o.variant == variant]

    def key(o: Output) -> tuple[int, float]:
        score = o.scores.get(metric) if metric else None
        return (0 if o.error else 1, score if score is not None else math.inf)

    return sorted(rows, key=key)[:k]


def json_safe(value: Any) -> Any:
    """NaN and infinities as null, so the JSON is valid for every reader."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def render_html(result: Any) -> str:
    """The report page of an `EvalResult` as one HTML string."""
    summary = result.summary
    outputs = result.outputs
    primary = summary.get("primary_metric")
    comparisons = summary.get("comparisons", [])
    quality_names = {m["name"] for m in summary.get("metrics", [])}
    quality_comps = [c for c in comparisons if c["metric"] in quality_names]
    latency_comps = [c for c in comparisons if c["metric"].endswith("_ms_p95")]
    figures = {
        "quality-vs-latency": charts.quality_vs_latency(summary),
        "latency-distributions": charts.latency_distributions(summary, outputs),
        "slices": charts.slice_bars(summary),
        "ci-quality": charts.forest(quality_comps, "Quality differences (95% CI)", "ci-quality"),
        "ci-latency": charts.forest(latency_comps, "p95 latency differences in ms (95% CI)",
                                    "ci-latency"),
    }
    worst = {v: worst_examples(outputs, v, primary) for v in summary["variants"]}
    return _env().get_template("report.html.j2").render(
        result=result, summary=summary, figures=figures, worst=worst, primary=primary,
        metric_names=[m["name"] for m in summary.get("metrics", [])],
        comparisons=comparisons, grounding=grounding_rows(summary),
    )


def render_markdown(result: Any) -> str:
    """A short Markdown summary: per-variant figures, gates, primary comparisons, best per slice."""
    summary = result.summary
    names = [m["name"] for m in summary.get("metrics", [])]
    lines = [f"# Evaluation run {result.run_id}", "",
             f"Dataset `{result.dataset}`, {summary.get('split', 'test')} split, concurrency "
             f"{summary.get('concurrency')}.", "",
             "| variant | n | errors | " + " | ".join(names)
             + " | TTFT p95 ms | total p50 ms | total p95 ms | total p99 ms | tokens/s | gates |",
             "|---" * (len(names) + 9) + "|"]
    for variant in summary["variants"]:
        data = summary["per_variant"][variant]
        lat = data["latency"]
        cells = [variant, str(data["n"]), str(data["errors"])]
        cells += [fmt(data["quality"].get(n)) for n in names]
        cells += [fmt(lat.get("ttft_ms_p95"), 0), fmt(lat.get("total_ms_p50"), 0),
                  fmt(lat.get("total_ms_p95"), 0), fmt(lat.get("total_ms_p99"), 0),
                  fmt(lat.get("tokens_per_s"), 1), "pass" if data["passed"] else "**FAIL**"]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [g for v in summary["variants"] for g in summary["per_variant"][v]["gates"]
              if g["status"] == "fail"]
    if failed:
        lines += ["", "## Failed gates", ""]
        lines += [f"- {g['variant']}: {g['gate']} = {fmt(g['value'])} (needs {g['op']} "
                  f"{fmt(g['threshold'])}){'' if g['required'] else ' (optional)'}"
                  for g in failed]
    lines += ["", "## Comparisons (B − A, paired bootstrap 95% CI)", "",
              "| A | B | metric | mean A | mean B | diff | 95% CI | verdict for B |",
              "|---|---|---|---|---|---|---|---|"]
    for c in summary.get("comparisons", []):
        lines.append(f"| {c['a']} | {c['b']} | {c['metric']} | {fmt(c['mean_a'])} | "
                     f"{fmt(c['mean_b'])} | {fmt(c['diff'])} | [{fmt(c['low'])}, "
                     f"{fmt(c['high'])}] | {c['verdict']} |")
    best = summary.get("best_per_slice") or {}
    if best:
        lines += ["", f"## Best variant per {summary.get('slice_field') or 'slice'} "
                  f"({summary.get('primary_metric')})", ""]
        lines += [f"- {s}: {v}" for s, v in sorted(best.items())]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(result: Any, out_dir: str | Path) -> dict[str, Path]:
    """Write report.html, summary.md and summary.json into `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "markdown": out / "summary.md",
             "json": out / "summary.json"}
    # Render everything before writing anything, so a rendering error leaves no partial report.
    html = render_html(result)
    markdown = render_markdown(result)
    data = json.dumps(json_safe({"run_id": result.run_id, "dataset": result.dataset,
                                 **result.summary}), indent=2, sort_keys=True)
    _write_atomic(paths["html"], html)
    _write_atomic(paths["markdown"], markdown)
    _write_atomic(paths["json"], data + "\n")
    return paths
