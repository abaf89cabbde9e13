"""`tuneloop router`: train a query-type router, evaluate routing, define and show routed variants.

Thin: each command calls one function of `tuneloop.router` and renders what it returns.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from tuneloop.cli._common import console, stage_progress, state, when
from tuneloop.router.features import DEFAULT as DEFAULT_FEATURES

app = typer.Typer(help="Query-type routing: train, evaluate, define, show.", no_args_is_help=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command()
def train(
    ctx: typer.Context,
    dataset: str = typer.Option(..., help="Dataset NAME or NAME@VERSION to train on."),
    name: str | None = typer.Option(None, help="Router name (default: DATASET-router)."),
    slice_field: str | None = typer.Option(
        None, help="Record field naming each record's kind (default: the dataset's)."),
    features: str = typer.Option(
        DEFAULT_FEATURES, help="What the router reads, joined by '+': embedding (MiniLM, fp32; "
                               "reused by RAG retrieval), embedding-int8 (MiniLM quantised to "
                               "int8, first 48 word pieces: under half the CPU), tfidf "
                               "(word + char n-grams, scikit-learn)."),
) -> None:
    """Train a new router version on a dataset's slice field (Tier 2 data needs `train`).

    Examples:
      tuneloop router train --dataset support
      tuneloop router train --dataset support --features tfidf
      tuneloop router train --dataset support --features embedding   # fp32 MiniLM only
      tuneloop router train --dataset support@3f2a --slice-field channel --name by-channel
    """
    from tuneloop.router import train_router

    c = state(ctx)
    project = c.project()
    with stage_progress() as progress:
        trained = train_router(project, c.actor(project), dataset, name=name,
                               slice_field=slice_field, features=features, progress=progress)
    record = trained.record
    console.print(f"[green]✓[/] router {record.ref} (tier {record.tier}) on "
                  f"{record.dataset_version}, field {record.slice_field!r}, features "
                  f"{record.lineage.get('features', 'embedding')}; validation accuracy "
                  f"{_pct(trained.validation_accuracy)}")
    table = Table("slice", "training records")
    for label, count in trained.counts.items():
        table.add_row(label, str(count))
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="A router NAME or NAME@vN; all when omitted."),
) -> None:
    """List routers and routed variants, or show one router's lineage.

    Examples:
      tuneloop router show
      tuneloop router show support-router@v2
    """
    from tuneloop.router import get_router, list_routed, list_routers

    c = state(ctx)
    project = c.project()
    records = [get_router(project, name)] if name else list_routers(project)
    table = Table("router", "tier", "dataset version", "field", "slices", "val. acc.",
                  "approvals", "created", title="routers")
    for r in records:
        table.add_row(r.ref, str(r.tier), r.dataset_version, r.slice_field, ", ".join(r.labels),
                      _pct(r.lineage.get("validation_accuracy")),
                      ", ".join(f"#{a}" for a in r.lineage.get("approvals", [])) or "-",
                      f"{when(r.created_at)} by {r.created_by}")
    console.print(table)
    routed = [x for x in list_routed(project) if not name or x.router.startswith(name)]
    table = Table("routed variant", "router", "slice → variant", "fallback (below)", "from",
                  title="routed variants")
    for x in routed:
        table.add_row(x.name, x.router, ", ".join(f"{k} → {v}" for k, v in x.mapping.items()),
                      f"{x.fallback} (<{x.min_confidence:g})", x.source)
    console.print(table)


def _mapping(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        slice_name, sep, variant = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not SLICE=VARIANT", param_hint="--map")
        out[slice_name.strip()] = variant.strip()
    return out


@app.command()
def evaluate(
    ctx: typer.Context,
    router: str = typer.Option(..., help="Router NAME or NAME@vN."),
    run: int | None = typer.Option(None, help="Evaluation run to route from (default: newest)."),
    name: str | None = typer.Option(None, help="Routed variant name (default: NAME-routed)."),
    map_: list[str] = typer.Option([], "--map", help="SLICE=VARIANT (default: best per slice)."),
    fallback: str | None = typer.Option(None, help="Variant for unsure predictions "
                                                  "(default: the best single variant)."),
    min_confidence: float = typer.Option(0.5, help="Below this, the fallback answers."),
    margin: float = typer.Option(0.02, help="Non-inferiority margin on the primary metric."),
) -> None:
    """Evaluate routing on an evaluation run's stored outputs (nothing is generated again).

    Defines the routed variant and compares it with every single variant by paired bootstrap;
    exits 3 when its gate fails (the CI does not show it is not worse than the best variant).

    Examples:
      tuneloop router evaluate --router support-router
      tuneloop router evaluate --router support-router --run 4 --map billing=tuned-rag
    """
    from tuneloop.router import evaluate_routed

    c = state(ctx)
    project = c.project()
    with stage_progress() as progress:
        result = evaluate_routed(project, c.actor(project), router=router, run_id=run, name=name,
                                 mapping=_mapping(map_) if map_ else None, fallback=fallback,
                                 min_confidence=min_confidence, margin=margin,
                                 progress=progress)
    _render(result.summary)
    if result.report_paths:
        console.print(f"report: {result.report_paths['html']}")
    if not result.passed:
        raise typer.Exit(3)


def _render(s: dict[str, Any]) -> None:
    r, g = s["router"], s["gate"]
    console.print(f"routed variant [bold]{s['routed']['name']}[/] (eval run #{s['run_id']}, "
                  f"from #{s['source_run']}): router accuracy {r['accuracy']:.3f} on {r['n']} "
                  f"test examples; routing p95 {r['ms_p95']:.1f} ms; {r['fallbacks']} fallbacks")
    table = Table(s.get("slice_field") or "slice", "n", "→ variant", "router recall",
                  "routed", s["best_single"], title=f"per slice ({s['primary_metric']})")
    for slice_name, d in s["per_slice"].items():
        table.add_row(slice_name, str(d["n"]), s["routed"]["mapping"].get(
            slice_name, s["routed"]["fallback"]), f"{d['router_recall']:.2f}",
            f"{d['routed']:.3f}", f"{d['best_single']:.3f}")
    console.print(table)
    table = Table("metric", "vs", "single", "routed", "diff", "95% CI", "verdict",
                  title="routed against every single variant (paired bootstrap)")
    for comp in s["comparisons"]:
        table.add_row(comp["metric"], comp["a"], f"{comp['mean_a']:.3f}", f"{comp['mean_b']:.3f}",
                      f"{comp['diff']:+.4f}", f"{comp['low']:+.4f} … {comp['high']:+.4f}",
                      comp["verdict"])
    console.print(table)
    color = "green" if g["status"] == "pass" else "red"
    console.print(f"gate [{color}]{g['status']}[/]: {g['gate']} on {g['metric']} "
                  f"({g['rule']}): {g['diff']:+.4f}, CI {g['low']:+.4f} … {g['high']:+.4f}")
    failed = [x["gate"] for x in s["per_variant"][s["routed"]["name"]]["gates"]
              if x.get("required") and x.get("status") == "fail"]
    if failed:
        console.print(f"[red]required gates failed:[/] {', '.join(failed)}")


@app.command()
def define(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Routed variant name (not a variant's name)."),
    router: str = typer.Option(..., help="Router NAME or NAME@vN."),
    map_: list[str] = typer.Option(..., "--map", help="SLICE=VARIANT, once per slice."),
    fallback: str = typer.Option(..., help="Variant for unmapped or unsure messages."),
    min_confidence: float = typer.Option(0.5, help="Below this, the fallback answers."),
) -> None:
    """Write a routed variant by hand (evaluate it before it can go public).

    Example:
      tuneloop router define support-routed --router support-router \\
          --map billing=tuned-rag --map sso=base-rag --fallback tuned-rag
    """
    from tuneloop.router import define as define_routed

    c = state(ctx)
    project = c.project()
    routed = define_routed(project, c.actor(project), name, router=router,
                           mapping=_mapping(map_), fallback=fallback,
                           min_confidence=min_confidence)
    console.print(f"[green]✓[/] routed variant {routed.name}: "
                  + ", ".join(f"{k} → {v}" for k, v in routed.mapping.items())
                  + f"; fallback {routed.fallback}. Roll it out: `tuneloop rollout set ALIAS "
                    f"{routed.name} --stage internal`")
