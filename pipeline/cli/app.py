"""The `usercom` command: send a JSONL file of events, serve the sandbox, run the demo."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import version as package_version
from pathlib import Path
from typing import IO, Annotated, Any

import httpx
import typer
from returns.result import Failure, Success
from rich.console import Console
from rich.table import Table
from rich.text import Text

# typer 0.26 runs its own copy of click: its usage errors are this copy's classes, not click's.
from typer._click.core import Context as ClickContext
from typer._click.exceptions import NoArgsIsHelpError
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperGroup

from pipeline.cli import checks, operator
from pipeline.cli.checks import KEY_FIELDS, UNKNOWN_ATTRIBUTES, UsageError
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
from pipeline.core.config import Config, parse_config, unreadable_config
from pipeline.core.plan import Plan, plan_of
from pipeline.delivery import DeliveryOptions, Outcome, Summary
from pipeline.delivery.faults import RESUME, check_app
from pipeline.delivery.incoming import (
    MAX_EVENT_BYTES,
    FirstSeen,
    Incoming,
    LineReader,
    once_each,
    read_jsonl,
)
from pipeline.delivery.ledger import (
    UNFINISHED,
    Ledger,
    LedgerError,
    sqlite_errors_as_ledger_errors,
)
from pipeline.delivery.ledger import Status as LedgerStatus
from pipeline.delivery.loop import run as run_loop
from pipeline.sandbox import ListenError, SandboxOptions, parse_forced, run, serve_in_thread
from pipeline.serve import ListenError as ServeListenError
from pipeline.serve import (
    ServeConfigError,
    ServeOptions,
    Service,
    create_ledger_folders,
    duration,
    ledger_paths,
    listening_socket,
    load_sources,
)
from pipeline.serve import serve as run_service
from pipeline.serve.logs import configure as configure_logs
from pipeline.serve.logs import emit, ignored_entries
from pipeline.serve.options import retention_days


def refusal(problem: object) -> Text:
    """`error: PROBLEM` in red, the problem never read as rich markup (`[xN]` would vanish)."""
    return Text.assemble(("error:", "red"), f" {problem}")


def stderr() -> Console:
    """Progress, errors and (with `--out -`) the summary go to stderr, keeping stdout clean."""
    # soft_wrap: one problem stays one line in a CI log, however narrow the "terminal".
    return Console(stderr=True, soft_wrap=True)


def click_problem(error: ClickUsageError) -> str:
    """What click refused, worded as the project's refusals are (lower case, no final stop),
    with click's guess at what was meant kept as `(did you mean ...?)`."""
    options = getattr(error, "possibilities", None)  # only NoSuchOption has them
    # format_message adds the option's name to a bad value; typer adds its guess at a command.
    text = error.message if options else error.format_message()
    message, _, guess = text.rstrip(".").partition(". Did you mean ")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    if options:
        guess = " or ".join(sorted(options))
    return f"{message} (did you mean {guess.rstrip('?')}?)" if guess else message


class OneLineUsageError(ClickUsageError):
    """A usage error click found, shown as one `error: ...; see COMMAND --help` line instead of
    click's usage block, so that a CI log reads it like every other refusal of the command."""

    def __init__(self, problem: ClickUsageError, command: str) -> None:
        super().__init__(click_problem(problem), problem.ctx)
        self.command = command

    def show(self, file: IO[Any] | None = None) -> None:
        line = f"{self.message}; see {self.command} --help"
        if file is None:
            stderr().print(refusal(line))
        else:
            typer.echo(f"error: {line}", file=file)


def refused_command(problem: ClickUsageError, group: ClickContext | None) -> str:
    """The command whose help answers `problem`. An option that lacks its value is refused
    before the command's context exists: it is then the subcommand the group was running."""
    if problem.ctx is not None:
        return problem.ctx.command_path
    if group is None:
        return "usercom"
    running = group.invoked_subcommand
    return f"{group.command_path} {running}" if running else group.command_path


