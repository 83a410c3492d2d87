"""The operator's commands (DELIVERY §4): `usercom explain`, `usercom report`, and what
`usercom send --dry-run --live` does.

`explain` and `report` only read the ledger (`Ledger.open_reader`: no lock, so they work while a
run or the service writes it). The live dry run makes reads only (lookups) and walks each
event's flow itself: every GET is sent for real, the first write (or the final request) is
described and never sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import parse_qsl, urlsplit

import httpx
from returns.result import Failure, Success
from rich.table import Table
from rich.text import Text

from pipeline.cli.checks import UsageError
from pipeline.core import steps
from pipeline.core.answers import FAILING, Answer, Kind, Reply, Unreachable, meaning
from pipeline.core.calls import Request, call
from pipeline.core.compose import Job, job_of
from pipeline.core.config import API_PATH, Config
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
from pipeline.delivery.ledger import STATUSES, UNFINISHED, Ledger, Row
from pipeline.delivery.outcome import Outcome, Summary
from pipeline.runner import Target, drive, send

# -- showing stored text safely ---------------------------------------------------------------

# Bidirectional overrides and isolates could make a line read differently than it is.
_BIDI: Final = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))


def printable(text: str) -> str:
    """`text` with control characters (and bidi overrides) escaped, so stored content can
    never move the cursor, recolour the terminal or hide part of a line.

    >>> printable("a\\x1b[31mb\\tc\\u202e")
    'a\\\\x1b[31mb\\\\x09c\\\\u202e'
    """
    out: list[str] = []
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif code in _BIDI:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def shown_line(line: bytes) -> str:
    """An original line as text: UTF-8, undecodable bytes replaced, control characters escaped."""
    return printable(line.decode("utf-8", errors="replace"))


# -- requests as stored: "METHOD URL -> answer" -----------------------------------------------

_ID_AFTER: Final = frozenset({"users-by-id", "companies-by-id"})
_NAMED: Final = frozenset({"users", "companies"})
_NOT_IDS: Final = frozenset({"", "search", "update_or_create"})
API_PREFIX: Final = API_PATH


def split_request(text: str) -> tuple[str, str, str]:
    """(method, URL, answer) of a stored request.

    >>> split_request("GET https://acme.user.com/api/public/users-by-id/u1/ -> 404")
    ('GET', 'https://acme.user.com/api/public/users-by-id/u1/', '404')
    """
    head, arrow, answer = text.rpartition(" -> ")
    if not arrow:
        return "?", text, "?"
    method, _, url = head.partition(" ")
    return method, url, answer


def template(url: str) -> str:
    """A URL as its endpoint's template: no origin, no /api/public, ids as <id>, no query values.

    >>> template("https://acme.user.com/api/public/users-by-id/a%2Fb/events/")
    '/users-by-id/<id>/events/'
    >>> template("https://acme.user.com/api/public/users/search/?email=a%40b.io")
    '/users/search/?email='
    >>> template("https://acme.user.com/api/public/companies/17/add_member/")
    '/companies/<id>/add_member/'
    >>> template("https://acme.user.com/api/public/users/update_or_create/")
    '/users/update_or_create/'
    """
    parts = urlsplit(url)
    path = parts.path
    if path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX) :]
    segments = path.split("/")
    if len(segments) > 2 and (
        (segments[1] in _ID_AFTER and segments[2])
        or (segments[1] in _NAMED and segments[2] not in _NOT_IDS)
    ):
        segments[2] = "<id>"
    query = "&".join(f"{name}=" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return "/".join(segments) + (f"?{query}" if query else "")


# Known from older docs: on it a 404 says the user is not found by that custom_id (or the
# route is gone), and the delivery goes on with the lookup and POST /events/ (DELIVERY §3).
CUSTOM_ID_EVENTS: Final = "/users-by-id/<id>/events/"


def gloss(method: str, answer: str, url: str) -> str:
    """What an answer means on its route, in a few words.

    >>> gloss("GET", "404", "https://acme.user.com/api/public/users-by-id/u1/")
    'not found'
    >>> gloss("POST", "400", ""), gloss("POST", "timeout", "")
    ('content refused', 'no answer (timeout)')
    """
    if not answer.isdigit():
        return f"no answer ({answer})"
    kind = meaning(Reply(int(answer)))
    if kind == "not found":
        return _not_found(method, template(url))
    return _GLOSSES.get(kind, "unexpected")


_GLOSSES: Final[Mapping[Kind, str]] = {
    "ok": "ok",
    "refused": "key refused",
    "throttled": "throttled",
    "server error": "User.com failed",
    "client error": "content refused",
}


def _not_found(method: str, route: str) -> str:
    """A 404 names a missing route only where nothing but the route can be missing: a lookup
    or a route with an id in it says that this id is not found there."""
    if route == CUSTOM_ID_EVENTS:
        return "user not found by this custom_id: falls back to the lookup"
    if method == "GET" or "<id>" in route:
        return "not found"
    return "no such route"


# -- usercom explain --------------------------------------------------------------------------

MEANINGS: Final[Mapping[str, str]] = {
    "delivered": "delivered: the final request got a 2xx; a re-run skips it while it is unchanged",
    "rejected": "rejected: it can never succeed as it is; a re-run skips it while it is unchanged",
    "failed": "failed: retryable trouble outlasted the retries; a re-run tries it again, first",
    "held": "held: not attempted, an earlier event of its user did not finish; a re-run tries it",
    "pending": "pending: stored, not finished (the run stopped first); a re-run tries it",
}


def find_event(book: Ledger, key: str) -> Row:
    """The event named by `key`: its full key, the key without the app prefix, or a prefix of
    one key (a sha256 key is long). UsageError (one line) when none or several match."""
    row = book.find(key)
    if row is not None:
        return row
    candidates = book.keys_starting(key, 2)
    if not candidates and not key.startswith(f"{book.app}:"):
        candidates = book.keys_starting(f"{book.app}:{key}", 2)
    if len(candidates) == 1:
        found = book.get(candidates[0])
        if found is not None:
            return found
    where = book.path
    if len(candidates) > 1:
        raise UsageError(
            f"several events of ledger {where} have keys starting with {printable(key)!r} "
            f"(e.g. {printable(candidates[0])!r}, {printable(candidates[1])!r}): give more of it"
        )
    raise UsageError(
        f"no event {printable(key)!r} in ledger {where}: list unfinished events with "
        f"`usercom failed {where}`, rejected ones with `usercom failed {where} --rejected`, "
        f"or see `usercom report {where}`"
    )


# -- usercom requeue --------------------------------------------------------------------------

_FINISHED_FLAGS: Final[Mapping[str, str]] = {
    "delivered": "--delivered (User.com gets it a second time)",
    "rejected": "--rejected (edit and send it instead, if its content is the problem)",
}


def check_requeue(keys: list[str] | None, *, delivered: bool) -> None:
    """`--delivered` only with named keys: UsageError (exit 2) otherwise."""
    if delivered and not keys:
        raise UsageError(
            "--delivered sends delivered events again: name them (KEY...); it never applies "
            "to a whole ledger"
        )


def requeue_keys(book: Ledger, keys: list[str], *, rejected: bool, delivered: bool) -> list[str]:
    """The full keys of the events named, matched as `explain` matches them. UsageError (one
    line, before anything changes) for an unknown key, or a finished event whose flag is
    missing: requeueing it sends it again."""
    allowed = {"delivered": delivered, "rejected": rejected}
    found: list[str] = []
    for key in keys:
        row = find_event(book, key)
        if not allowed.get(row.status, True):
            raise UsageError(
                f"event {printable(row.key)!r} is {row.status}: requeueing it sends it again; "
                f"add {_FINISHED_FLAGS[row.status]}"
            )
        found.append(row.key)
    return found


def pending_again(count: int) -> str:
    """What requeue says it did.

    >>> pending_again(1), pending_again(2)
    ('1 event is pending again', '2 events are pending again')
    """
    return f"{count} event is pending again" if count == 1 else f"{count} events are pending again"


def next_step(row: Row, ledger: str) -> str:
    match row.status:
        case "delivered":
            return "nothing to do"
        case "rejected" if row.attempts == 0:
            # Never sent (unreadable, invalid, too big): as it is, it fails the same way again.
            return (
                f"edit the event and send it again (`usercom failed {ledger} --rejected` exports "
                "the rejected lines): unchanged, it can never be sent"
            )
        case "rejected":
            return (
                f"fix the event and send it again (`usercom failed {ledger} --rejected` exports "
                f"the rejected lines), or try it again as it is (once the user exists, say): "
                f"`usercom requeue {ledger} {printable(row.key)} --rejected`, then re-run `send` "
                f"with --ledger {ledger}, or start `usercom serve` again (stop it before the "
                "requeue)"
            )
        case _:
            return (
                f"re-run `usercom send EVENTS --config CONFIG --ledger {ledger}` (it takes the "
                f"unfinished events first; a `usercom serve` ledger retries them by itself), or "
                f"export them with `usercom failed {ledger}`"
            )


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def story(book: Ledger, row: Row) -> list[str]:
    """One event's story as lines of text (everything stored is escaped for the terminal)."""
    ledger = str(book.path)
    lines = [
        f"event     {printable(row.key)}",
        f"ledger    {ledger} (app {book.app})",
        f"status    {MEANINGS.get(row.status, row.status)}",
        f"position  {row.position}",
        f"attempts  {row.attempts}",
        f"updated   {_when(book.updated_at(row.key))}",
    ]
    if row.requests:
        lines.append(f"requests  {len(row.requests)}, in order (of the run that filed it):")
        for number, text in enumerate(row.requests, 1):
            method, url, answer = split_request(text)
            lines.append(f"  {number}. {printable(text)}  ({gloss(method, answer, url)})")
    else:
        lines.append("requests  none")
    lines.append(f"error     {printable(row.error) if row.error is not None else 'none'}")
    if row.warnings:
        lines.append(f"warnings  {len(row.warnings)}:")
        lines.extend(f"  - {printable(warning)}" for warning in row.warnings)
    else:
        lines.append("warnings  none")
    lines.append(f"line      {shown_line(row.line)}")
    lines.append(f"next      {next_step(row, ledger)}")
    return lines


