"""The `tuneloop` command: global options, the command groups, and the one place errors become
one-line messages and exit codes (1 for user errors, 2 for usage errors)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import typer

from tuneloop.cli import approvals, audit, db, keys
from tuneloop.cli import data as data_cli
from tuneloop.cli import eval as eval_cli
from tuneloop.cli import flywheel as flywheel_cli
from tuneloop.cli import models as models_cli
from tuneloop.cli import rag as rag_cli
from tuneloop.cli import rollout as rollout_cli
from tuneloop.cli import router as router_cli
from tuneloop.cli import runs as runs_cli
from tuneloop.cli import serve as serve_cli
from tuneloop.cli import train as train_cli
from tuneloop.cli._common import Context, console, err_console
from tuneloop.cli._help import reflow_help
from tuneloop.cli._output import add_json_options, fit_to_pipe
from tuneloop.cli.chat import chat
from tuneloop.cli.demo import demo
from tuneloop.cli.init import init
from tuneloop.errors import TuneloopError

app = typer.Typer(
    name="tuneloop",
    help="Take an LLM feature into production and keep improving it.\n\n"
    "Example:  tuneloop init my-assistant && cd my-assistant && tuneloop demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global(
    ctx: typer.Context,
    project: Path = typer.Option(
        Path("."), "--project", "-C", help="Project folder (default: here or the nearest parent)."
    ),
    key: str | None = typer.Option(
        None,
        "--key",
        envvar="TUNELOOP_API_KEY",
        show_envvar=True,
        help="Act as the principal this API key belongs to.",
    ),
) -> None:
    ctx.obj = Context(project_dir=project, key=key)
    fit_to_pipe(console)


app.command("init")(init)
app.command("demo")(demo)
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(approvals.app, name="approvals")
app.add_typer(audit.app, name="audit")
app.add_typer(data_cli.app, name="data")
app.add_typer(rag_cli.app, name="rag")
app.add_typer(models_cli.app, name="models")
app.command("chat")(chat)
app.add_typer(eval_cli.app, name="eval")
app.command("serve")(serve_cli.serve)
app.command("train")(train_cli.train)
app.add_typer(runs_cli.app, name="runs")
app.add_typer(rollout_cli.app, name="rollout")
app.add_typer(router_cli.app, name="router")
app.command("enrich")(flywheel_cli.enrich.enrich)
app.add_typer(flywheel_cli.review.app, name="review")
app.add_typer(flywheel_cli.erase.app, name="erase")
app.add_typer(flywheel_cli.retention.app, name="retention")
app.command("monitor")(flywheel_cli.monitor.monitor)
add_json_options(app, console)  # last: every list/show/query/status command gets --json
reflow_help(app)


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Our own Rich progress bars say what is happening; the libraries' tqdm bars only add noise.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF reader uses tqdm directly
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Deprecation notices from the ML libraries are for us to act on, not for the user to read.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        app()  # standalone: usage errors print themselves and exit 2
    except TuneloopError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err_console.print(f"[dim]hint:[/] {exc.hint}", highlight=False)
        sys.exit(exc.exit_code)
