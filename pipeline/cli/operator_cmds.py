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
from pipeline.cli.options import LEDGER_HELP, PG_SCHEMA, LedgerArgument, PgSchema, ledger_at
from pipeline.cli.output import open_binary_out, refusal, stderr
from pipeline.cli.plain import plain
from pipeline.cli.sending import EXIT_FAULT, EXIT_USAGE
from pipeline.delivery.faults import RESUME
from pipeline.delivery.ledger import Ledger, LedgerError, sqlite_errors_as_ledger_errors
from pipeline.delivery.lifecycle import UNFINISHED, Status
from pipeline.delivery.loop import run as run_loop
from pipeline.delivery.pg import PgLocation, open_reader_at, open_writer_at
from pipeline.delivery.pg.ledger import PgLedger
from pipeline.delivery.wire import check_app


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


def reader_ledger(path: Path | PgLocation, *, positional: bool = True) -> Ledger:
    """A ledger opened read-only. The ledger's refusals name `--ledger` (send's option); the
    commands that take LEDGER as an argument say so instead."""
    try:
        return open_reader_at(path)
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
    pg_schema: PgSchema = PG_SCHEMA,
) -> None:
    """Print the unfinished (failed, held, pending) events of a ledger as JSONL, in order."""
    try:
        where = ledger_at(ledger, pg_schema)
        if isinstance(where, Path):
            checks.not_the_ledger(out, where)
        book = reader_ledger(where)
        with (
            contextlib.closing(book),
            open_binary_out(out) as sink,
            sqlite_errors(where),
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
    pg_schema: PgSchema = PG_SCHEMA,
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
        where = ledger_at(ledger, pg_schema)
        if isinstance(where, PgLocation):
            changed = requeue_in_database(where, keys, rejected=rejected, delivered=delivered)
            typer.echo(ledger_views.pending_again(changed))
            return
        cfg_app = reader_ledger(where)
        app_name = cfg_app.app
        cfg_app.close()
        with (
            contextlib.closing(Ledger.open_writer(where, app_name)) as book,
            sqlite_errors_as_ledger_errors(where),
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
    ledger: Annotated[str, typer.Option(metavar="LEDGER", help=LEDGER_HELP)],
    as_json: Annotated[
        bool, typer.Option("--json", help="print the story as one JSON object")
    ] = False,
    pg_schema: PgSchema = PG_SCHEMA,
) -> None:
    """Show one event's story from a ledger: status, position, attempts, every request and
    its answer, the error, the warnings and the original line.

    Reads only and takes no lock: works while a run or the service writes the ledger.
    Exit status: 0 shown; 2 no such event, or not a ledger.
    """
    try:
        where = ledger_at(ledger, pg_schema)
        book = reader_ledger(where, positional=False)
        with contextlib.closing(book), sqlite_errors(where):
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
    pg_schema: PgSchema = PG_SCHEMA,
) -> None:
    """Sum up everything a ledger holds: events per status, the most common errors, API calls
    per endpoint and answer, the oldest unfinished event, and what to do next.

    Reads only and takes no lock: works while a run or the service writes the ledger.
    Exit status: 0 shown; 2 not a ledger.
    """
    try:
        where = ledger_at(ledger, pg_schema)
        book = reader_ledger(where)
        with contextlib.closing(book), sqlite_errors(where):
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


def sqlite_errors(where: Path | PgLocation) -> contextlib.AbstractContextManager[None]:
    """SQLite's errors as ledger errors for a file (a database's are already)."""
    if isinstance(where, PgLocation):
        return contextlib.nullcontext()
    return sqlite_errors_as_ledger_errors(where)


def requeue_in_database(
    where: PgLocation, keys: list[str] | None, *, rejected: bool, delivered: bool
) -> int:
    """`requeue` on a PostgreSQL ledger, which may hold several apps: the keys are found
    among all of them (as `explain` finds them), then each app requeues its own, while the
    service's instances keep running."""
    book = reader_ledger(where)
    with contextlib.closing(book):
        chosen = (
            ledger_views.requeue_keys(book, keys, rejected=rejected, delivered=delivered)
            if keys
            else None
        )
        apps = book.app_names() if isinstance(book, PgLedger) else [book.app]
    changed = 0
    for app in apps:
        with contextlib.closing(open_writer_at(where, app)) as writer:
            changed += writer.requeue(chosen, rejected=rejected)
    return changed