def story_json(book: Ledger, row: Row) -> dict[str, Any]:
    return {
        "key": row.key,
        "status": row.status,
        "position": row.position,
        "attempts": row.attempts,
        "updated": book.updated_at(row.key),
        "requests": list(row.requests),
        "error": row.error,
        "warnings": list(row.warnings),
        "line": row.line.decode("utf-8", errors="replace"),
    }


# -- usercom report ---------------------------------------------------------------------------

TOP_ERRORS: Final = 5


@dataclass(slots=True)
class Report:
    """Everything a ledger holds, summed up (one consistent read)."""

    ledger: str
    app: str
    counts: dict[str, int]
    errors: list[tuple[str, int]]
    calls: Counter[tuple[str, str, str]]  # (method, template, answer) -> count
    oldest: Row | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def unfinished(self) -> int:
        return sum(self.counts[status] for status in UNFINISHED)

    @property
    def api_calls(self) -> int:
        return sum(self.calls.values())

    def advice(self) -> list[str]:
        """What to do next."""
        ledger = self.ledger
        words: list[str] = []
        if self.unfinished:
            oldest = self.oldest
            since = (
                f" (oldest: position {oldest.position}, {oldest.status})"
                if oldest is not None
                else ""
            )
            words.append(
                f"{self.unfinished} unfinished{since}: re-run `usercom send EVENTS --config "
                f"CONFIG --ledger {ledger}` (it takes them first, in order; `usercom serve` "
                f"retries its own), or export them with `usercom failed {ledger}`"
            )
        if self.counts["rejected"]:
            words.append(rejected_advice(self.counts["rejected"], ledger))
        if not words:
            words.append(
                "nothing to do: every event is delivered"
                if self.total
                else "nothing to do: the ledger holds no events"
            )
        return words

    def as_json(self) -> dict[str, Any]:
        oldest = self.oldest
        return {
            "ledger": self.ledger,
            "app": self.app,
            "events": self.total,
            "counts": self.counts,
            "errors": [{"error": error, "count": count} for error, count in self.errors],
            "api_calls": self.api_calls,
            "calls": [
                {"method": method, "endpoint": path, "answer": answer, "count": count}
                for (method, path, answer), count in sorted(self.calls.items())
            ],
            "oldest_unfinished": None
            if oldest is None
            else {"key": oldest.key, "position": oldest.position, "status": oldest.status},
            "next": self.advice(),
        }

    def tables(self) -> list[Table]:
        title = f"usercom report: {self.ledger} (app {self.app})"
        # As wide as the title (as the terminal allows): rich wraps a title to its table's width,
        # which would cut the ledger's path mid-name; wrapped at the terminal it breaks at spaces.
        events = Table(title=title, min_width=len(title))
        events.add_column("measure")
        events.add_column("value", justify="right")
        for status in STATUSES:
            events.add_row(status, str(self.counts[status]))
        events.add_row("events", str(self.total))
        oldest = self.oldest
        events.add_row(
            "oldest unfinished",
            "none" if oldest is None else f"position {oldest.position} ({oldest.status})",
        )
        if oldest is not None:
            events.add_row("  its key", Text(printable(oldest.key)))
        tables = [events]
        if self.errors:
            errors = Table(title=f"most common errors (top {TOP_ERRORS})")
            errors.add_column("count", justify="right")
            errors.add_column("error")
            for error, count in self.errors:
                errors.add_row(str(count), Text(printable(error)))
            tables.append(errors)
        calls = Table(title=f"API calls stored ({self.api_calls}, the last run of each event)")
        calls.add_column("endpoint")
        calls.add_column("answer")
        calls.add_column("count", justify="right")
        for (method, path, answer), count in sorted(self.calls.items()):
            calls.add_row(Text(printable(f"{method} {path}")), answer, str(count))
        tables.append(calls)
        return tables