@contextlib.contextmanager
def one_line_usage_errors(group: ClickContext | None) -> Iterator[None]:
    try:
        yield
    except (OneLineUsageError, NoArgsIsHelpError):
        raise  # already one line, or a help page that is meant to be shown whole
    except ClickUsageError as problem:
        raise OneLineUsageError(problem, refused_command(problem, group)) from None


class UsercomGroup(TyperGroup):
    """The `usercom` group: click's usage errors, of the group and of every command it runs
    (their options are parsed inside `invoke`), become one-line refusals."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: ClickContext | None = None,
        **extra: Any,
    ) -> ClickContext:
        with one_line_usage_errors(parent):
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: ClickContext) -> Any:
        with one_line_usage_errors(ctx):
            return super().invoke(ctx)


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
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# Options `send` and `serve` share, spelled once so that their syntax and defaults cannot drift:
# a duration is 90s, 30m, 24h or 7d (a bare number is seconds), parsed by `serve.duration`.
MaxOutage = Annotated[
    str,
    typer.Option(
        "--max-outage",
        metavar="DURATION",
        help="how long an outage of User.com may last (90s, 30m, 24h; a bare number is "
        "seconds): then send stops (exit 3) and serve pauses delivery, probing until it ends",
    ),
]
MAX_OUTAGE = "30m"
# Retention takes the same durations; a bare number stays days, as it always was.
KeepDays = Annotated[
    str,
    typer.Option(
        "--keep-days",
        metavar="DURATION",
        help="delivered and rejected events keep their body this long (7d, 36h; a bare "
        "number is days)",
    ),
]
KEEP_DAYS = "7d"
Concurrency = Annotated[
    int, typer.Option(metavar="N", help="users delivered at once, per app (1-1024)")
]
Rate = Annotated[float | None, typer.Option(metavar="R", help="max requests per second, per app")]


def duration_of(option: str, raw: str) -> float:
    """Seconds of a duration option: the service's parser, its refusal as a usage error."""
    try:
        return duration(option, raw)
    except ServeConfigError as problem:
        raise UsageError(str(problem)) from problem


def retention_of(option: str, raw: str) -> float:
    """Days of a retention option: the service's parser, its refusal as a usage error."""
    try:
        return retention_days(option, raw)
    except ServeConfigError as problem:
        raise UsageError(str(problem)) from problem


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


def load_config(path: Path) -> Config:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(unreadable_config(str(path), error)) from error
    config = raw.get("Config", raw) if isinstance(raw, dict) else raw
    match parse_config(config):
        case Success(Config() as cfg):
            for note in cfg.ignored:
                stderr().print(f"warning: config {path}: {note}", highlight=False, markup=False)
            return cfg
        case Failure(problem):
            raise UsageError(f"config {path}: {problem.message}")
    raise UsageError(f"config {path}: not understood")


@contextlib.contextmanager
def open_out(target: Path | None) -> Iterator[IO[str] | None]:
    """`--out`, opened only when the first outcome is written: a run refused before any
    event (a locked ledger, a wrong key) leaves an existing file as it was."""
    if target is None:
        yield None
    elif str(target) == "-":
        yield sys.stdout
    else:
        existed = target.exists()
        try:
            target.open("a", encoding="utf-8").close()  # can it be written? (changes nothing)
        except OSError as error:
            raise UsageError(f"cannot write --out {target}: {error.strerror}") from error
        sink = LazyFile(target)
        try:
            yield sink
        finally:
            sink.close()
            if not existed and sink.handle is None:
                target.unlink(missing_ok=True)


