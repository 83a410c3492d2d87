"""`usercom send`: a JSONL file of events to User.com, or a plan of it (`--dry-run`)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Annotated

import typer
from returns.result import Failure, Success
from rich.console import Console

from pipeline.cli import checks, ledger_views, operator
from pipeline.cli.checks import UsageError
from pipeline.cli.inputs import count_events, load_config, open_source
from pipeline.cli.options import (
    MAX_OUTAGE,
    PG_SCHEMA,
    BaseUrl,
    Concurrency,
    MaxOutage,
    PgSchema,
    Rate,
    duration_of,
    ledger_at,
)
from pipeline.cli.output import open_out, refusal, stderr
from pipeline.cli.plain import plain
from pipeline.cli.sending import (
    EXIT_FAULT,
    EXIT_REJECTED,
    EXIT_UNFINISHED,
    EXIT_USAGE,
    Tally,
    broken_input_words,
    exit_status,
    final_words,
    progress_every,
    run_send,
    summary_table,
)
from pipeline.core.config import Config
from pipeline.core.plan import Plan, plan_of
from pipeline.delivery import DeliveryOptions, Outcome, Summary
from pipeline.delivery.incoming import (
    MAX_EVENT_BYTES,
    FirstSeen,
    Incoming,
    LineReader,
    once_each,
    read_jsonl,
)
from pipeline.delivery.ledger import Ledger, LedgerError
from pipeline.delivery.pg import Leasing, PgLocation, open_writer_at

SEND_LEASING = Leasing(max_lanes=10**9, claim_batch=10**9, claim_every=0.0, hold_on_admit=True)


def planned_requests(shown: Plan) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(requests, warnings) of a dry-run outcome: warnings go where a real run puts them, not
    among the requests, so that every mode counts them the same."""
    steps = tuple(line.strip() for line in shown.lines)
    return tuple(step for step in steps if not step.startswith("warning: ")), shown.warnings


def dry_run(
    cfg: Config, source: IO[bytes], sink: IO[str] | None, scratch: Path | None = None
) -> Summary:
    """Plan every event with no request at all (the pure pipeline only); writes no ledger.
    Repeats are taken as a real run takes them (the messageIds read are kept in `scratch`)."""
    started = time.monotonic()
    reader = LineReader(source)
    with contextlib.closing(FirstSeen(scratch)) as seen:
        summary = _planned(once_each(read_jsonl(reader, cfg, MAX_EVENT_BYTES), seen), sink)
    summary.broken_input = reader.broken
    summary.seconds = time.monotonic() - started
    return summary


def _planned(events: Iterable[Incoming], sink: IO[str] | None) -> Summary:
    summary = Summary()
    for item in events:
        match item.job:
            case Success(_):
                shown = plan_of(item.job)
                steps, warnings = planned_requests(shown) if isinstance(shown, Plan) else ((), ())
                outcome = Outcome(item.key, "planned", 0, steps, None, warnings, item.position)
            case Failure(problem):
                outcome = Outcome(
                    item.key, "rejected", 0, (), problem.message, position=item.position
                )
            case _:
                outcome = Outcome(item.key, "rejected", 0, (), item.problem, position=item.position)
        summary.add(outcome)
        if sink is not None:
            sink.write(json.dumps(outcome.as_json()) + "\n")
    return summary


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """This run's private folder for its scratch files, in TMPDIR as the operator set it (not
    silently elsewhere: it may have been chosen for its room); deleted when the run ends.
    Made before anything is read or sent, so a TMPDIR that cannot be used is a usage error."""
    chosen = os.environ.get("TMPDIR")
    where = f"{chosen} (TMPDIR)" if chosen else "the system's temporary folder"
    try:
        scratch = tempfile.TemporaryDirectory(prefix="usercom-", dir=chosen or None)
    except OSError as error:
        raise UsageError(
            f"cannot make this run's scratch folder in {where}: "
            f"{error.strerror or error}; set TMPDIR to a writable folder"
        ) from error
    with scratch as folder:
        yield Path(folder)