def rejected_advice(count: int, ledger: str) -> str:
    return (
        f"{count} rejected: `usercom failed {ledger} --rejected` exports them to fix and send "
        f"again; `usercom explain KEY --ledger {ledger}` tells one event's story"
    )


def send_advice(summary: Summary, ledger: Path | None) -> list[str]:
    """What to do after a `send` that left events unfinished (exit 4) or rejected (exit 1),
    as `report` says it; nothing after a clean run."""
    words: list[str] = []
    if summary.unfinished:
        if ledger is not None:
            words.append(
                f"{summary.unfinished} failed or held: re-run the same command (`usercom send "
                f"EVENTS --config CONFIG --ledger {ledger}`): it takes them first, in order; "
                f"`usercom explain KEY --ledger {ledger}` tells one event's story"
            )
        else:
            words.append(
                f"{summary.unfinished} failed or held, and without --ledger nothing keeps them "
                "(--out, if given, lists them by status): next time give --ledger FILE, so "
                "that a re-run sends only what is unfinished"
            )
    if summary.rejected:
        if ledger is not None:
            words.append(rejected_advice(summary.rejected, str(ledger)))
        else:
            words.append(
                f"{summary.rejected} rejected: the errors above (and --out) say why; fix those "
                "events before sending them again"
            )
    return words