class LazyFile(io.StringIO):
    """A text sink that creates its file on the first write (then writes through)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.handle: IO[str] | None = None

    def write(self, text: str) -> int:
        if self.handle is None:
            try:
                self.handle = self.path.open("w", encoding="utf-8")
            except OSError as error:
                raise UsageError(f"cannot write --out {self.path}: {error.strerror}") from error
        return self.handle.write(text)

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        super().close()


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
def open_source(events: str) -> Iterator[IO[bytes]]:
    if events == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = Path(events).open("rb")  # noqa: SIM115 - closed below; open errors are usage errors
    except OSError as error:
        raise UsageError(f"cannot read events {events}: {error.strerror}") from error
    with handle:
        yield handle


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
def writer_ledger(path: Path | None, cfg: Config, scratch: Path) -> Iterator[Ledger]:
    """The ledger asked for, or one in `scratch` for this run only (so that duplicates are one
    event and memory stays flat without --ledger too), deleted with it."""
    if path is None:
        book = Ledger.open_writer(scratch / "run.sqlite", cfg.subdomain)
        with contextlib.closing(book):
            yield book
        return
    try:
        book = Ledger.open_writer(path, cfg.subdomain)
    except LedgerError as error:
        raise UsageError(str(error)) from error
    with contextlib.closing(book):
        yield book


def count_events(events: str) -> int | None:
    """The total for the progress bar, when the input is a plain file we can read twice."""
    if events == "-":
        return None
    with Path(events).open("rb") as handle:
        if handle.peek(2)[:2] == b"\x1f\x8b":
            return None
        return sum(1 for line in handle if line.strip())


@app.command(short_help="Send a JSONL file of events to User.com.")
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
    base_url: Annotated[
        str | None,
        typer.Option(
            metavar="ORIGIN",
            help="send to another origin (e.g. the sandbox); URLs in outcomes stay real",
        ),
    ] = None,
    ledger: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="SQLite ledger: resume a run, skip finished events"),
    ] = None,
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
        ledger_path = checks.ledger_path(ledger)
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
        err.print(f"{input_name(source_name)} holds no events: nothing to send", highlight=False)
    elif summary.events or summary.skipped or summary.fault is None:
        title = "usercom send" + (" (dry run)" if dry_run else "")
        console.print(summary_table(summary, title))
    for words in final_words(summary, tally, has_ledger):
        err.print(words, highlight=False, markup=False)
    status = exit_status(summary, tally)
    if status in (EXIT_REJECTED, EXIT_UNFINISHED):
        for words in operator.send_advice(summary, ledger_path if has_ledger else None):
            err.print(f"next: {words}", highlight=False, markup=False)
    raise typer.Exit(status)


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
        err.print(f"{input_name(events)} holds no events: nothing to plan", highlight=False)
        raise typer.Exit(0)
    if summary.events or result.fault is None:
        console.print(summary_table(summary, "usercom send (dry run, live: reads only)"))
        console.print(operator.kinds_table(result.kinds))
    if result.fault is None and summary.broken_input:
        err.print(broken_input_words(summary.broken_input, False), highlight=False, markup=False)
        raise typer.Exit(EXIT_USAGE)
    if result.fault is not None:
        err.print(f"error: {result.fault}", highlight=False, markup=False)
        raise typer.Exit(EXIT_FAULT)
    if result.interrupted:
        err.print("interrupted: nothing was written", highlight=False)
        raise typer.Exit(130)
    for words in operator.send_advice(summary, None):
        err.print(f"next: {words}", highlight=False, markup=False)
    raise typer.Exit(EXIT_REJECTED if summary.rejected else 0)


def _announce(url: str) -> None:
    print(f"sandbox listening on {url}", flush=True)


def _sandbox_key(api_key: str | None) -> str | None:
    if api_key is not None and not api_key.strip():
        raise UsageError(
            "--api-key must not be empty (it would refuse every key): leave it out to accept "
            "any key, or give the one key to accept"
        )
    return api_key


@app.command(short_help="Serve a local User.com sandbox until stopped.")
def sandbox(
    port: Annotated[
        int, typer.Option(metavar="PORT", help="port on 127.0.0.1 (0 picks a free one)")
    ] = 8000,
    api_key: Annotated[
        str | None, typer.Option(metavar="KEY", help="the only API key accepted (default: any key)")
    ] = None,
    force: Annotated[
        list[str] | None,
        typer.Option(
            metavar="RULE",
            help="force a status: '[METHOD ]ROUTE=STATUS[xN]', e.g. "
            "'users-by-id-events-create=503x10' for send's event writes (repeatable)",
        ),
    ] = None,
    latency_ms: Annotated[
        float, typer.Option(metavar="MS", min=0, help="delay before each answer")
    ] = 0,
    error_rate: Annotated[
        float,
        typer.Option(
            metavar="SHARE", min=0, max=1, help="share of requests answered 500/502/503/504"
        ),
    ] = 0,
    throttle_rate: Annotated[
        float, typer.Option(metavar="SHARE", min=0, max=1, help="share answered 429")
    ] = 0,
    drop_rate: Annotated[
        float, typer.Option(metavar="SHARE", min=0, max=1, help="share of connections dropped")
    ] = 0,
    lost_response_rate: Annotated[
        float,
        typer.Option(
            metavar="SHARE", min=0, max=1, help="share of writes done whose answer is lost"
        ),
    ] = 0,
    rate_limit: Annotated[
        float | None, typer.Option(metavar="RPS", min=0.1, help="token bucket, requests/s")
    ] = None,
    seed: Annotated[
        int, typer.Option(metavar="N", help="seed of the sandbox's random choices")
    ] = 0,
    user_key_field: Annotated[
        str,
        typer.Option(metavar="NAME", help="how user objects spell the user key: user_key or key"),
    ] = "user_key",
    unknown_attributes: Annotated[
        str,
        typer.Option(
            metavar="MODE",
            help="attributes that are not standard fields: accept, ignore or reject (400)",
        ),
    ] = "accept",
) -> None:
    """Serve the local User.com sandbox until stopped (state at /__sandbox__/state).

    By default it answers as User.com documents its API: update_or_create answers only
    "created" and "id", names over 40 and city/phone over 64 characters are refused (400), and
    with --api-key only that key is accepted.
    """
    err = stderr()
    try:
        key = _sandbox_key(api_key)
        checks.port(port)
        options = SandboxOptions(
            api_key=key,
            forced=tuple(parse_forced(spec, called="--force") for spec in force or ()),
            latency_ms=latency_ms,
            error_rate=error_rate,
            throttle_rate=throttle_rate,
            drop_rate=drop_rate,
            lost_response_rate=lost_response_rate,
            rate_limit_rps=rate_limit,
            seed=seed,
            user_key_field=checks.choice("--user-key-field", user_key_field, KEY_FIELDS),
            unknown_attributes=checks.choice(
                "--unknown-attributes", unknown_attributes, UNKNOWN_ATTRIBUTES
            ),
        )
        with contextlib.suppress(KeyboardInterrupt):
            run(options, port, log_level="warning", on_listening=_announce)
    except (UsageError, ValueError, ListenError) as problem:
        err.print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem


DEMO_WRITE_KEY = "demo-write-key"


def _demo_defaults(
    config: Path | None, ledger: Path | None, write_key: list[str] | None, base_url: str | None
) -> tuple[Path, Path | None, list[str]]:
    """`serve --demo`: the example config and the demo write key unless given."""
    if base_url is not None:
        raise UsageError("--demo sends to its own sandbox: remove --base-url")
    return config or EXAMPLES / "config.json", ledger, write_key or [DEMO_WRITE_KEY]


WRITE_KEYS_ENV = "USERCOM_WRITE_KEYS"
TRANSFORMER_TOKEN_ENV = "USERCOM_TRANSFORMER_TOKEN"


def _secret_lines(path: Path, option: str) -> list[str]:
    """The non-blank lines of a secrets file, `#` comments left out."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UsageError(f"cannot read {option} {path}: {reason}") from error
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def serve_secrets(
    write_keys: tuple[str, ...],
    write_key_file: Path | None,
    transformer_token: str | None,
    transformer_token_file: Path | None,
    env: Mapping[str, str],
) -> tuple[tuple[str, ...], str | None]:
    """The write keys and the transformer token, from the command line (which `ps` shows), a
    file, or the environment. Keys named on the command line or in --write-key-file replace
    $USERCOM_WRITE_KEYS (comma-separated); --transformer-token, then --transformer-token-file,
    replace $USERCOM_TRANSFORMER_TOKEN. A variable set but empty is refused, not read as "no
    key", which would open the service to anyone."""
    keys = list(write_keys)
    if write_key_file is not None:
        listed = _secret_lines(write_key_file, "--write-key-file")
        if not listed:
            raise UsageError(
                f"--write-key-file {write_key_file} holds no write key (one a line; # comments)"
            )
        keys += listed
    if write_key_file is None and not write_keys and WRITE_KEYS_ENV in env:
        keys = [key.strip() for key in env[WRITE_KEYS_ENV].split(",") if key.strip()]
        if not keys:
            raise UsageError(
                f"{WRITE_KEYS_ENV} is set but names no key: give keys separated by commas, or "
                "unset it"
            )
    token = transformer_token
    if token is None and transformer_token_file is not None:
        lines = _secret_lines(transformer_token_file, "--transformer-token-file")
        if not lines:
            raise UsageError(f"--transformer-token-file {transformer_token_file} is empty")
        token = lines[0]
    if token is None and TRANSFORMER_TOKEN_ENV in env:
        token = env[TRANSFORMER_TOKEN_ENV].strip()
        if not token:
            raise UsageError(f"{TRANSFORMER_TOKEN_ENV} is set but empty: give a token or unset it")
    return tuple(keys), token


