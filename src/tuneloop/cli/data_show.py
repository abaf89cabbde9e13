"""Rendering a dataset version's lineage for `tuneloop data show` (Rich tables and a histogram)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tuneloop.cli._common import tier_label
from tuneloop.data.versions import SPLITS, DatasetVersion

BAR = 40


def render_version(console: Console, version: DatasetVersion) -> None:
    """Print sources, approvals, recipe, what each step removed, splits and token lengths."""
    m = version.manifest
    console.print(f"[bold]{version.ref}[/]  tier {tier_label(version.tier)}  built "
                  f"{m.get('created_at', '?')} by {m.get('created_by', '?')}")
    if version.roots:
        console.print(f"  Tier 2 roots: {', '.join(sorted(version.roots))}")
    console.print(f"  approvals used: {', '.join(f'#{a}' for a in version.approvals) or 'none'}")
    console.print(f"  base model tokenizer: {m.get('base_model')}")

    sources = Table(title="Sources")
    for col in ("name", "tier", "format", "path", "sha256"):
        sources.add_column(col, overflow="fold")
    for s in m["sources"]:
        sources.add_row(s["name"], tier_label(s["tier"]), s["format"], s["path"], s["sha256"][:16])
    console.print(sources)

    steps = Table(title="Steps")
    for col in ("step", "reason", "removed"):
        steps.add_column(col)
    steps.add_row("read", "", f"{m['steps']['read']:,}")
    for step, reasons in m["steps"]["removed"].items():
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            steps.add_row(step, reason, f"{count:,}")
    steps.add_row("[bold]kept[/]", "", f"[bold]{m['steps']['kept']:,}[/]")
    console.print(steps)

    if m.get("pii_redacted"):
        console.print("PII redacted: " + ", ".join(f"{k} {v:,}" for k, v in
                                                   m["pii_redacted"].items()))
    splits = Table(title="Splits")
    splits.add_column("split")
    splits.add_column("records", justify="right")
    if m.get("slices"):
        splits.add_column(f"by {m['recipe'].get('slice_field')}", overflow="fold")
    for s in SPLITS:
        row = [s, f"{version.counts.get(s, 0):,}"]
        if m.get("slices"):
            row.append(", ".join(f"{k} {v}" for k, v in m["slices"].get(s, {}).items()))
        splits.add_row(*row)
    console.print(splits)

    hist = m["token_histogram"]
    table = Table(title=f"Token lengths (input + output; mean {hist['mean']}, min {hist['min']}, "
                        f"max {hist['max']})")
    table.add_column("tokens", justify="right")
    table.add_column("records", justify="right")
    table.add_column("")
    peak = max((n for _, n in hist["bins"]), default=0) or 1
    for label, count in hist["bins"]:
        if count or _inside(label, hist):
            table.add_row(label, f"{count:,}", "█" * max(1 if count else 0, count * BAR // peak))
    console.print(table)
    r = m["recipe"]
    console.print(f"recipe: sources {r['sources']}, split {r['split']}, near_dup_threshold "
                  f"{r['near_dup_threshold']}, output tokens {r['min_output_tokens']}–"
                  f"{r['max_output_tokens']}, input ≤ {r['max_input_tokens']}, redact "
                  f"{r['redact']}, seed {r['seed']}")


def _inside(label: str, hist: dict) -> bool:
    # Show empty bins only between the shortest and the longest record, so the shape reads.
    if hist["min"] is None:
        return False
    low = int(label.lstrip(">").split("-")[0])
    return hist["min"] <= low <= hist["max"]