@contextlib.contextmanager
def writer_ledger(path: Path | PgLocation | None, cfg: Config, scratch: Path) -> Iterator[Ledger]:
    """The ledger asked for, or one in `scratch` for this run only (so that duplicates are one
    event and memory stays flat without --ledger too), deleted with it."""
    if path is None:
        book = Ledger.open_writer(scratch / "run.sqlite", cfg.subdomain)
        with contextlib.closing(book):
            yield book
        return
    try:
        # A send takes every free lane with unfinished events (§2: the queue's unfinished
        # events first), not a share as the service's instances do.
        book = open_writer_at(path, cfg.subdomain, leasing=SEND_LEASING)
    except LedgerError as error:
        raise UsageError(str(error)) from error
    with contextlib.closing(book):
        yield book


def send(
    events: Annotated[
        str,
        typer.Argument(
            metavar="EVENTS",
            help="JSONL file of RudderStack events (gzip too), or - for stdin",
        ),
    ],
    config: Annotated[
        Path,
        typer.Option(
            metavar="FILE",
            help="destination config JSON: apiKey, appSubdomain, mappings",
        ),
    ],
    base_url: BaseUrl = None,
    ledger: Annotated[
        str | None,
        typer.Option(
            metavar="LEDGER",
            help="SQLite file or postgresql:// URI: resume a run, skip finished events",
        ),
    ] = None,
    pg_schema: PgSchema = PG_SCHEMA,
    concurrency: Concurrency = 8,
    rate: Rate = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="write one outcome per event as JSONL (- for stdout)"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="plan only: make no request (but see --live) and write no ledger (--ledger is "
            "ignored, with a note)",
        ),
    ] = False,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="with --dry-run: make reads only (lookups) and say per event what a real run "
            "would do (create or update the user, record the event, fail with no user...); "
            "never writes",
        ),
    ] = False,
    retry_rejected: Annotated[
        bool, typer.Option("--retry-rejected", help="attempt events rejected earlier again")
    ] = False,
    max_outage: MaxOutage = MAX_OUTAGE,
) -> None:
    """Send a JSONL file of events to User.com.

    Exit status: 0 every event delivered (now or earlier); 1 some rejected, nothing left to
    retry; 2 usage, config or input error (an input that breaks off part-way too); 3 the run
    stopped on a fault of the key, the URL or the network; 4 some failed, held or pending
    (re-run with the same --ledger); 130/143 interrupted.

    --dry-run neither reads nor writes a ledger: with --ledger it says so in one line and plans
    every event as new. --dry-run --live plans the events one at a time, in order, with real
    reads only; each outcome (status planned) gets a "would" sentence, and the summary counts
    each kind. Its exit status: 0, or 1 when some events can never be sent (rejected), 2 when
    the input breaks off, 3 when the key, the URL or the network fails the run.
    """
    err = stderr()
    try:
        operator.check_live(live, dry_run=dry_run)
        source_name = checks.events_source(events)
        cfg = load_config(config)
        origin = checks.origin(base_url) if base_url is not None else None
        options = DeliveryOptions(
            concurrency=checks.concurrency(concurrency),
            rate=checks.rate(rate),
            base_url=origin,
            max_outage=duration_of("--max-outage", max_outage),
        )
        out_path = checks.out_path(out, source_name, config)
        ledger_path = sending_ledger(ledger, pg_schema)
        if not isinstance(ledger_path, PgLocation):
            checks.not_the_ledger(out_path, ledger_path)
        total = count_events(source_name)
        with (
            scratch_folder() as scratch,
            open_source(source_name) as source,
            open_out(out_path) as sink,
        ):
            if dry_run and ledger_path is not None:
                err.print(
                    f"note: --dry-run neither reads nor writes a ledger: --ledger {ledger_path} "
                    "is ignored, and events finished there are planned as new",
                    highlight=False,
                    markup=False,
                )
            if dry_run and live:
                finish_live(source_name, cfg, source, sink, origin, options.rate, out, err, scratch)
            if dry_run:
                summary = dry_run_summary(cfg, source, sink, scratch)
                tally = Tally()
                has_ledger = False
            else:
                with writer_ledger(ledger_path, cfg, scratch) as book:
                    summary, tally = run_send(
                        source,
                        cfg,
                        ledger=book,
                        has_ledger=ledger_path is not None,
                        options=options,
                        sink=sink,
                        err=err,
                        total=total,
                        retry_rejected=retry_rejected,
                        scratch=scratch,
                    )
                    has_ledger = ledger_path is not None
    except UsageError as problem:
        err.print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem
    console = err if out is not None and str(out) == "-" else Console()
    if held_nothing(summary) and tally.signal is None:
        err.print(
            plain(f"{input_name(source_name)} holds no events: nothing to send"), highlight=False
        )
    elif summary.events or summary.skipped or summary.fault is None:
        title = "usercom send" + (" (dry run)" if dry_run else "")
        console.print(summary_table(summary, title))
    for words in final_words(summary, tally, has_ledger):
        err.print(plain(words), highlight=False, markup=False)
    status = exit_status(summary, tally)
    if status in (EXIT_REJECTED, EXIT_UNFINISHED):
        for words in ledger_views.send_advice(summary, ledger_path if has_ledger else None):
            err.print(plain(f"next: {words}"), highlight=False, markup=False)
    raise typer.Exit(status)


