"""`tuneloop monitor`: per-variant latency, errors and feedback from the log, against the SLO."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from tuneloop.cli._common import console, err_console, state
from tuneloop.cli.enrich import parse_when


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def monitor(
    ctx: typer.Context,
    since: str = typer.Option("24h", help="Window start: 24h, 7d or an ISO date."),
    until: str | None = typer.Option(None, help="Window end (default: now)."),
    bucket: str = typer.Option("1h", help="Time bucket: 15m, 1h, 1d..."),
    variant: str | None = typer.Option(None, help="Only this variant."),
    max_error_rate: float = typer.Option(0.05, help="Error rate above this breaches."),
    min_requests: int = typer.Option(20, help="Fewer requests than this never breach."),
    plot: bool = typer.Option(False, help="Also write a PNG chart to .tuneloop/reports/."),
) -> None:
    """Latency, errors and feedback per variant from the log; exit 1 on an SLO breach.

    Percentiles per time bucket and over the window, compared with `latency` in tuneloop.yaml;
    usable from cron or CI.

    Example:  tuneloop monitor --since 24h --bucket 1h
    """
    from tuneloop.flywheel import monitor as mon
    from tuneloop.governance.approvals import parse_duration

    project = state(ctx).project()
    report = mon.monitor(project, since=parse_when(since), until=parse_when(until),
                         bucket=parse_duration(bucket), variant=variant,
                         max_error_rate=max_error_rate, min_requests=min_requests)
    slo = report.slo
    table = Table(title=f"variants, SLO p95 {slo['p95_ms']:.0f} ms, TTFT {slo['ttft_ms']:.0f} ms")
    for col in ("variant", "from", "requests", "p50 ms", "p95 ms", "TTFT p50", "TTFT p95",
                "errors", "rated", "up", "corrected"):
        table.add_column(col, justify="left" if col in ("variant", "from") else "right")
    for health in report.variants:
        rows: list[tuple[str, mon.Stats, bool]] = [
            (start.strftime("%m-%d %H:%M"), s, False) for start, s in health.buckets]
        rows.append(("[bold]window[/]", health.total, True))
        for label, s, last in rows:
            up = "-" if s.up_rate is None else f"{s.up_rate:.0%}"
            name = health.variant if last else ""
            if last and health.breaches:
                name = f"[bold red]{health.variant}[/]"
            table.add_row(name, label, str(s.requests), _ms(s.p50_ms), _ms(s.p95_ms),
                          _ms(s.ttft_p50_ms), _ms(s.ttft_p95_ms), f"{s.error_rate:.1%}",
                          str(s.rated), up, str(s.corrected), end_section=last)
    console.print(table if report.variants else "no requests in the window")
    if report.slices:
        console.print(_slice_table(report))
    if plot and report.variants:
        path = mon.plot(report, project.state_dir / "reports")
        console.print(f"chart: {path}")
    breaches = [(h.variant, b) for h in report.variants for b in h.breaches]
    breaches += [(f"slice {h.variant}", b) for h in report.slices for b in h.breaches]
    for name, why in breaches:
        err_console.print(f"[bold red]SLO breach[/] {name}: {why}")
    if breaches:
        raise typer.Exit(1)
    console.print(f"[green]all variants within the SLO[/] ({report.since:%Y-%m-%d %H:%M} to "
                  f"{report.until:%Y-%m-%d %H:%M} UTC)")





def _slice_table(report: Any) -> Table:
    """Routed requests by the slice their router predicted, over the window."""
    table = Table("predicted slice", "requests", "p50 ms", "p95 ms", "errors", "rated", "up",
                  "corrected", title="routed requests by predicted slice")
    for health in report.slices:
        s = health.total
        name = f"[bold red]{health.variant}[/]" if health.breaches else health.variant
        table.add_row(name, str(s.requests), _ms(s.p50_ms), _ms(s.p95_ms), f"{s.error_rate:.1%}",
                      str(s.rated), "-" if s.up_rate is None else f"{s.up_rate:.0%}",
                      str(s.corrected))
    return table
