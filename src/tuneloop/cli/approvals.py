"""`tuneloop approvals`: requests to use Tier 2 data, and the privacy team's decisions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import typer
from rich.table import Table

from tuneloop.cli import _remote
from tuneloop.cli._common import console, state, when
from tuneloop.governance import approvals
from tuneloop.project import Project
from tuneloop.store import utcnow

app = typer.Typer(
    help="Approvals for Tier 2 data: request, grant, deny, revoke, list.", no_args_is_help=True
)


@app.command()
def request(
    ctx: typer.Context,
    scope: list[str] = typer.Option(
        ..., "--scope", help="KIND:NAME, e.g. source:tickets. Repeatable."
    ),
    use: list[str] = typer.Option(
        ..., "--use", help="train, evaluate, rag, view, export or deploy-public. Repeatable."
    ),
    purpose: str = typer.Option(..., help="Why: what the privacy team decides on."),
    expires: str = typer.Option("90d", help="Validity once granted, e.g. 30d, 12h, 2w."),
    for_audience: str | None = typer.Option(
        None, "--for-audience", help="Ask for every principal of this audience."
    ),
) -> None:
    """Ask the privacy team for the use of Tier 2 data.

    Example:  tuneloop approvals request --scope source:tickets --use train --use evaluate
              --purpose "fine-tune the support assistant on resolved tickets"
    """
    c = state(ctx)
    approval_id = _remote.team_or_local(
        c,
        remote=lambda api: api.post("/v1/governance/approvals", scope=scope, uses=use,
                                    purpose=purpose, expires=expires,
                                    for_audience=for_audience)["id"],
        local=lambda project: approvals.request(
            project.store, c.actor(project), scope=scope, uses=use, purpose=purpose,
            expires_in=approvals.parse_duration(expires), for_audience=for_audience),
    )
    console.print(
        f"[green]✓[/] requested approval #{approval_id}; the privacy team grants it with "
        f"`tuneloop approvals grant {approval_id}`"
    )


def _decision(name: str, fn, doc_example: str):
    def command(
        ctx: typer.Context,
        approval_id: int = typer.Argument(..., help="The approval's number."),
        reason: str = typer.Option("", help="Recorded with the decision."),
    ) -> None:
        c = state(ctx)
        _remote.team_or_local(
            c,
            remote=lambda api: api.post(f"/v1/governance/approvals/{approval_id}/{fn.__name__}",
                                        reason=reason),
            local=lambda project: fn(project.store, c.actor(project), approval_id, reason),
        )
        console.print(f"[green]✓[/] approval #{approval_id}: {name}")

    command.__doc__ = doc_example
    return command


app.command("grant")(
    _decision(
        "granted",
        approvals.grant,
        "Grant a pending request (privacy role; never your own).\n\n"
        "Example:  tuneloop --key $PRIVACY_KEY approvals grant 3 --reason 'PRV-12'",
    )
)
app.command("deny")(
    _decision(
        "denied",
        approvals.deny,
        "Deny a pending request (privacy role; never your own).\n\n"
        "Example:  tuneloop approvals deny 3 --reason 'use aggregated data instead'",
    )
)
app.command("revoke")(
    _decision(
        "revoked",
        approvals.revoke,
        "Withdraw a granted approval; it stops working at once (privacy role).\n\n"
        "Example:  tuneloop approvals revoke 3 --reason 'project ended'",
    )
)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: str | None = typer.Option(None, help="pending, granted, denied or revoked."),
    mine: bool = typer.Option(False, help="Only my requests."),
) -> None:
    """List approvals, newest first.

    Example:  tuneloop approvals list --status pending
    """
    c = state(ctx)

    def remote(api: _remote.Api) -> list[_Row]:
        rows = [_Row(r["id"], r["status"], r["requester"], r["beneficiary"], r["scope"],
                     r["uses"], r["purpose"], dt.datetime.fromisoformat(r["expires_at"]),
                     r["decided_by"])
                for r in api.get("/v1/governance/approvals", status=status)]
        me = api.get("/v1/governance/whoami")["name"] if mine else None
        return [r for r in rows if me is None or r.requester == me]

    def local(project: Project) -> list[_Row]:
        who = c.actor(project).name if mine else None
        return [_Row(r.id, r.status, requester, r.beneficiary, r.scope, r.uses, r.purpose,
                     r.expires_at, decider)
                for r, requester, decider in approvals.list_approvals(
                    project.store, status=status, requester=who)]

    console.print(_table(_remote.team_or_local(c, remote=remote, local=local)))


@dataclass(frozen=True)
class _Row:
    id: int
    status: str
    requester: str
    beneficiary: str
    scope: list[str]
    uses: list[str]
    purpose: str
    expires_at: dt.datetime
    decided_by: str | None


def _table(rows: list[_Row]) -> Table:
    now = utcnow()
    table = Table(title="Approvals")
    for col in ("#", "status", "requester", "for", "scope", "uses", "purpose", "expires",
                "decided by"):
        table.add_column(col, overflow="fold")
    colours = {"pending": "yellow", "granted": "green", "denied": "red", "revoked": "red"}
    for row in rows:
        shown = row.status
        if row.status == "granted" and row.expires_at <= now:
            shown = "expired"
        table.add_row(str(row.id), f"[{colours.get(shown, 'red')}]{shown}[/]", row.requester,
                      row.beneficiary.split(":", 1)[1], ", ".join(row.scope), ", ".join(row.uses),
                      row.purpose, when(row.expires_at), row.decided_by or "")
    return table