def sending_ledger(raw: str | None, schema: str) -> Path | PgLocation | None:
    """`--ledger`: a PostgreSQL URI, or a file path whose folder exists."""
    if raw is None:
        return None
    where = ledger_at(raw, schema)
    return where if isinstance(where, PgLocation) else checks.ledger_path(where)


# Inside `send` its --dry-run flag hides the function of that name.
dry_run_summary = dry_run


def held_nothing(summary: Summary) -> bool:
    """The input held no event (and nothing else happened): a table of zeros would hide it."""
    return not (summary.events or summary.skipped or summary.fault or summary.broken_input)


def input_name(events: str) -> str:
    return "stdin" if events == "-" else events


def finish_live(
    events: str,
    cfg: Config,
    source: IO[bytes],
    sink: IO[str] | None,
    origin: str | None,
    rate: float | None,
    out: Path | None,
    err: Console,
    scratch: Path,
) -> None:
    """`send --dry-run --live`: plan with reads only, print the tables, exit."""
    result = operator.live_dry_run(
        cfg,
        source,
        sink,
        origin=origin,
        rate=rate,
        progress=operator.iter_progress(
            progress_every(), lambda words: err.print(words, highlight=False)
        ),
        scratch=scratch,
    )
    summary = result.summary
    console = err if out is not None and str(out) == "-" else Console()
    if held_nothing(summary) and not result.interrupted and not result.kinds:
        err.print(plain(f"{input_name(events)} holds no events: nothing to plan"), highlight=False)
        raise typer.Exit(0)
    if summary.events or result.fault is None:
        console.print(summary_table(summary, "usercom send (dry run, live: reads only)"))
        console.print(operator.kinds_table(result.kinds))
    if result.fault is None and summary.broken_input:
        err.print(broken_input_words(summary.broken_input, False), highlight=False, markup=False)
        raise typer.Exit(EXIT_USAGE)
    if result.fault is not None:
        err.print(plain(f"error: {result.fault}"), highlight=False, markup=False)
        raise typer.Exit(EXIT_FAULT)
    if result.interrupted:
        err.print("interrupted: nothing was written", highlight=False)
        raise typer.Exit(130)
    for words in ledger_views.send_advice(summary, None):
        err.print(plain(f"next: {words}"), highlight=False, markup=False)
    raise typer.Exit(EXIT_REJECTED if summary.rejected else 0)
