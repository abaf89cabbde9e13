"""`tuneloop eval`: evaluate variants, show and compare stored runs, and evaluate online traffic."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from tuneloop.cli._common import console, stage_progress, state, when
from tuneloop.errors import GateFailed
from tuneloop.numbers import fmt

# No `help=` here: the group's help is the callback's docstring (it runs the evaluation).
app = typer.Typer(no_args_is_help=False)


_VERDICT_STYLE = {"better": "bold green", "worse": "bold red", "no evidence": "dim"}


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    variants: str | None = typer.Option(None, "--variants", "-v",
                                        help="Comma-separated variant names (default: all)."),
    dataset: str | None = typer.Option(None, "--dataset", "-d",
                                       help="NAME or NAME@VERSION (default: the first dataset)."),
    limit: int | None = typer.Option(None, "--limit", min=1,
                                     help="Evaluate only the first N test examples."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1,
                                           help="Requests in flight "
                                                "(default: latency.concurrency)."),
    gate: str = typer.Option("all", "--gate",
                             help="Variants whose required gates decide the exit code: "
                                  "'all', 'none' or comma-separated names."),
) -> None:
    """Run variants over the test split, store every output, write the report, apply the gates.

    Exits with code 3 when a required gate of a gated variant fails, so it can run in CI.

    Example:  tuneloop eval --variants base,base-rag --dataset support@3
    """
    if ctx.invoked_subcommand is not None:
        return

    from tuneloop.evaluate import evaluate

    opts = state(ctx)
    project = opts.project()
    actor = opts.actor(project)
    names = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    with stage_progress() as progress:
        result = evaluate(project, actor, names, dataset, limit=limit, concurrency=concurrency,
                          progress=progress)
    _render_summary(result.run_id, result.dataset, result.summary)
    for kind, path in result.report_paths.items():
        console.print(f"{kind}: {path}")
    gated = (result.variants if gate == "all" else [] if gate == "none"
             else [g.strip() for g in gate.split(",") if g.strip()])
    failed = result.failed_gates(gated)
    if failed:
        lines = "; ".join(f"{g['variant']} {g['gate']} = {fmt(g['value'])} (needs {g['op']} "
                          f"{fmt(g['threshold'])})" for g in failed)
        raise GateFailed(f"evaluation run {result.run_id}: required gates failed: {lines}",
                         hint=f"see {result.report_paths.get('html', 'the report')}")


@app.command("list")
def list_cmd(ctx: typer.Context,
             limit: int = typer.Option(20, "--limit", min=1, help="How many runs.")) -> None:
    """List the most recent evaluation runs.

    Example:  tuneloop eval list --limit 5
    """
    from tuneloop.evaluate import list_runs

    project = state(ctx).project()
    table = Table("run", "status", "dataset", "variants", "concurrency", "by", "created")
    for row in list_runs(project, limit):
        table.add_row(str(row.id), row.status, row.dataset_version, ", ".join(row.variants),
                      str(row.concurrency), row.actor, when(row.created_at))
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, run_id: int = typer.Argument(..., metavar="RUN")) -> None:
    """Show one stored run: per-variant quality, latency, gates and comparisons.

    Example:  tuneloop eval show 3
    """
    from tuneloop.evaluate import load_run

    project = state(ctx).project()
    result = load_run(project, run_id, with_outputs=False)
    if result.status != "completed":
        console.print(f"run {run_id} is [bold]{result.status}[/]")
    if result.summary:
        _render_summary(result.run_id, result.dataset, result.summary)
    for kind, path in result.report_paths.items():
        console.print(f"{kind}: {path}")


@app.command("compare")
def compare(ctx: typer.Context, first: int = typer.Argument(..., metavar="RUN"),
            second: int | None = typer.Argument(None, metavar="[RUN]")) -> None:
    """Compare the variants of one run with each other, or of two runs example by example.

    Example:  tuneloop eval compare 3 5
    """
    from tuneloop.evaluate import compare_runs, load_run

    project = state(ctx).project()
    if second is None:
        result = load_run(project, first, with_outputs=False)
        _render_comparisons(result.summary.get("comparisons", []),
                            f"run {first}: paired bootstrap 95% CI (B − A)")
        return
    summary = compare_runs(project, first, second)
    _render_summary(None, f"runs {first} and {second}", summary)


@app.command("online")
def online(ctx: typer.Context,
           since: str = typer.Option("24h", "--since", help="Window: 30m, 24h, 7d."),
           variant: str | None = typer.Option(None, "--variant", help="Only this variant."),
           judge: str | None = typer.Option(None, "--judge",
                                            help="Model to judge rated requests with "
                                                 "(reports agreement with the ratings)."),
           limit: int = typer.Option(200, "--judge-limit", min=1,
                                     help="At most this many rated requests are judged.")) -> None:
    """Latency, feedback rates and judge-human agreement per variant over the request log.

    Example:  tuneloop eval online --since 24h --judge base
    """
    from tuneloop.evaluate.online import evaluate_online

    opts = state(ctx)
    project = opts.project()
    report = evaluate_online(project, opts.actor(project), since=since, variant=variant,
                             judge_model=judge, judge_limit=limit)
    table = Table("variant", "requests", "errors", "TTFT p50/p95 ms", "total p50/p95/p99 ms",
                  "tokens/s", "rated", "👍 rate", "corrections", "judge agreement",
                  title=f"Online, {report['window']['start']} to {report['window']['end']}")
    for name, data in report["variants"].items():
        lat = data["latency"]
        agreement = data.get("judge_agreement")
        table.add_row(
            name, str(data["requests"]), str(data["errors"]),
            f"{fmt(lat['ttft_ms_p50'], 0)} / {fmt(lat['ttft_ms_p95'], 0)}",
            f"{fmt(lat['total_ms_p50'], 0)} / {fmt(lat['total_ms_p95'], 0)} / "
            f"{fmt(lat['total_ms_p99'], 0)}",
            fmt(lat["tokens_per_s"], 1), str(data["feedback"]["rated"]),
            fmt(data["feedback"]["positive_rate"], 2), str(data["feedback"]["corrections"]),
            "–" if not agreement else f"{fmt(agreement['agreement'], 2)} (n={agreement['n']})")
    console.print(table)
    if report.get("slices"):  # routed requests, by the slice their router predicted
        table = Table("predicted slice", "requests", "errors", "total p50/p95 ms", "rated",
                      "👍 rate", "corrections", title="Routed requests by predicted slice")
        for name, data in report["slices"].items():
            lat, fb = data["latency"], data["feedback"]
            table.add_row(name, str(data["requests"]), str(data["errors"]),
                          f"{fmt(lat['total_ms_p50'], 0)} / {fmt(lat['total_ms_p95'], 0)}",
                          str(fb["rated"]), fmt(fb["positive_rate"], 2), str(fb["corrections"]))
        console.print(table)


def _render_summary(run_id: int | None, dataset: str, summary: dict[str, Any]) -> None:
    names = [m["name"] for m in summary.get("metrics", [])]
    title = (f"Evaluation run {run_id} on {dataset}" if run_id is not None else dataset)
    title += f" (concurrency {summary.get('concurrency', 1)})"
    table = Table("variant", "n", "err", *names, "TTFT p95 ms", "total p50/p95/p99 ms",
                  "tok/s", "gates", title=title)
    for variant in summary.get("variants", []):
        data = summary["per_variant"][variant]
        lat = data["latency"]
        table.add_row(
            variant, str(data["n"]), str(data["errors"]),
            *[fmt(data["quality"].get(n)) for n in names],
            fmt(lat.get("ttft_ms_p95"), 0),
            f"{fmt(lat.get('total_ms_p50'), 0)} / {fmt(lat.get('total_ms_p95'), 0)} / "
            f"{fmt(lat.get('total_ms_p99'), 0)}",
            fmt(lat.get("tokens_per_s"), 1),
            "[green]pass[/]" if data["passed"] else "[bold red]FAIL[/]")
    console.print(table)
    failed = [g for v in summary.get("variants", []) for g in summary["per_variant"][v]["gates"]
              if g["status"] == "fail"]
    for g in failed:
        optional = "" if g["required"] else " [dim](optional)[/]"
        console.print(f"  [red]✗[/] {g['variant']}: {g['gate']} = {fmt(g['value'])} "
                      f"(needs {g['op']} {fmt(g['threshold'])}){optional}")
    _render_grounding(summary)
    primary = summary.get("primary_metric")
    comps = [c for c in summary.get("comparisons", [])
             if c["metric"] in (primary, "total_ms_p95")]
    _render_comparisons(comps, "Comparisons (B − A, paired bootstrap 95% CI)")
    for note in summary.get("notes") or []:
        console.print(f"[yellow]note:[/] {note}")
    best = summary.get("best_per_slice") or {}
    if best:
        console.print(f"Best variant per {summary.get('slice_field') or 'slice'} ({primary}): "
                      + ", ".join(f"{s} → {v}" for s, v in sorted(best.items())))


def _render_grounding(summary: dict[str, Any]) -> None:
    """Where RAG answers are lost: key facts in the sources given vs in the answers."""
    from tuneloop.evaluate.summary import grounding_rows

    rows = grounding_rows(summary)
    if not rows:
        return
    table = Table("variant", summary.get("slice_field") or "slice", "n",
                  "context holds key", "answer states key", "answer / context",
                  "states it when held", title="Where answers are lost (key facts)")
    for variant, name, g in rows:
        table.add_row(variant if name == "all" else "", name, str(g["examples"]),
                      fmt(g["context_holds_key"]), fmt(g["answer_states_key"]),
                      fmt(g["answer_over_context"]), fmt(g["answer_states_key_in_context"]))
    console.print(table)
    console.print("  [dim]low 'context holds key': retrieval loses the answer; low 'states it "
                  "when held': the model does not use its sources (try `train --retrieval`)[/]")


def _render_comparisons(comparisons: list[dict[str, Any]], title: str) -> None:
    table = Table("A", "B", "metric", "n", "A", "B", "B − A", "95% CI", "verdict for B",
                  title=title)
    for c in comparisons:
        style = _VERDICT_STYLE.get(c["verdict"], "")
        table.add_row(c["a"], c["b"], c["metric"], str(c["n"]), fmt(c["mean_a"]),
                      fmt(c["mean_b"]), fmt(c["diff"]),
                      f"[{fmt(c['low'])}, {fmt(c['high'])}]", f"[{style}]{c['verdict']}[/]")
    console.print(table)
