"""The `usercom` command: send a JSONL file of events, serve the sandbox, run the demo."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Annotated, Any

import httpx
import typer
from returns.result import Failure, Success
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.core.config import Config, parse_config
from pipeline.delivery import DeliveryOptions, Incoming, Outcome, Summary, deliver, read_jsonl
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.loop import run as run_loop
from pipeline.sandbox import SandboxOptions, run, serve_in_thread

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Deliver RudderStack-format events to User.com (or to a local sandbox of it).",
)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def stderr() -> Console:
    """Progress, errors and (with `--out -`) the summary go to stderr, keeping stdout clean."""
    return Console(stderr=True)


class UsageError(Exception):
    """A problem with the command line or the config: exit status 2."""


def load_config(path: Path) -> Config:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read config {path}: {error}") from error
    config = raw.get("Config", raw) if isinstance(raw, dict) else raw
    match parse_config(config):
        case Success(Config() as cfg):
            return cfg
        case Failure(problem):
            raise UsageError(f"config {path}: {problem.message}")
    raise UsageError(f"config {path}: not understood")


@contextlib.contextmanager
def open_events(source: str) -> Iterator[IO[str]]:
    if source == "-":
        yield sys.stdin
        return
    path = Path(source)
    if not path.is_file():
        raise UsageError(f"cannot read events {source}: no such file")
    with path.open(encoding="utf-8") as handle:
        yield handle


@contextlib.contextmanager
def open_out(target: Path | None) -> Iterator[IO[str] | None]:
    if target is None:
        yield None
    elif str(target) == "-":
        yield sys.stdout
    else:
        with target.open("w", encoding="utf-8") as handle:
            yield handle


def open_ledger(path: Path) -> Ledger:
    try:
        return Ledger(path)
    except sqlite3.Error as error:
        raise UsageError(f"cannot use ledger {path}: {error}") from error


def count_lines(source: str) -> int | None:
    """The total for the progress bar, when the input is a file we can read twice."""
    if source == "-":
        return None
    with Path(source).open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def dry_run(cfg: Config, items: Iterable[Incoming], on_outcome: Any) -> Summary:
    """Plan every event with no request at all (the pure pipeline only)."""
    summary = Summary()
    for item in items:
        match item.job:
            case Success(_):
                outcome = Outcome(item.key, "planned")
            case Failure(problem):
                outcome = Outcome(item.key, "rejected", 0, (), problem.message)
            case _:
                outcome = Outcome(item.key, "rejected", 0, (), item.problem)
        summary.add(outcome)
        on_outcome(item, outcome)
    return summary


def summary_table(summary: Summary, title: str) -> Table:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for status in ("delivered", "planned", "rejected", "failed", "skipped"):
        if status in summary.counts or status in ("delivered", "rejected", "failed"):
            table.add_row(status, str(summary.counts.get(status, 0)))
    table.add_row("events", str(summary.events))
    table.add_row("API calls", str(summary.api_calls))
    table.add_row("API calls per event", f"{summary.calls_per_event:.2f}")
    table.add_row("time", f"{summary.seconds:.2f} s")
    if summary.seconds:
        table.add_row("events per second", f"{summary.events / summary.seconds:.0f}")
    return table


def send_events(
    events: str,
    cfg: Config,
    *,
    base_url: str | None,
    ledger_path: Path | None,
    options: DeliveryOptions,
    out: Path | None,
    dry: bool,
) -> Summary:
    if events != "-" and not Path(events).is_file():
        raise UsageError(f"cannot read events {events}: no such file")
    if out is not None and str(out) != "-" and not out.parent.is_dir():
        raise UsageError(f"cannot write outcomes to {out}: no such folder {out.parent}")
    total = count_lines(events)
    ledger = open_ledger(ledger_path) if ledger_path else None
    with contextlib.closing(ledger) if ledger is not None else contextlib.nullcontext():
        summary, skipped = _send_with(events, cfg, total, ledger, base_url, options, out, dry)
    summary.counts["skipped"] = skipped
    summary.events += skipped
    return summary


def _send_with(
    events: str,
    cfg: Config,
    total: int | None,
    ledger: Ledger | None,
    base_url: str | None,
    options: DeliveryOptions,
    out: Path | None,
    dry: bool,
) -> tuple[Summary, int]:
    """Stream the events through delivery (or planning), recording each outcome as it comes."""
    skipped = 0
    progress = Progress(
        TextColumn("[bold]sending" if not dry else "[bold]planning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=stderr(),
        transient=False,
    )
    with open_events(events) as source, open_out(out) as sink, progress:
        task = progress.add_task("events", total=total, status="")

        def unfinished(items: Iterable[Incoming]) -> Iterator[Incoming]:
            nonlocal skipped
            for item in items:
                if ledger is not None and ledger.finished(item.key):
                    skipped += 1
                    progress.advance(task)
                    continue
                yield item

        def on_outcome(item: Incoming, outcome: Outcome) -> None:
            if ledger is not None and outcome.status != "planned":
                ledger.record(outcome, item.line)
            if sink is not None:
                sink.write(json.dumps(outcome.as_json()) + "\n")
            progress.advance(task)
            if outcome.status in ("rejected", "failed"):
                progress.update(task, status=f"[red]{outcome.status}: {outcome.key}")

        items = unfinished(read_jsonl(source, cfg))
        if dry:
            summary = dry_run(cfg, items, on_outcome)
        else:
            summary = run_loop(deliver(items, cfg, replace(options, base_url=base_url), on_outcome))
    return summary, skipped


@app.command()
def send(
    events: Annotated[str, typer.Argument(help="JSONL file of RudderStack events, or - for stdin")],
    config: Annotated[Path, typer.Option(help="destination config JSON (SPEC §1 keys)")],
    base_url: Annotated[
        str | None,
        typer.Option(help="send to another origin (e.g. the sandbox); URLs in outcomes stay real"),
    ] = None,
    ledger: Annotated[
        Path | None, typer.Option(help="SQLite ledger: resume a run, skip finished events")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="users delivered at once")] = 8,
    rate: Annotated[float | None, typer.Option(min=0.1, help="max requests per second")] = None,
    out: Annotated[
        Path | None, typer.Option(help="write one outcome per event as JSONL (- for stdout)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="plan only; make no request")] = False,
) -> None:
    """Send a JSONL file of events to User.com.

    Exit status: 0 when every event was delivered, 1 when some were rejected or failed,
    2 for usage or config errors.
    """
    try:
        cfg = load_config(config)
        summary = send_events(
            events,
            cfg,
            base_url=base_url,
            ledger_path=ledger,
            options=DeliveryOptions(concurrency=concurrency, rate=rate),
            out=out,
            dry=dry_run,
        )
    except UsageError as problem:
        stderr().print(f"[red]error:[/red] {problem}")
        raise typer.Exit(2) from problem
    console = stderr() if out is not None and str(out) == "-" else Console()
    console.print(summary_table(summary, "usercom send" + (" (dry run)" if dry_run else "")))
    raise typer.Exit(0 if summary.all_delivered else 1)


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0 picks a free one)")] = 8000,
    latency_ms: Annotated[float, typer.Option(min=0)] = 0,
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of requests answered 5xx")
    ] = 0,
    throttle_rate: Annotated[float, typer.Option(min=0, max=1, help="share answered 429")] = 0,
    drop_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of connections dropped")
    ] = 0,
    lost_response_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of writes done whose answer is lost")
    ] = 0,
    rate_limit: Annotated[
        float | None, typer.Option(min=0.1, help="token bucket, requests/s")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Serve the local User.com sandbox until stopped (state at /__sandbox__/state)."""
    options = SandboxOptions(
        latency_ms=latency_ms,
        error_rate=error_rate,
        throttle_rate=throttle_rate,
        drop_rate=drop_rate,
        lost_response_rate=lost_response_rate,
        rate_limit_rps=rate_limit,
        seed=seed,
    )
    if port == 0:
        with serve_in_thread(options, 0) as url:
            typer.echo(f"sandbox listening on {url}", err=False)
            sys.stdout.flush()
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    asyncio.run(asyncio.sleep(3600))
        return
    typer.echo(f"sandbox listening on http://127.0.0.1:{port}")
    run(options, port)


