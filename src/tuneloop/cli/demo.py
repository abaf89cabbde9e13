"""`tuneloop demo`: the whole loop on the bundled example."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tuneloop.cli._common import console


def demo(
    directory: Path = typer.Argument(Path("demo-project"), help="Where to create the project."),
    quick: bool = typer.Option(False, "--quick", help="The small version (about 3 minutes)."),
    port: int = typer.Option(0, help="Port for the demo's server (default: a free one)."),
) -> None:
    """Run the whole loop on the bundled support-desk example, step by step.

    Creates the project, has the privacy officer approve the use of customer tickets, builds
    the dataset with redaction, indexes the knowledge base, fine-tunes the bundled model with
    LoRA, evaluates four variants, serves the best to internal users, sends them simulated
    traffic with feedback, and enriches a new dataset version from it. Safe to run again.

    Example:  tuneloop demo --quick /tmp/tuneloop-demo
    """
    from tuneloop.demo import DemoOptions, run_demo

    # The demo uses its own database in the project folder, whatever the shell has set.
    os.environ.pop("TUNELOOP_DATABASE_URL", None)
    options = DemoOptions.for_mode(quick)
    options.port = port
    run_demo(directory, options, console)
