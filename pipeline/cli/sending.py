"""`usercom send`: the queue (the ledger's unfinished events, then the input), the run, the
progress, the signals, the summary and the exit status (DELIVERY §2-§4)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from pipeline.cli.plain import plain
from pipeline.core.config import Config
from pipeline.delivery.engine import AppState, Control, DeliveryOptions, deliver
from pipeline.delivery.feed import ReadAhead, feed
from pipeline.delivery.filing import Filing, refile_kept, stop_when_refused
from pipeline.delivery.incoming import FirstSeen, Incoming
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.lifecycle import SETTLED
from pipeline.delivery.loop import run as run_loop
from pipeline.delivery.outcome import Outcome, Summary
from pipeline.delivery.pacing import Pause
from pipeline.delivery.pg import PgLedger
from pipeline.delivery.pg.gate import LaneGate
from pipeline.delivery.pg.sharing import first_share, share_with

PROGRESS_EVERY_S = 10.0
BAR_EVERY_S = 0.5  # how often the terminal bar looks whether delivery is paused

# Exit statuses (DELIVERY §4).
EXIT_DELIVERED, EXIT_REJECTED, EXIT_USAGE, EXIT_FAULT, EXIT_UNFINISHED = 0, 1, 2, 3, 4
# Shown in the summary even at 0: what an operator looks for first.
ALWAYS_SHOWN = ("delivered", "rejected", "failed")
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
# The reader of `--out -` went away (`| head`): what a shell reports for a writer that
# SIGPIPE ended, so `set -o pipefail` scripts see the run did not finish.
EXIT_CLOSED_OUT = 128 + signal.SIGPIPE
STOPPING = "stopping… (Ctrl+C again to leave at once)"
OUT_CLOSED = "--out - was closed (its reader went away)"


@dataclass(slots=True)
class Tally:
    """What the run has read and filed, for progress lines and the final words."""

    read: int = 0
    last_position: int = 0
    unsent: list[int] = field(default_factory=list)  # positions left pending (no ledger)
    signal: signal.Signals | None = None
    out_closed: bool = False

    def count(self, event: Incoming) -> None:
        """One more event handed to delivery."""
        self.read += 1
        self.last_position = max(self.last_position, event.position)


def progress_every() -> float:
    """Seconds between progress lines when stderr is not a terminal (env override for logs)."""
    try:
        seconds = float(os.environ.get("USERCOM_PROGRESS_SECONDS", PROGRESS_EVERY_S))
    except ValueError:
        return PROGRESS_EVERY_S
    return seconds if math.isfinite(seconds) and seconds > 0 else PROGRESS_EVERY_S


def exit_status(summary: Summary, tally: Tally) -> int:
    if tally.signal is not None:
        return EXIT_SIGNAL.get(tally.signal, 130)
    if tally.out_closed:
        return EXIT_CLOSED_OUT
    if summary.fault is not None:
        return EXIT_FAULT
    if summary.broken_input:  # an input problem: a re-run of the same input breaks off again
        return EXIT_USAGE
    if summary.unfinished:
        return EXIT_UNFINISHED
    if summary.rejected:
        return EXIT_REJECTED
    return EXIT_DELIVERED


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def pause_words(pause: Pause, max_outage: float) -> str:
    """Why every lane waits, when the next probe goes, and when the run gives up."""
    why = (
        "half or more of the last 20 requests failed (5xx, timeouts, lost connections)"
        if pause.reason == "probing"
        else pause.reason
    )
    probe = (
        "probing now"
        if pause.next_probe_in is None
        else f"next probe in {_duration(math.ceil(pause.next_probe_in))}"  # never "in 0 s"
    )
    left = _duration(max(0.0, max_outage - pause.outage_for))
    return f"paused: {why}; {probe}; stops after --max-outage ({_duration(max_outage)}) in {left}"


def progress_line(
    summary: Summary,
    seconds: float,
    total: int | None,
    pause: Pause | None = None,
    max_outage: float = 1800.0,
) -> str:
    """The periodic line: events done (finished statuses only, so the counts add up), the rate,
    each status, and while paused why and until when."""
    c = summary.counts
    done = sum(c[status] for status in SETTLED)
    shown = f"{done}/{total}" if total is not None else str(done)
    line = (
        f"usercom send: {shown} done ({done / max(seconds, 1e-9):.0f}/s): "
        f"delivered {c['delivered']}, rejected {c['rejected']}, failed {c['failed']}, "
        f"held {c['held']}"
    )
    if c["pending"]:
        line += f", pending {c['pending']} (not finished)"
    return line if pause is None else f"{line}; {plain(pause_words(pause, max_outage))}"


class StatusColumn(ProgressColumn):
    """The bar's last words: the pause while paused, else the last problem. Always plain
    text: a messageId like `[/bold]` is the client's data, never rich markup."""

    def render(self, task: Task) -> Text:
        pause = task.fields.get("pause")
        if pause:
            return Text(plain(str(pause)), style="yellow")
        status = task.fields.get("status")
        return status if isinstance(status, Text) else Text(plain(str(status or "")))