def state_tables(state: dict[str, Any]) -> list[Table]:
    users = Table(title=f"sandbox users ({len(state.get('users', []))})")
    for column in ("id", "custom_id", "email", "user_key"):
        users.add_column(column)
    for user in state.get("users", [])[:20]:
        users.add_row(*(str(user.get(c)) for c in ("id", "custom_id", "email", "user_key")))
    companies = Table(title=f"sandbox companies ({len(state.get('companies', []))})")
    for column in ("id", "custom_id", "name", "employees"):
        companies.add_column(column)
    for company in state.get("companies", [])[:20]:
        companies.add_row(*(str(company.get(c)) for c in ("id", "custom_id", "name", "employees")))
    totals = Table(title="sandbox totals")
    totals.add_column("what")
    totals.add_column("count", justify="right")
    for what in ("users", "companies", "events", "site_views"):
        totals.add_row(what, str(len(state.get(what, []))))
    totals.add_row("requests received", str(state.get("request_count")))
    return [users, companies, totals]


@app.command()
def demo(
    events: Annotated[Path, typer.Option(help="events to send")] = EXAMPLES / "events.jsonl",
    config: Annotated[Path, typer.Option(help="destination config")] = EXAMPLES / "config.json",
) -> None:
    """Start the sandbox, send the example events to it, and show what it now holds."""
    console = Console()
    try:
        cfg = load_config(config)
        with serve_in_thread(SandboxOptions()) as url:
            console.print(f"[bold]sandbox[/bold] on {url}; sending {events} as {cfg.base_url}")
            summary = send_events(
                str(events),
                cfg,
                base_url=url,
                ledger_path=None,
                options=DeliveryOptions(concurrency=8),
                out=None,
                dry=False,
            )
            state = httpx.get(f"{url}/__sandbox__/state").json()
    except UsageError as problem:
        stderr().print(f"[red]error:[/red] {problem}")
        raise typer.Exit(2) from problem
    console.print(summary_table(summary, "usercom demo"))
    for table in state_tables(state):
        console.print(table)
    raise typer.Exit(0 if summary.all_delivered else 1)


@app.command()
def failed(
    ledger: Annotated[Path, typer.Argument(help="the ledger of a run")],
    out: Annotated[Path | None, typer.Option(help="where to write them (default stdout)")] = None,
) -> None:
    """Export the failed events of a ledger as JSONL, ready to send again."""
    if not ledger.exists():
        stderr().print(f"[red]error:[/red] no ledger at {ledger}")
        raise typer.Exit(2)
    try:
        with open_ledger(ledger) as book, open_out(out or Path("-")) as sink:
            for line in book.failed_lines():
                if sink is not None:
                    sink.write(line + "\n")
    except (UsageError, sqlite3.Error, OSError) as problem:
        stderr().print(f"[red]error:[/red] cannot export from {ledger}: {problem}")
        raise typer.Exit(2) from problem


def main() -> None:
    app()


if __name__ == "__main__":
    main()
