"""The operator's commands: `check` a config, and read or requeue a ledger (`failed`,
`requeue`, `explain`, `report`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.cli import checks, ledger_views
from pipeline.cli.checks import UsageError
from pipeline.cli.inputs import load_config
from pipeline.cli.options import LEDGER_HELP, LedgerArgument
from pipeline.cli.output import open_binary_out, refusal, stderr
from pipeline.cli.plain import plain
from pipeline.cli.sending import EXIT_FAULT, EXIT_USAGE
from pipeline.delivery.faults import RESUME, check_app
from pipeline.delivery.ledger import Ledger, LedgerError, sqlite_errors_as_ledger_errors
from pipeline.delivery.lifecycle import UNFINISHED, Status
from pipeline.delivery.loop import run as run_loop


def check(
    config: Annotated[
        Path, typer.Option(metavar="FILE", help="destination config JSON: apiKey, appSubdomain")
    ],
    base_url: Annotated[
        str | None, typer.Option(metavar="ORIGIN", help="check another origin (e.g. the sandbox)")
    ] = None,
) -> None:
    """Check the config and make one authenticated read to prove the key and the app.

    Exit status: 0 ok; 2 bad config or options; 3 key refused or app unreachable.
    """
    err = stderr()
    try:
        cfg = load_config(config)
        origin = checks.origin(base_url) if base_url is not None else None
    except UsageError as problem:
        err.print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem
    fault = run_loop(check_app(cfg, origin))
    if fault is not None:
        err.print(refusal(fault.removesuffix("; " + RESUME)), highlight=False)
        raise typer.Exit(EXIT_FAULT)
    typer.echo(f"ok: User.com app {cfg.subdomain} answered at {origin or cfg.base_url}")


def reader_ledger(path: Path, *, positional: bool = True) -> Ledger:
    """A ledger opened read-only. The ledger's refusals name `--ledger` (send's option); the
    commands that take LEDGER as an argument say so instead."""
    try:
        return Ledger.open_reader(path)
    except LedgerError as error:
        words = str(error)
        if positional:
            words = words.replace(
                "use another --ledger",
                "give the LEDGER file of a run or of the service",
            )
        raise UsageError(words) from error


def failed(
    ledger: LedgerArgument,
    rejected: Annotated[
        bool, typer.Option("--rejected", help="print the rejected events instead")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(metavar="FILE", help="where to write them (default stdout)")
    ] = None,
) -> None:
    """Print the unfinished (failed, held, pending) events of a ledger as JSONL, in order."""
    try:
        checks.not_the_ledger(out, ledger)
        book = reader_ledger(ledger)
        with (
            contextlib.closing(book),
            open_binary_out(out) as sink,
            sqlite_errors_as_ledger_errors(ledger),
        ):
            statuses: tuple[Status, ...] = ("rejected",) if rejected else UNFINISHED
            for line in book.lines(statuses):
                sink.write(line + b"\n")
    except (UsageError, LedgerError) as problem:
        stderr().print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem
    except BrokenPipeError:
        return


def requeue(
    ledger: LedgerArgument,
    keys: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY...",
            help="keys to requeue, as explain takes them (default: all failed and held)",
        ),
    ] = None,
    rejected: Annotated[
        bool, typer.Option("--rejected", help="requeue rejected events too")
    ] = False,
    delivered: Annotated[
        bool,
        typer.Option("--delivered", help="allow a named delivered event: it is sent again"),
    ] = False,
) -> None:
    """Make events pending again, so the next run (or the service) tries them.

    A KEY is matched as `explain` matches it: with or without the app prefix, or a unique
    prefix. A finished event is requeued only when asked for: a rejected one with --rejected,
    a delivered one (named by its key) with --delivered.
    Exit status: 0 done; 2 an unknown key, a finished event without its flag, or not a ledger
    (nothing was changed).
    """
    try:
        ledger_views.check_requeue(keys, delivered=delivered)
        cfg_app = reader_ledger(ledger)
        app_name = cfg_app.app
        cfg_app.close()
        with (
            contextlib.closing(Ledger.open_writer(ledger, app_name)) as book,
            sqlite_errors_as_ledger_errors(ledger),
        ):
            chosen = (
                ledger_views.requeue_keys(book, keys, rejected=rejected, delivered=delivered)
                if keys
                else None
            )
            changed = book.requeue(chosen, rejected=rejected)
    except (UsageError, LedgerError) as problem:
        stderr().print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem
    typer.echo(ledger_views.pending_again(changed))


def explain(
    key: Annotated[
        str,
        typer.Argument(
            metavar="KEY",
            help="the event's key, with or without the app prefix (a unique prefix will do)",
        ),
    ],
    ledger: Annotated[Path, typer.Option(metavar="FILE", help=LEDGER_HELP)],
    as_json: Annotated[
        bool, typer.Option("--json", help="print the story as one JSON object")
    ] = False,
) -> None:
    """Show one event's story from a ledger: status, position, attempts, every request and
    its answer, the error, the warnings and the original line.

    Reads only and takes no lock: works while a run or the service writes the ledger.
    Exit status: 0 shown; 2 no such event, or not a ledger.
    """
    try:
        book = reader_ledger(ledger, positional=False)
        with contextlib.closing(book), sqlite_errors_as_ledger_errors(ledger):
            row = ledger_views.find_event(book, key)
            lines = (
                [json.dumps(ledger_views.story_json(book, row))]
                if as_json
                else ledger_views.story(book, row)
            )
    except (UsageError, LedgerError) as problem:
        stderr().print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem
    for line in lines:
        typer.echo(line)


def report(
    ledger: LedgerArgument,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the report as one JSON object")
    ] = False,
) -> None:
    """Sum up everything a ledger holds: events per status, the most common errors, API calls
    per endpoint and answer, the oldest unfinished event, and what to do next.

    Reads only and takes no lock: works while a run or the service writes the ledger.
    Exit status: 0 shown; 2 not a ledger.
    """
    try:
        book = reader_ledger(ledger)
        with contextlib.closing(book), sqlite_errors_as_ledger_errors(ledger):
            summed = ledger_views.build_report(book)
    except (UsageError, LedgerError) as problem:
        stderr().print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem
    if as_json:
        typer.echo(json.dumps(summed.as_json()))
        return
    console = Console()
    for table in summed.tables():
        console.print(table)
    for words in summed.advice():
        console.print(plain(f"next: {words}"), highlight=False, markup=False)