def demo_banner(url: str, sandbox_url: str, key: str, ledger: Path, *, scratch: bool) -> str:
    """What `serve --demo` prints under its address: how to send an event, and where its
    ledger is, so that report, failed and explain can be tried on what was sent."""
    kept = " (scratch: deleted when the demo stops)" if scratch else ""
    return (
        f"  sandbox User.com: {sandbox_url} (what it holds: {sandbox_url}/__sandbox__/state)\n"
        f"  send an event: curl -u {key}: -H 'Content-Type: application/json' "
        '-d \'{"userId": "u-1", "traits": {"email": "ada@example.com"}}\' '
        f"{url}/v1/identify\n"
        f"  health: {url}/health   metrics: {url}/metrics   Ctrl+C stops\n"
        f"  ledger: {ledger}{kept}: try `usercom report {ledger}`, `usercom failed {ledger}`, "
        f"`usercom explain KEY --ledger {ledger}`"
    )


def _serve_options(
    config: Path | None,
    ledger: Path | None,
    write_keys: tuple[str, ...],
    *,
    host: str,
    port: int,
    base_url: str | None,
    concurrency: int,
    rate: float | None,
    give_up_after: str,
    max_queued: int,
    keep_days: str,
    transformer_token: str | None,
    max_outage: str,
    max_connections: int,
    header_timeout: str,
    body_timeout: str,
) -> ServeOptions:
    """`usercom serve`'s options, checked before anything is opened (UsageError or
    ServeConfigError: one line, exit 2)."""
    if config is None:
        raise UsageError("--config FILE is required (or --demo)")
    if ledger is None:
        raise UsageError("--ledger PATH is required (or --demo)")
    sources = load_sources(config, write_keys)
    origin = checks.origin(base_url) if base_url is not None else None
    if not host.strip():
        raise UsageError("--host must not be empty (127.0.0.1: this machine only)")
    if max_queued < 1:
        raise UsageError(f"--max-queued must be an integer >= 1: got {max_queued}")
    days_kept = retention_of("--keep-days", keep_days)
    if transformer_token is not None and not transformer_token.strip():
        raise UsageError("--transformer-token must not be empty")
    if max_connections < 1:
        raise UsageError(f"--max-connections must be an integer >= 1: got {max_connections}")
    return ServeOptions(
        sources=sources,
        # Nothing is created before the address is known to be free (see `serve`).
        ledgers=ledger_paths(ledger, tuple(sources.apps), create=False),
        host=host,
        port=checks.port(port),
        base_url=origin,
        concurrency=checks.concurrency(concurrency),
        rate=checks.rate(rate),
        give_up_after=duration("--give-up-after", give_up_after),
        max_queued=max_queued,
        keep_days=days_kept,
        transformer_token=transformer_token,
        max_outage=duration("--max-outage", max_outage),
        max_connections=max_connections,
        header_timeout=duration("--header-timeout", header_timeout),
        body_timeout=duration("--body-timeout", body_timeout),
    )


