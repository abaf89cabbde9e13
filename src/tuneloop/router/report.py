"""The routed evaluation's report: report.html (confusion matrix, CI forest), summary.md/json.

Charts are matplotlib SVG inline, like the evaluation report's: no JavaScript, works offline.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jinja2
import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure

from tuneloop.evaluate.charts import forest
from tuneloop.evaluate.report import json_safe


def _svg(fig: Figure, name: str) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"tuneloop-{name}"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.find("<svg"):].replace("<svg ", f'<svg role="img" aria-label="{name}" ', 1)


def confusion_svg(router: dict[str, Any], slice_field: str = "slice") -> str:
    """The router's confusion matrix on the test split: rows true slice, columns predicted."""
    labels, matrix = router["labels"], router["matrix"]
    size = 1.2 + 0.55 * len(labels)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    top = max((max(row) for row in matrix), default=0) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=9,
                    color="white" if count > top / 2 else "#111827")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(f"predicted {slice_field}")
    ax.set_ylabel(f"true {slice_field}")
    ax.set_title(f"router accuracy {router['accuracy']:.3f} (n={router['n']})", fontsize=11)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _svg(fig, "confusion matrix")


PAGE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>routed evaluation #{{ s.run_id }}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:1000px}
table{border-collapse:collapse}td,th{border:1px solid #d1d5db;padding:.3rem .6rem}
.pass{color:#16a34a}.fail{color:#dc2626}</style></head><body>
<h1>Routed variant {{ r.name }} — eval run #{{ s.run_id }}</h1>
<p>From eval run #{{ s.source_run }} on {{ s.dataset }}; router {{ r.router }};
fallback {{ r.fallback }} below confidence {{ r.min_confidence }}.</p>
<h2>Gate: <span class="{{ g.status }}">{{ g.status }}</span></h2>
<p>{{ g.gate }} on {{ g.metric }}: difference {{ "%.4f"|format(g.diff) }}
(95% CI {{ "%.4f"|format(g.low) }} to {{ "%.4f"|format(g.high) }}); rule: {{ g.rule }}.</p>
<p>{{ s.caveat }}</p>
<h2>Router</h2>
<p>Accuracy {{ "%.3f"|format(s.router.accuracy) }}; routing time p50
{{ "%.1f"|format(s.router.ms_p50) }} ms, p95 {{ "%.1f"|format(s.router.ms_p95) }} ms;
{{ s.router.fallbacks }} fallbacks.</p>
{{ confusion|safe }}
<h2>Slice → variant</h2>
<table><tr><th>{{ s.slice_field }}</th><th>variant</th><th>n</th><th>routed</th>
<th>{{ s.best_single }}</th><th>router recall</th></tr>
{% for name, d in s.per_slice.items() %}<tr><td>{{ name }}</td>
<td>{{ r.mapping.get(name, r.fallback) }}</td><td>{{ d.n }}</td>
<td>{{ "%.3f"|format(d.routed) }}</td><td>{{ "%.3f"|format(d.best_single) }}</td>
<td>{{ "%.2f"|format(d.router_recall) }}</td></tr>{% endfor %}</table>
<h2>Routed against every single variant</h2>
{{ forest|safe }}
<table><tr><th>metric</th><th>A</th><th>mean A</th><th>mean routed</th><th>diff</th>
<th>95% CI</th><th>verdict</th></tr>
{% for c in s.comparisons %}<tr><td>{{ c.metric }}</td><td>{{ c.a }}</td>
<td>{{ "%.3f"|format(c.mean_a) }}</td><td>{{ "%.3f"|format(c.mean_b) }}</td>
<td>{{ "%.4f"|format(c.diff) }}</td>
<td>{{ "%.4f"|format(c.low) }} to {{ "%.4f"|format(c.high) }}</td>
<td>{{ c.verdict }}</td></tr>{% endfor %}</table>
</body></html>
""", autoescape=True)


def render_markdown(summary: dict[str, Any]) -> str:
    """A short Markdown summary: gate, router accuracy, the comparisons."""
    g, router = summary["gate"], summary["router"]
    lines = [f"# Routed variant {summary['routed']['name']} (eval run #{summary['run_id']})",
             "", f"- gate: **{g['status']}** — {g['gate']} on {g['metric']}: "
             f"{g['diff']:+.4f} (95% CI {g['low']:+.4f} to {g['high']:+.4f}; {g['rule']})",
             f"- router accuracy {router['accuracy']:.3f}, p95 {router['ms_p95']:.1f} ms",
             "", "| metric | A | diff routed − A | 95% CI | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {c['metric']} | {c['a']} | {c['diff']:+.4f} | {c['low']:+.4f} to "
              f"{c['high']:+.4f} | {c['verdict']} |" for c in summary["comparisons"]]
    return "\n".join(lines) + "\n"


def write_routed_report(summary: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.html, summary.md and summary.json into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "report.html", "markdown": out_dir / "summary.md",
             "json": out_dir / "summary.json"}
    metric = summary["primary_metric"]
    html = PAGE.render(s=summary, r=summary["routed"], g=summary["gate"],
                       confusion=confusion_svg(summary["router"], summary.get("slice_field")
                                               or "slice"),
                       forest=forest([c for c in summary["comparisons"] if c["metric"] == metric],
                                     f"routed − single variant, {metric}", "routed forest"))
    paths["html"].write_text(html, encoding="utf-8")
    paths["markdown"].write_text(render_markdown(summary), encoding="utf-8")
    paths["json"].write_text(json.dumps(json_safe(summary), indent=2, sort_keys=True) + "\n",
                             encoding="utf-8")
    return paths