def problem_text(outcome: Outcome) -> Text:
    return Text(f"{outcome.status}: {plain(outcome.key)}", style="red")


def send_progress(err: Console) -> Progress:
    return Progress(
        TextColumn("[bold]sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        StatusColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


def run_send(
    source: IO[bytes],
    cfg: Config,
    *,
    ledger: Ledger | None,
    has_ledger: bool = True,  # False: `ledger` is a scratch one, deleted after the run
    options: DeliveryOptions,
    sink: IO[str] | None,
    err: Console,
    total: int | None,
    retry_rejected: bool,
    scratch: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Summary, Tally]:
    """Deliver, filing each outcome in the ledger and `sink`; stop cleanly on SIGINT/SIGTERM.
    `transport` replaces real HTTPS (tests pass `FakeUserCom`).

    The messageIds read are kept in `scratch` (this run's folder), opened before any event
    is sent."""
    with contextlib.closing(FirstSeen(scratch)) as seen:
        return _run_send(
            source,
            cfg,
            ledger,
            has_ledger,
            options,
            sink,
            err,
            total,
            retry_rejected,
            seen,
            transport,
        )


def _run_send(
    source: IO[bytes],
    cfg: Config,
    ledger: Ledger | None,
    has_ledger: bool,
    options: DeliveryOptions,
    sink: IO[str] | None,
    err: Console,
    total: int | None,
    retry_rejected: bool,
    seen: FirstSeen,
    transport: httpx.AsyncBaseTransport | None,
) -> tuple[Summary, Tally]:
    tally = Tally()
    # On a shared queue no request starts for a lane whose lease may have lapsed (§7).
    control = Control(licensed=ledger.licensed if isinstance(ledger, PgLedger) else None)

    def say(words: str) -> None:
        err.print(plain(words), highlight=False, markup=False)

    def cannot_commit(problem: str) -> None:
        control.stop(f"the ledger cannot commit ({problem})")
        kept = "; the outcomes not filed are kept and filed again" if has_ledger else ""
        say(f"usercom send: the ledger cannot commit ({problem}): no new event is sent{kept}")

    filing = None if ledger is None else Filing(ledger, cannot_commit)
    summary_box: list[Summary] = []
    pre = Summary()
    live = err.is_terminal
    progress = send_progress(err)
    counts = Summary()
    app = AppState.new(options)
    # A PostgreSQL queue others deliver from too: send only lanes this run holds (§7).
    gate = LaneGate(ledger, cfg) if isinstance(ledger, PgLedger) and has_ledger else None

    def write_out(outcome: Outcome) -> None:
        if sink is None or tally.out_closed:
            return
        try:
            sink.write(json.dumps(outcome.as_json()) + "\n")
        except BrokenPipeError:
            # `--out - | head`: stop reading, let in-flight attempts end, and say why.
            tally.out_closed = True
            silence_stdout()
            control.stop(OUT_CLOSED)

    def on_outcome(item: Incoming, outcome: Outcome) -> None:
        if filing is not None and outcome.status != "planned":
            filing.file(item, outcome)
        if outcome.status == "pending":
            tally.unsent.append(outcome.position)
        write_out(outcome)
        counts.add(outcome)
        if outcome.status in SETTLED:
            progress.advance(task)
        if outcome.status in ("rejected", "failed"):
            progress.update(task, status=problem_text(outcome))

    async def main() -> Summary:
        loop = asyncio.get_running_loop()
        started = time.monotonic()

        def on_signal(sig: signal.Signals) -> None:
            if tally.signal is not None:  # a second signal: leave at once
                err.show_cursor(True)
                resume = (
                    "re-run with the same --ledger to resume"
                    if has_ledger and ledger is not None
                    else "use --ledger next time to resume"
                )
                sys.stderr.write(f"\nusercom send: stopped at once: {resume}\n")
                raise SystemExit(EXIT_SIGNAL.get(sig, 130))
            tally.signal = sig
            err.print(STOPPING, highlight=False, markup=False)
            control.stop(f"interrupted ({sig.name})")

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal, sig)

        def pause_now() -> Pause | None:
            return app.outage.watch.pause()

        async def ticker() -> None:
            while True:
                await asyncio.sleep(progress_every())
                line = progress_line(
                    counts, time.monotonic() - started, total, pause_now(), options.max_outage
                )
                err.print(line, highlight=False, markup=False)

        async def bar_ticker() -> None:
            while True:
                await asyncio.sleep(BAR_EVERY_S)
                pause = pause_now()
                words = "" if pause is None else pause_words(pause, options.max_outage)
                progress.update(task, pause=words)

        ticking = asyncio.create_task(bar_ticker() if live else ticker())
        seat = gate.queue.shared_budget() if gate is not None else None
        if seat is not None:  # start at this run's share of the app's budget
            await asyncio.to_thread(first_share, seat, app.pacer, options.rate)
        sharing = (
            None if seat is None else asyncio.create_task(share_with(seat, app.pacer, options.rate))
        )
        ahead = ReadAhead()
        try:
            events = feed(
                source,
                cfg,
                ledger,
                pre,
                seen,
                retry_rejected=retry_rejected,
                counted=tally.count,
                ahead=ahead,
                commit=None if filing is None else filing.commit,
            )
            if gate is not None:
                events = gate(events)
            done = await deliver(
                events if filing is None else stop_when_refused(events, filing),
                cfg,
                options,
                on_outcome,
                transport=transport,
                control=control,
                app=app,
            )
            for event in ahead.events:  # stored pending, and the run stopped before them
                tally.count(event)
                left = Outcome(event.key, "pending", position=event.position)
                done.add(left)
                on_outcome(event, left)
            ahead.events.clear()
            if filing is not None:
                filing.flush()  # every outcome on disk before the summary
                if has_ledger:  # a scratch ledger is deleted anyway
                    await refile_kept(filing, say, lambda: tally.signal is not None)
            # The run's own elapsed time, refiling included: the engine's covers delivery only.
            done.seconds = time.monotonic() - started
            return done
        finally:
            ticking.cancel()
            if sharing is not None:
                sharing.cancel()
                await asyncio.wait([sharing])
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    with progress:
        task = progress.add_task("events", total=total, status="", pause="")
        try:
            summary_box.append(run_loop(main()))
        finally:
            if sink is not None and not tally.out_closed:
                try:
                    sink.flush()
                except BrokenPipeError:
                    tally.out_closed = True
                    silence_stdout()
                except OSError:
                    pass
            if ledger is not None:
                ledger.flush()
    summary = summary_box[0]
    if gate is not None and gate.left:
        # Their users' lanes were another instance's: it delivers them; this run waits.
        statuses = gate.settle()
        for status in statuses.values():
            summary.counts[status] += 1
        summary.events += len(statuses)
        say(gate.left_words(statuses))
    if filing is not None:
        summary.fault = filing.fault(has_ledger=has_ledger) or summary.fault
    summary.skipped, summary.changed, summary.broken_input = (
        pre.skipped,
        pre.changed,
        pre.broken_input,
    )
    return summary, tally


def silence_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone, so that nothing (Python's own flush
    at exit included) writes to the closed pipe again and complains."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def summary_table(summary: Summary, title: str) -> Table:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for status in (*SETTLED, "pending", "planned"):
        if summary.counts[status] or status in ALWAYS_SHOWN:
            table.add_row(status, str(summary.counts[status]))
    for status, count in sorted(summary.skipped.items()):
        table.add_row(f"skipped ({status} earlier)", str(count))
    if summary.changed:
        table.add_row("changed since last run (sent again)", str(summary.changed))
    table.add_row("warnings", str(summary.warnings))
    table.add_row("events sent this run", str(summary.sent))
    table.add_row("API calls", str(summary.api_calls))
    table.add_row("API calls per event sent", f"{summary.calls_per_event:.2f}")
    for (endpoint, answer), count in sorted(summary.calls.items()):
        table.add_row(Text(f"  {plain(endpoint)} {plain(answer)}"), str(count))
    table.add_row("time", f"{summary.seconds:.2f} s")
    if summary.rate is not None:
        table.add_row("events sent per second", f"{summary.rate:.0f}")
    for status, error, count in summary.top_errors(3):
        table.add_row(f"error, {status} (x{count})", Text(plain(error[:120])))  # never markup
    return table


def broken_input_words(broken: str, has_ledger: bool) -> str:
    """The one line for an input that breaks off (a truncated gzip file): exit 2."""
    again = (
        "send it again with the same --ledger (what was delivered is skipped)"
        if has_ledger
        else "send the rest again"
    )
    return (
        f"error: {plain(broken)}: the events before the break were handled; "
        f"fix the input and {again}"
    )


def final_words(summary: Summary, tally: Tally, has_ledger: bool) -> list[str]:
    """What the operator needs to hear after the table: why it stopped and how to resume."""
    words: list[str] = []
    if summary.broken_input:
        words.append(broken_input_words(summary.broken_input, has_ledger))
    if summary.fault is not None:
        words.append(f"error: {plain(summary.fault)}")
    stopped = "interrupted:" if tally.signal is not None else None
    if stopped is None and tally.out_closed:
        stopped = f"stopped: {OUT_CLOSED};"
    if stopped is not None:
        words.append(
            f"{stopped} re-run with the same --ledger to resume"
            if has_ledger
            else f"{stopped} use --ledger next time to resume; see below what was not sent"
        )
    if not has_ledger and (summary.fault is not None or stopped is not None):
        unsent = ", ".join(str(p) for p in sorted(tally.unsent)[:50])
        more = "…" if len(tally.unsent) > 50 else ""
        read = f"positions {unsent}{more}, and " if unsent else ""
        after = (
            f"every event after position {tally.last_position} (not read)"
            if tally.last_position
            else "every event of the input (none was read)"
        )
        words.append(f"not sent: {read}{after}")
    return words
