"""What the operator's ledger commands show (DELIVERY §4): `usercom explain` (one event's
story), `usercom report` (the ledger summed up), `usercom requeue`'s choice of events, and the
next step `send` prints.

They only read the queue (a `QueueReader`; the SQLite ledger's `open_reader` takes no lock,
so they work while a run or the service writes it), and show stored text only after making
it safe to print.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from rich.table import Table
from rich.text import Text

from pipeline.cli.checks import UsageError
from pipeline.cli.plain import plain
from pipeline.core.answers import Kind, Reply, meaning
from pipeline.core.config import API_PATH
from pipeline.delivery.lifecycle import STATUSES, UNFINISHED
from pipeline.delivery.outcome import Exchange, Summary
from pipeline.delivery.pg import PgLocation
from pipeline.delivery.queue import QueueReader, Row

# -- showing stored text safely ---------------------------------------------------------------

# One escaping for everything shown of stored content (pipeline.cli.plain).
printable: Final = plain


def shown_line(line: bytes) -> str:
    """An original line as text: UTF-8, undecodable bytes replaced, control characters escaped."""
    return printable(line.decode("utf-8", errors="replace"))


# -- requests as stored (each an Exchange's text, read back by `Exchange.read`) ---------------

_ID_AFTER: Final = frozenset({"users-by-id", "companies-by-id"})
_NAMED: Final = frozenset({"users", "companies"})
_NOT_IDS: Final = frozenset({"", "search", "update_or_create"})
API_PREFIX: Final = API_PATH


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


def gloss(exchange: Exchange) -> str:
    """What an answer means on its route, in a few words.

    >>> gloss(Exchange.read("GET https://acme.user.com/api/public/users-by-id/u1/ -> 404"))
    'not found'
    >>> gloss(Exchange("event", "POST", "", "400")), gloss(Exchange("event", "POST", "", "timeout"))
    ('content refused', 'no answer (timeout)')
    """
    answer = exchange.answer
    if not answer.isdigit():
        return f"no answer ({answer})"
    kind = meaning(Reply(int(answer)))
    if kind == "not found":
        return _not_found(exchange.method, template(exchange.url))
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


def find_event(book: QueueReader, key: str) -> Row:
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
    where = book.where
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


def requeue_keys(
    book: QueueReader, keys: list[str], *, rejected: bool, delivered: bool
) -> list[str]:
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


def story(book: QueueReader, row: Row) -> list[str]:
    """One event's story as lines of text (everything stored is escaped for the terminal)."""
    ledger = book.where
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
        for number, exchange in enumerate(row.exchanges, 1):
            shown, glossed = printable(str(exchange)), gloss(exchange)
            lines.append(f"  {number}. {shown}  ({glossed})")
    else:
        lines.append("requests  none")
    lines.append(f"error     {printable(row.error) if row.error is not None else 'none'}")
    if row.warnings:
        lines.append(f"warnings  {len(row.warnings)}:")
        lines.extend(f"  - {printable(warning)}" for warning in row.warnings)
    else:
        lines.append("warnings  none")
    doubt = book.doubt(row.key)
    if doubt is not None:
        lines.append(f"note      {printable(doubt)}")
    lines.append(f"line      {shown_line(row.line)}")
    lines.append(f"next      {next_step(row, ledger)}")
    return lines


def story_json(book: QueueReader, row: Row) -> dict[str, Any]:
    return {
        "key": row.key,
        "status": row.status,
        "position": row.position,
        "attempts": row.attempts,
        "updated": book.updated_at(row.key),
        "requests": list(row.requests),
        "error": row.error,
        "warnings": list(row.warnings),
        "possibly_sent_twice": book.doubt(row.key),
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


def send_advice(summary: Summary, ledger: Path | PgLocation | None) -> list[str]:
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


def build_report(book: QueueReader) -> Report:
    """The report of a ledger opened read-only, from one consistent snapshot of it."""
    with book.snapshot():
        counts = book.counts()
        errors = book.error_counts(TOP_ERRORS)
        calls: Counter[tuple[str, str, str]] = Counter()
        for requests in book.request_logs():
            for exchange in map(Exchange.read, requests):
                calls[(exchange.method, template(exchange.url), exchange.answer)] += 1
        oldest = book.oldest_unfinished()
    return Report(book.where, book.app, dict(counts), errors, calls, oldest)


__all__ = ["Report", "build_report", "find_event", "story", "story_json"]
