"""What `usercom send --dry-run --live` does (DELIVERY §4): it makes reads only (lookups) and
walks each event's flow itself: every GET is sent for real, the first write (or the final
request) is described and never sent. What the ledger commands show is in `ledger_views`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Final

import httpx
from returns.result import Failure, Success
from rich.table import Table
from rich.text import Text

from pipeline.cli.checks import UsageError
from pipeline.cli.ledger_views import printable
from pipeline.core import steps
from pipeline.core.answers import FAILING, Answer, Reply, Unreachable, meaning
from pipeline.core.calls import Request, call
from pipeline.core.compose import Job, job_of
from pipeline.core.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.flows import REFERENCE
from pipeline.core.types import JSON, as_text, freeze
from pipeline.delivery.faults import PROBE_SUBJECT, RESUME, RunFault, probe_fault, run_fault
from pipeline.delivery.incoming import (
    MAX_EVENT_BYTES,
    FirstSeen,
    Incoming,
    LineReader,
    once_each,
    read_jsonl,
)
from pipeline.delivery.outcome import Exchange, Outcome, Summary
from pipeline.runner import Target, drive, send

# -- usercom send --dry-run --live ------------------------------------------------------------

READ_ATTEMPTS: Final = 3
MAX_WAIT_S: Final = 10.0
BACKOFF_S: Final = 0.5

# What a real run would do with the first write of a flow (or its final request): the kind
# counted in the summary, and the words of the sentence (None: the kind).
_WRITES: Final[Mapping[str, str]] = {
    "create_user": "create the user",
    "update_user": "update the user",
    "upsert_user": "create or update the user",
    "event": "record the event",
    "user_event_by_id": "record the event",
    "site_view": "record the page view",
    "create_company": "create the company",
    "update_company": "update the company",
    "add_member": "add the user to the company",
}
COULD_NOT_TELL: Final = "could not tell"
# The reference's reads (a lookup first), with the values cut to fit as a real run cuts them:
# so a live dry run warns of the same truncations a real send does.
LIVE: Final = replace(REFERENCE, fit_lengths=True)
REPEAT: Final = "skip: a repeat of an earlier line (one event)"


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a real run would do with one event: the sentence, its kind, the reads it took."""

    would: str
    kind: str
    requests: tuple[Exchange, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()


def describe(request: Request, made: Mapping[str, int]) -> tuple[str, str]:
    """(sentence, kind) for the write a real run would make; `made` maps the ids this dry run
    invented for users and companies an earlier event would create to that event's position.

    >>> describe(call("update_user", "17"), {})
    ('would update user 17', 'update the user')
    >>> describe(call("create_company", None), {})
    ('would create the company and add the user to it', 'create the company')
    """
    name = request.name
    kind = _WRITES.get(name, f"{request.method} {request.readable_path()}")
    subject = request.subject or ""
    invented = subject in made
    match name:
        case "update_user":
            words = "would update the user" if invented else f"would update user {subject}"
        case "create_company":
            words = "would create the company and add the user to it"
        case "update_company":
            words = (
                "would update the company and add the user to it"
                if invented
                else f"would update company {subject} and add the user to it"
            )
        case "add_member":
            words = (
                "would add the user to the company"
                if invented
                else f"would add the user to company {subject}"
            )
        case _ if name in _WRITES:
            words = f"would {kind}"
        case _:
            words = f"would call {request.method} {request.readable_path()}"
    return words, kind


def _retryable(answer: Answer) -> bool:
    return meaning(answer) in FAILING or meaning(answer) == "throttled"


class _Write(Exception):
    """Raised by the live dry run's send at the first write: it is described, never sent."""

    def __init__(self, request: Request, warnings: tuple[str, ...]) -> None:
        super().__init__(request.name)
        self.request = request
        self.warnings = warnings


@dataclass(slots=True)
class LivePlanner:
    """Walks flows with real reads and no writes. Remembers what earlier events of this run
    would create, so that a track after the identify that creates its user is planned as a
    recorded event rather than "user not found"."""

    cfg: Config
    client: httpx.Client
    target: Target
    rate: float | None = None
    sleep: Callable[[float], None] = time.sleep
    api_calls: int = 0
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (endpoint, answer)
    # (lookup endpoint, subject) -> position of the event that would create that user/company
    creates: dict[tuple[str, str], int] = field(default_factory=dict)
    # ids invented for them -> that position
    invented: dict[str, int] = field(default_factory=dict)
    _last: float = 0.0

    def _pace(self) -> None:
        if self.rate is None:
            return
        wait = self._last + 1.0 / self.rate - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._last = time.monotonic()

    def probe(self) -> str | None:
        """The run-level fault the probe shows (the same read `send` and `check` start with)."""
        self._pace()
        answer = send(self.client, self.target, call("user_by_id", PROBE_SUBJECT))
        return probe_fault(answer, self.target)

    def read(self, request: Request, log: list[Exchange]) -> Answer:
        """Send one GET for real (retrying throttling and outages a little); RunFault when the
        answer concerns the whole run."""
        answer: Answer = Unreachable("connection")
        for attempt in range(READ_ATTEMPTS):
            self._pace()
            answer = send(self.client, self.target, request)
            exchange = Exchange.of(request, answer, self.cfg.base_url)
            self.api_calls += 1
            self.calls[exchange.endpoint, exchange.answer] += 1
            log.append(exchange)
            fault = run_fault(request, answer, self.target)
            if fault is not None:
                raise RunFault(fault)
            if not _retryable(answer) or attempt == READ_ATTEMPTS - 1:
                break
            after = answer.retry_after if isinstance(answer, Reply) else None
            self.sleep(min(after if after is not None else BACKOFF_S * 2**attempt, MAX_WAIT_S))
        return answer

    def answer(self, request: Request, log: list[Exchange], relies: dict[int, str]) -> Answer:
        """A lookup of what an earlier event would create is answered here (found, with an
        invented id); every other read goes to User.com."""
        position = self.creates.get((request.name, request.subject or ""))
        if position is None:
            return self.read(request, log)
        what = "company" if request.name == "company_by_id" else "user"
        relies[position] = what
        ident = f"new-{what}-of-position-{position}"
        self.invented[ident] = position
        body: JSON = freeze({"id": ident, "user_key": ident, "custom_id": request.subject})
        return Reply(200, body)

    def remember(self, request: Request, position: int) -> None:
        """A write that creates a user or a company: later lookups of it find it."""
        body = request.body or {}
        if request.name == "create_user":
            for lookup, name in (("user_by_id", "custom_id"), ("user_by_email", "email")):
                value = body.get(name)
                if value is not None:
                    self.creates.setdefault((lookup, as_text(value)), position)
        elif request.name == "create_company":
            value = body.get("custom_id")
            if value is not None:
                self.creates.setdefault(("company_by_id", as_text(value)), position)

    def plan(self, job: Job, position: int) -> Prediction:
        """Walk the event's flow: GETs for real, then describe the first write."""
        log: list[Exchange] = []
        relies: dict[int, str] = {}

        def read_only(request: Request) -> Answer:
            if request.method != "GET":
                raise _Write(request, ())
            return self.answer(request, log, relies)

        def describe_final(final: steps.Final) -> Answer:
            raise _Write(final.request, final.warnings)

        try:
            delivered = drive(Success(job.step), read_only, describe_final)
        except _Write as write:
            return self._write(write.request, position, log, relies, write.warnings)
        if isinstance(delivered, Failure):
            return self._failure(delivered.failure(), log, relies)
        return Prediction(COULD_NOT_TELL, COULD_NOT_TELL, tuple(log))

    def _write(
        self,
        request: Request,
        position: int,
        log: list[Exchange],
        relies: Mapping[int, str],
        warnings: tuple[str, ...],
    ) -> Prediction:
        self.remember(request, position)
        words, kind = describe(request, self.invented)
        return Prediction(words + _after(relies), kind, tuple(log), None, warnings)

    def _failure(
        self, error: PipelineError, log: list[Exchange], relies: Mapping[int, str]
    ) -> Prediction:
        message = error.message
        if error.retryable:
            return Prediction(f"{COULD_NOT_TELL}: {message}", COULD_NOT_TELL, tuple(log), message)
        return Prediction(
            f"would fail: {message}{_after(relies)}", f"fail: {message}", tuple(log), message
        )


def _after(relies: Mapping[int, str]) -> str:
    if not relies:
        return ""
    said = ", ".join(f"position {p} creates the {what}" for p, what in sorted(relies.items()))
    return f" (after {said})"


@dataclass(slots=True)
class LiveRun:
    """What a live dry run found: the summary, the count of each kind, a fault, a stop."""

    summary: Summary = field(default_factory=Summary)
    kinds: Counter[str] = field(default_factory=Counter)
    fault: str | None = None
    interrupted: bool = False


def check_live(live: bool, *, dry_run: bool) -> None:
    """`--live` only makes sense with `--dry-run`: UsageError (exit 2) otherwise."""
    if live and not dry_run:
        raise UsageError(
            "--live only works with --dry-run (a live dry run makes reads only): add "
            "--dry-run, or drop --live to send for real"
        )


def dry_fault(fault: str) -> str:
    """A run-level fault's message, as the dry run (which files nothing) says it."""
    return f"{fault.removesuffix('; ' + RESUME)}; dry run: nothing was written"


def live_dry_run(
    cfg: Config,
    source: IO[bytes],
    sink: IO[str] | None,
    *,
    origin: str | None,
    rate: float | None,
    progress: Callable[[int], None] | None = None,
    client: httpx.Client | None = None,
    scratch: Path | None = None,
) -> LiveRun:
    """Plan every event with reads only: one outcome per event (status `planned`, or
    `rejected` for an event that can never be sent) with `would` saying what a real run does.

    Events are planned one at a time, in input order; `--concurrency` does not apply. Repeats
    are taken as a real run takes them (the messageIds read are kept in `scratch`).
    """
    result = LiveRun()
    summary = result.summary
    target = Target.of(cfg, origin)
    started = time.monotonic()
    with (
        contextlib.ExitStack() as stack,
        httpx.Client() if client is None else contextlib.nullcontext(client) as http,
    ):
        planner = LivePlanner(cfg, http, target, rate)
        fault = planner.probe()
        if fault is not None:
            summary.fault = result.fault = dry_fault(fault)
            return result
        reader = LineReader(source)
        seen = stack.enter_context(contextlib.closing(FirstSeen(scratch)))

        def again(_: Incoming) -> None:
            result.kinds[REPEAT] += 1

        try:
            for item in once_each(read_jsonl(reader, cfg, MAX_EVENT_BYTES), seen, again):
                outcome, prediction = _predict(cfg, planner, item)
                summary.add(outcome)
                result.kinds[prediction.kind] += 1
                if sink is not None:
                    sink.write(json.dumps({**outcome.as_json(), "would": prediction.would}) + "\n")
                if progress is not None:
                    progress(summary.events)
        except RunFault as stop:
            summary.fault = result.fault = dry_fault(str(stop))
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            summary.api_calls, summary.calls = planner.api_calls, planner.calls
            summary.seconds = time.monotonic() - started
            if sink is not None:
                sink.flush()
    if reader.broken is not None:
        summary.broken_input = reader.broken
    return result


def _predict(cfg: Config, planner: LivePlanner, item: Incoming) -> tuple[Outcome, Prediction]:
    key, position, job = item.key, item.position, item.job
    problem: str | None = item.problem
    match job:
        case Success(Job() as delivery_job):
            # The drop-in strategy: a live dry run reads the user first, as a lookup can.
            match job_of(cfg, delivery_job.event, LIVE):
                case Success(Job() as reference_job):
                    found = planner.plan(reference_job, position)
                    outcome = Outcome(
                        key, "planned", 0, found.requests, found.error, found.warnings, position
                    )
                    return outcome, found
                case Failure(PipelineError() as error):
                    problem = error.message
        case Failure(PipelineError() as error):
            problem = error.message
    message = problem or "not understood"
    outcome = Outcome(key, "rejected", 0, (), message, position=position)
    return outcome, Prediction(f"would fail: {message}", f"fail: {message}", (), message)


def kinds_table(kinds: Counter[str]) -> Table:
    table = Table(title="what a real run would do")
    table.add_column("would")
    table.add_column("events", justify="right")
    for kind, count in sorted(kinds.items(), key=lambda pair: (-pair[1], pair[0])):
        table.add_row(Text(printable(kind)), str(count))
    return table


def iter_progress(every: float, say: Callable[[str], None]) -> Callable[[int], None]:
    """A progress callback that says how far the dry run got at most once every `every` s."""
    last = [time.monotonic()]

    def tick(done: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            say(f"usercom send --dry-run --live: {done} events planned")

    return tick


__all__ = ["LiveRun", "kinds_table", "live_dry_run"]