def build_report(book: Ledger) -> Report:
    """The report of a ledger opened read-only, from one consistent snapshot of it."""
    with book.snapshot():
        counts = book.counts()
        errors = book.error_counts(TOP_ERRORS)
        calls: Counter[tuple[str, str, str]] = Counter()
        for requests in book.request_logs():
            for text in requests:
                method, url, answer = split_request(text)
                calls[(method, template(url), answer)] += 1
        oldest = book.oldest_unfinished()
    return Report(str(book.path), book.app, counts, errors, calls, oldest)


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
    requests: tuple[str, ...] = ()
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
    calls: Counter[str] = field(default_factory=Counter)
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

    def read(self, request: Request, log: list[str]) -> Answer:
        """Send one GET for real (retrying throttling and outages a little); RunFault when the
        answer concerns the whole run."""
        answer: Answer = Unreachable("connection")
        for attempt in range(READ_ATTEMPTS):
            self._pace()
            answer = send(self.client, self.target, request)
            got = answer.status if isinstance(answer, Reply) else answer.reason
            self.api_calls += 1
            self.calls[f"{request.name} {got}"] += 1
            log.append(f"{request.method} {request.url(self.cfg.base_url)} -> {got}")
            fault = run_fault(request, answer, self.target)
            if fault is not None:
                raise RunFault(fault)
            if not _retryable(answer) or attempt == READ_ATTEMPTS - 1:
                break
            after = answer.retry_after if isinstance(answer, Reply) else None
            self.sleep(min(after if after is not None else BACKOFF_S * 2**attempt, MAX_WAIT_S))
        return answer

    def answer(self, request: Request, log: list[str], relies: dict[int, str]) -> Answer:
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
        log: list[str] = []
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
        log: list[str],
        relies: Mapping[int, str],
        warnings: tuple[str, ...],
    ) -> Prediction:
        self.remember(request, position)
        words, kind = describe(request, self.invented)
        return Prediction(words + _after(relies), kind, tuple(log), None, warnings)

    def _failure(
        self, error: PipelineError, log: list[str], relies: Mapping[int, str]
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


__all__ = [
    "LiveRun",
    "Report",
    "build_report",
    "find_event",
    "kinds_table",
    "live_dry_run",
    "story",
    "story_json",
]
