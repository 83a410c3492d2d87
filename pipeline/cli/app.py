"""The `usercom` command: send a JSONL file of events, serve the sandbox, run the demo.

The group and its commands, registered in the order `usercom --help` lists them; each command
lives in a module of its own subject."""

from __future__ import annotations

import os
import sys
from importlib.metadata import version as package_version
from typing import Annotated

import typer

from pipeline.cli.operator_cmds import check, explain, failed, report, requeue
from pipeline.cli.sandbox_cmd import demo, sandbox
from pipeline.cli.send_cmd import send
from pipeline.cli.serve_cmd import serve
from pipeline.cli.usage import UsercomGroup

app = typer.Typer(
    cls=UsercomGroup,
    add_completion=False,
    # A bare `usercom` shows the help on stdout and exits 0, as git does (see _options).
    invoke_without_command=True,
    # Plain click help: no <bool> or {events} placeholders, paragraphs re-wrapped.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Deliver RudderStack-format events to User.com (or to a local sandbox of it).",
)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"usercom {package_version('usercom-pipeline')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    context: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Deliver RudderStack-format events to User.com (or to a local sandbox of it)."""
    if context.invoked_subcommand is None:
        typer.echo(context.get_help())
        raise typer.Exit(0)


COMMANDS = (
    (send, "Send a JSONL file of events to User.com."),
    (sandbox, "Serve a local User.com sandbox until stopped."),
    (serve, "Run the live destination: ingest, queue and delivery."),
    (demo, "Send the example events to a local sandbox, show the result."),
    (check, "Prove the config's key and app with one authenticated read."),
    (failed, "Print a ledger's unfinished events as JSONL, in order."),
    (requeue, "Make a ledger's events pending again."),
    (explain, "Show one event's story from a ledger."),
    (report, "Sum up everything a ledger holds."),
)
for command, short_help in COMMANDS:
    app.command(short_help=short_help)(command)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        # The reader (`| head`) left: say nothing, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