@app.command(short_help="Run the live destination: ingest, queue and delivery.")
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help='required unless --demo: one app\'s destination config, or {"sources": '
            '[{"writeKey": K, "destination": {...}}, ...]} for several',
        ),
    ] = None,
    ledger: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="required unless --demo: the ledger (the queue), a file for one app; a "
            "folder holding <subdomain>.sqlite per app for several",
        ),
    ] = None,
    host: Annotated[str, typer.Option(metavar="HOST", help="address to listen on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(metavar="PORT", help="port to listen on (0 picks a free one)")
    ] = 8080,
    write_key: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY",
            help="a write key accepted for the one app (repeatable; visible in ps: prefer "
            f"--write-key-file or ${WRITE_KEYS_ENV}, comma-separated); none: anyone may send",
        ),
    ] = None,
    write_key_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="write keys for the one app, one a line"),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(metavar="ORIGIN", help="send to another origin (the sandbox, a proxy)"),
    ] = None,
    concurrency: Concurrency = 8,
    rate: Rate = None,
    give_up_after: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="a failed event is retried until it is this old (24h, 90m)"
        ),
    ] = "24h",
    max_queued: Annotated[
        int, typer.Option(metavar="N", help="past this many queued events ingest answers 503")
    ] = 1_000_000,
    keep_days: KeepDays = KEEP_DAYS,
    transformer_token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            help="require Authorization: Bearer TOKEN on the transformer API (visible in ps: "
            f"prefer --transformer-token-file or ${TRANSFORMER_TOKEN_ENV})",
        ),
    ] = None,
    transformer_token_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="the transformer token, on the file's first line"),
    ] = None,
    max_outage: MaxOutage = MAX_OUTAGE,
    max_connections: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="client connections open at once: at the cap the longest idle one is closed "
            "for a new one; when all are busy new ones get 503 (a proxy in front holds more)",
        ),
    ] = 1000,
    header_timeout: Annotated[
        str,
        typer.Option(metavar="DURATION", help="a request's head must arrive within this"),
    ] = "10s",
    body_timeout: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="a request's body must arrive within this (else 408)"
        ),
    ] = "60s",
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="in front of a local sandbox: the example config, a scratch ledger and the "
            f"write key {DEMO_WRITE_KEY} unless given",
        ),
    ] = False,
) -> None:
    """Serve the live User.com destination: RudderStack/Segment HTTP API and webhook ingest,
    a durable queue in the ledger, continuous delivery, the transformer API, /health, /metrics.

    Exit status: 0 stopped by SIGTERM or Ctrl+C; 2 a usage, config or ledger problem (nothing
    was started).
    """
    err = stderr()
    with contextlib.ExitStack() as stack:
        try:
            keys, transformer_token = serve_secrets(
                tuple(write_key or ()),
                write_key_file,
                transformer_token,
                transformer_token_file,
                os.environ,
            )
            write_key = list(keys) or None
            scratch = demo and ledger is None
            if demo:
                config, ledger, write_key = _demo_defaults(config, ledger, write_key, base_url)
                if ledger is None:
                    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="usercom-"))
                    ledger = Path(folder) / "demo.sqlite"
            options = _serve_options(
                config,
                ledger,
                tuple(write_key or ()),
                host=host,
                port=port,
                base_url=base_url,
                concurrency=concurrency,
                rate=rate,
                give_up_after=give_up_after,
                max_queued=max_queued,
                keep_days=keep_days,
                transformer_token=transformer_token,
                max_outage=max_outage,
                max_connections=max_connections,
                header_timeout=header_timeout,
                body_timeout=body_timeout,
            )
            sources = options.sources
            # Listen first: a port in use or a wrong host must leave no ledger behind.
            sock = listening_socket(options.host, options.port)
            stack.callback(sock.close)
            if demo:
                cfg = next(iter(sources.apps.values()))
                sandbox_url = stack.enter_context(
                    serve_in_thread(SandboxOptions(api_key=cfg.api_key))
                )
                options = dataclasses.replace(options, base_url=sandbox_url)
            create_ledger_folders(options.ledgers)
            service = Service.open(options)
            stack.callback(service.store.close)
        except (UsageError, ServeConfigError, LedgerError, ServeListenError) as problem:
            err.print(refusal(problem), highlight=False)
            raise typer.Exit(EXIT_USAGE) from problem
        # From here on stderr is the service's log: every line logfmt, each warning once.
        configure_logs()
        notes = {app: cfg.ignored for app, cfg in sources.apps.items()}
        for note, apps in ignored_entries(notes):
            emit(logging.WARNING, "config_entry_ignored", config=config, apps=apps, note=note)
        if sources.open:
            emit(
                logging.WARNING,
                "ingest_open",
                host=options.host,
                note=f"no --write-key: anyone who can reach {options.host} may send events",
            )

        def announce(url: str) -> None:
            print(f"usercom serve listening on {url}", flush=True)
            if demo and ledger is not None:
                # A key of the operator's own is never printed: only the demo's.
                given = (write_key or [DEMO_WRITE_KEY])[0]
                key = given if given == DEMO_WRITE_KEY else "$WRITE_KEY"
                banner = demo_banner(url, options.base_url or "", key, ledger, scratch=scratch)
                print(banner, flush=True)

        run_service(service, sock, announce)


def _shown(path: Path) -> str:
    """A path as short as it can be told: relative to here when it is below here."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def state_tables(state: dict[str, Any]) -> list[Table]:
    users = Table(title=f"sandbox users ({len(state.get('users', []))})")
    for column in ("id", "custom_id", "email", "user_key"):
        users.add_column(column)
    for user in state.get("users", [])[:20]:
        users.add_row(*(str(user.get(c)) for c in ("id", "custom_id", "email", "user_key")))
    companies = Table(title=f"sandbox companies ({len(state.get('companies', []))})")
    for column in ("id", "custom_id", "name", "member user ids"):
        companies.add_column(column)
    for company in state.get("companies", [])[:20]:
        members = ", ".join(str(member) for member in company.get("employees") or ())
        companies.add_row(*(str(company.get(c)) for c in ("id", "custom_id", "name")), members)
    totals = Table(title="sandbox totals")
    totals.add_column("what")
    totals.add_column("count", justify="right")
    for what in ("users", "companies", "events", "site_views"):
        totals.add_row(what, str(len(state.get(what, []))))
    totals.add_row("requests received", str(state.get("request_count")))
    return [users, companies, totals]


@app.command(short_help="Send the example events to a local sandbox, show the result.")
def demo(
    events: Annotated[Path, typer.Option(metavar="FILE", help="events to send")] = EXAMPLES
    / "events.jsonl",
    config: Annotated[Path, typer.Option(metavar="FILE", help="destination config")] = EXAMPLES
    / "config.json",
) -> None:
    """Start the sandbox, send the example events to it, and show what it now holds."""
    console = Console()
    try:
        cfg = load_config(config)
        with serve_in_thread(SandboxOptions(api_key=cfg.api_key)) as url:
            console.print(f"[bold]sandbox[/bold] on {url}")
            console.print(f"sending {_shown(events)} as {cfg.base_url}", highlight=False)
            with open_source(str(events)) as source:
                summary, tally = run_send(
                    source,
                    cfg,
                    ledger=None,
                    options=DeliveryOptions(concurrency=8, base_url=url),
                    sink=None,
                    err=stderr(),
                    total=count_events(str(events)),
                    retry_rejected=False,
                )
            state = httpx.get(f"{url}/__sandbox__/state").json()
    except UsageError as problem:
        stderr().print(refusal(problem))
        raise typer.Exit(2) from problem
    console.print(summary_table(summary, "usercom demo"))
    for table in state_tables(state):
        console.print(table)
    for words in final_words(summary, tally, has_ledger=False):
        stderr().print(words, highlight=False, markup=False)
    raise typer.Exit(exit_status(summary, tally))


@app.command(short_help="Prove the config's key and app with one authenticated read.")
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


@app.command(short_help="Print a ledger's unfinished events as JSONL, in order.")
def failed(
    ledger: Annotated[Path, typer.Argument(metavar="LEDGER", help="the ledger of a run")],
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
            statuses: tuple[LedgerStatus, ...] = ("rejected",) if rejected else UNFINISHED
            for line in book.lines(statuses):
                sink.write(line + b"\n")
    except (UsageError, LedgerError) as problem:
        stderr().print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem
    except BrokenPipeError:
        return


@app.command(short_help="Make a ledger's events pending again.")
def requeue(
    ledger: Annotated[Path, typer.Argument(metavar="LEDGER", help="the ledger")],
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
        operator.check_requeue(keys, delivered=delivered)
        cfg_app = reader_ledger(ledger)
        app_name = cfg_app.app
        cfg_app.close()
        with (
            contextlib.closing(Ledger.open_writer(ledger, app_name)) as book,
            sqlite_errors_as_ledger_errors(ledger),
        ):
            chosen = (
                operator.requeue_keys(book, keys, rejected=rejected, delivered=delivered)
                if keys
                else None
            )
            changed = book.requeue(chosen, rejected=rejected)
    except (UsageError, LedgerError) as problem:
        stderr().print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem
    typer.echo(operator.pending_again(changed))


@app.command(short_help="Show one event's story from a ledger.")
def explain(
    key: Annotated[
        str,
        typer.Argument(
            metavar="KEY",
            help="the event's key, with or without the app prefix (a unique prefix will do)",
        ),
    ],
    ledger: Annotated[Path, typer.Option(metavar="FILE", help="the ledger of a run or service")],
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
            row = operator.find_event(book, key)
            lines = (
                [json.dumps(operator.story_json(book, row))]
                if as_json
                else operator.story(book, row)
            )
    except (UsageError, LedgerError) as problem:
        stderr().print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem
    for line in lines:
        typer.echo(line)


@app.command(short_help="Sum up everything a ledger holds.")
def report(
    ledger: Annotated[
        Path, typer.Argument(metavar="LEDGER", help="the ledger of a run or service")
    ],
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
            summed = operator.build_report(book)
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
        console.print(f"next: {words}", highlight=False, markup=False)


@contextlib.contextmanager
def open_binary_out(target: Path | None) -> Iterator[IO[bytes]]:
    if target is None or str(target) == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        handle = target.open("wb")
    except OSError as error:
        raise UsageError(f"cannot write {target}: {error.strerror}") from error
    with handle:
        yield handle


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
