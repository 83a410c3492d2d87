"""Ingest (DELIVERY §6): the RudderStack HTTP API and the webhook, up to the ledger's door.

Read the body within its limits (gzip too, a bomb cut off at the limit), check it is JSON with
events, and turn each event into an `Admission`: its key, content hash and the line the ledger
keeps. Nothing here touches the ledger; a request refused here stores nothing.

- The key is the app plus `messageId`, else the app plus the SHA-256 of the event's canonical
  JSON (DELIVERY §4), computed *before* `receivedAt` is set, so a client's retry of the same
  event is the same event.
- An event over the size limit, or one that is not an object, is admitted as `rejected` with
  the reason: the official SDKs drop a whole batch on a 400, so one bad event must not cost its
  neighbours. So is one nested too deeply for `json.loads` or holding bytes that are not
  UTF-8: such a body is read again event by event (`salvage`), and only that event is
  `rejected`, with the reason and the key `send` gives its line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.core.messages import EVENT_TOO_DEEP
from pipeline.delivery.incoming import (
    BOM,
    _Hooks,
    canonical,
    event_key,
    json_bytes,
    loads,
    oversize,
    unheld,
)

SINGLE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
DRAIN_LIMIT = 64 * 1024 * 1024  # an oversize body is read (and dropped) up to this, then cut
PARSE_IN_THREAD = 256 * 1024  # bodies larger than this are parsed off the event loop
# Events of one array read one by one (after one could not be read) at most: ten times the
# per-request limit, so two million one-byte events cannot keep a worker busy for seconds.
READ_ONE_BY_ONE = 100_000


class Refused(Exception):
    """The request is refused as a whole: nothing of it is stored."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        """What the official SDKs read from an error answer (`code`, `message`)."""
        return {"code": self.code, "message": self.message}


def write_key(authorization: str | None) -> str | None:
    """The write key of an HTTP Basic `Authorization` header (the user name), if any.

    >>> write_key("Basic " + base64.b64encode(b"wk-1:").decode())
    'wk-1'
    >>> write_key("Bearer x") is None, write_key("Basic !!!") is None
    (True, True)
    """
    if authorization is None:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user = decoded.partition(":")[0]
    return user or None


# The types a web page may POST to another origin without a CORS preflight (which the service
# never grants): refusing them keeps a foreign page from sending events through a browser.
BROWSER_FORM_TYPES = frozenset(
    {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)


def json_content_type(header: str | None) -> None:
    """`Refused` (415) for a body sent as a form or plain text; JSON, or no type, passes.

    >>> json_content_type("application/json; charset=utf-8"), json_content_type(None)
    (None, None)
    >>> json_content_type("Text/Plain;charset=UTF-8")
    Traceback (most recent call last):
    ...
    pipeline.serve.ingest.Refused: Content-Type text/plain is not accepted: send the JSON body with Content-Type: application/json
    """  # noqa: E501
    media = (header or "").partition(";")[0].strip().lower()
    if media in BROWSER_FORM_TYPES:
        raise Refused(
            415,
            "unsupported_media_type",
            f"Content-Type {media} is not accepted: send the JSON body with "
            "Content-Type: application/json",
        )


def no_foreign_page(origin: str | None) -> None:
    """`Refused` (403) for a request from a web page (a browser sends `Origin`) where no key
    guards the door: with no write key, a page on any site could feed the service."""
    if origin is not None:
        raise Refused(
            403,
            "forbidden",
            "a web page may not send to a service without write keys: start it with "
            "--write-key to accept browser clients",
        )


def too_large(limit: int) -> Refused:
    return Refused(
        413,
        "payload_too_large",
        f"the request body is over {limit // (1024 * 1024)} MB (after decompression): "
        "send smaller batches",
    )


class _Gunzip:
    """gzip members one after the other, never producing more than `limit` + 1 bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflate = zlib.decompressobj(wbits=31)
        self.out = bytearray()
        self.started = False

    def feed(self, data: bytes) -> bool:
        """Add compressed bytes; False once the output is over the limit."""
        while data:
            if self.inflate.eof:
                data = self.inflate.unused_data + data
                self.inflate = zlib.decompressobj(wbits=31)
            self.started = True
            room = self.limit + 1 - len(self.out)
            self.out += self.inflate.decompress(data, room)
            if len(self.out) > self.limit:
                return False
            data = self.inflate.unconsumed_tail
            if self.inflate.eof and self.inflate.unused_data:
                data = self.inflate.unused_data + data
                self.inflate = zlib.decompressobj(wbits=31)
        return True

    def finish(self) -> bytes:
        if self.started and not self.inflate.eof:
            raise Refused(400, "invalid_request", "the gzip body is truncated")
        return bytes(self.out)


async def read_body(
    chunks: AsyncIterator[bytes],
    *,
    encoding: str | None,
    length: str | None,
    limit: int,
    drain_seconds: float = 10.0,
) -> bytes:
    """The request body, decompressed, at most `limit` bytes; `Refused` (400, 413) otherwise.

    An oversize body is still read to its end (and dropped) before the 413 is answered, up to
    64 MB or `drain_seconds`: a client that sends all of its body before it reads the answer
    then gets the 413 instead of a reset connection.
    """
    coding = (encoding or "").strip().lower()
    if coding not in ("", "identity", "gzip", "x-gzip"):
        raise Refused(
            415, "unsupported_encoding", f"Content-Encoding {coding!r} is not supported: use gzip"
        )
    declared = _length(length)
    if declared is not None and declared > DRAIN_LIMIT:
        raise too_large(limit)
    gunzip = _Gunzip(limit) if coding in ("gzip", "x-gzip") else None
    raw = bytearray()
    received = 0
    over = False
    try:
        async with asyncio.timeout(None) as deadline:
            async for chunk in chunks:
                received += len(chunk)
                if over:
                    if received > DRAIN_LIMIT:
                        break
                    continue
                if received > limit:  # a compressed body over the limit is over it too
                    over = True
                elif gunzip is not None:
                    try:
                        over = not gunzip.feed(chunk)
                    except zlib.error as error:
                        raise Refused(
                            400, "invalid_request", f"the gzip body cannot be read: {error}"
                        ) from None
                else:
                    raw += chunk
                if over:
                    loop = asyncio.get_running_loop()
                    deadline.reschedule(loop.time() + drain_seconds)
    except TimeoutError:
        pass
    if over:
        raise too_large(limit)
    return gunzip.finish() if gunzip is not None else bytes(raw)


def _length(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Parsed:
    """A request body as JSON; `suspect`: some number in it could not be held (an `Unheld`
    stands in its place), so its events are checked one by one (`unheld`)."""

    document: object
    suspect: bool = False


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An event (or a transformer item) that cannot be read alone, in the place it held in
    its request: nested too deeply for `json.loads`, or not UTF-8 text. `raw` is its text as
    sent, `why` the reason it is rejected, `members` its top-level members that could be read
    (a transformer item's `metadata` and `destination` are echoed from there)."""

    raw: bytes = field(repr=False)  # up to the whole body: never in a log line
    why: str
    members: Mapping[str, object]


def _loads(body: bytes) -> Parsed:
    try:
        return Parsed(*loads(body))
    except (RecursionError, UnicodeDecodeError) as error:
        # One event's fault: read the events one by one, so only that one is rejected.
        try:
            return salvage(body)
        except ValueError:
            raise _not_json(error) from None
    except ValueError as error:
        raise _not_json(error) from None


def _not_json(error: Exception) -> Refused:
    return Refused(400, "invalid_request", f"the body is not JSON: {str(error)[:200]}")


# Strings (skipped whole, so brackets inside them do not count), runs of opening or closing
# brackets (one match per run: a thousand brackets are one step), and a quote that opens no
# whole string. `_end_of` reads an unreadable value with these alone, never recursing.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+|"')
_SPACE = re.compile(r"[ \t\n\r]*")
_NEXT = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")  # what follows an array's element


def _byte_at(text: str, index: int) -> int:
    """The byte offset, in the bytes sent, of character `index` of text decoded from them."""
    return len(text[:index].encode("utf-8", "surrogateescape"))


def _end_of(text: str, start: int) -> int:
    """Where the JSON array or object starting at `text[start]` ends (just past its bracket);
    ValueError when it does not. Only its brackets are counted: what is between them cannot be
    read anyway (the value is rejected), and a run of brackets counts as one step."""
    depth = 0
    for token in _TOKEN.finditer(text, start):
        first = text[token.start()]
        size = token.end() - token.start()
        if first == '"':
            if size == 1:
                raise ValueError("a string is not closed")
            continue
        depth += size if first in "[{" else -size
        if depth <= 0:
            return token.end() + depth  # a run may close more than this value: stop inside it
    raise ValueError("an array or object is not closed")


class _Reader:
    """A JSON text read value by value with `json`'s own decoder (so as fast as `loads` for
    every value that can be read), each value that cannot be read alone left as `Unreadable`."""

    def __init__(self, text: str, *, check_text: bool) -> None:
        self.text = text
        self.check_text = check_text  # the body was not UTF-8: look at each value's bytes
        self.hooks = _Hooks()
        self.decoder = json.JSONDecoder(
            parse_int=self.hooks.integer,
            parse_float=self.hooks.real,
            parse_constant=self.hooks.constant,
        )

    def skip(self, at: int) -> int:
        end = _SPACE.match(self.text, at)
        return at if end is None else end.end()

    def expect(self, at: int, char: str) -> int:
        if self.text[at : at + 1] != char:
            raise ValueError(f"expected {char!r} at character {at}")
        return at + 1

    def value(self, at: int, *, members: bool) -> tuple[object, int]:
        """The value at `at` and where it ends; `members`: an unreadable object still shows
        the members that can be read."""
        try:
            value, end = self.decoder.raw_decode(self.text, at)
            why = None
        except RecursionError:
            if self.text[at : at + 1] not in ("[", "{"):
                raise ValueError("not JSON") from None
            value, end, why = None, _end_of(self.text, at), EVENT_TOO_DEEP
        if self.check_text:
            try:
                self.text[at:end].encode("utf-8")
            except UnicodeEncodeError as error:  # an undecodable byte, kept as a surrogate
                why = f"line is not UTF-8 text (byte {_byte_at(self.text[at:end], error.start)})"
        if why is None:
            return value, end
        raw = self.text[at:end].encode("utf-8", "surrogateescape")
        shown = self.readable_members(at) if members and raw.startswith(b"{") else {}
        return Unreadable(raw, why, shown), end

    def items(self, at: int) -> tuple[list[object], int]:
        """The elements of the array at `at`, each read alone, and where the array ends."""
        found: list[object] = []
        at = self.skip(self.expect(at, "["))
        if self.text[at : at + 1] == "]":
            return found, at + 1
        while True:
            if len(found) == READ_ONE_BY_ONE:
                raise Refused(
                    413,
                    "too_many_events",
                    f"the request holds over {READ_ONE_BY_ONE} events: send smaller batches",
                )
            value, at = self.value(at, members=True)
            found.append(value)
            after = _NEXT.match(self.text, at)
            if after is None:
                raise ValueError(f"expected ',' or ']' at character {at}")
            if after.group(1) == "]":
                return found, at + len(after.group(0).rstrip(" \t\n\r"))
            at = after.end()

    def members(self, at: int, read: Callable[[str, int], tuple[object, int]]) -> int:
        """Read the members of the object at `at` with `read(name, where)`; where it ends."""
        at = self.skip(self.expect(at, "{"))
        if self.text[at : at + 1] == "}":
            return at + 1
        while True:
            if self.text[at : at + 1] != '"':
                raise ValueError(f"expected a member name at character {at}")
            name, at = self.decoder.raw_decode(self.text, at)
            at = self.skip(self.expect(self.skip(at), ":"))
            _, at = read(str(name), self.skip(at))
            at = self.skip(at)
            if self.text[at : at + 1] == "}":
                return at + 1
            at = self.skip(self.expect(at, ","))

    def readable_members(self, at: int) -> dict[str, object]:
        shown: dict[str, object] = {}

        def keep(name: str, where: int) -> tuple[object, int]:
            value, end = self.value(where, members=False)
            if not isinstance(value, Unreadable):
                shown[name] = value
            return value, end

        self.members(at, keep)
        return shown

    def document(self) -> object:
        """The whole text: an array's elements read one by one; an object `Unreadable`, its
        array members read element by element and its other members one by one."""
        at = self.skip(0)
        document: object
        if self.text[at : at + 1] == "[":
            document, end = self.items(at)
        else:
            found: dict[str, object] = {}

            def read(name: str, where: int) -> tuple[object, int]:
                if self.text[where : where + 1] == "[":
                    found[name], end = self.items(where)
                else:
                    found[name], end = self.value(where, members=False)
                return found[name], end

            end = self.members(at, read)
            raw = self.text[at:end].encode("utf-8", "surrogateescape")
            document = Unreadable(raw, _first_reason(found), found)
        if self.skip(end) != len(self.text):
            raise ValueError(f"extra data at character {self.skip(end)}")
        return document


def salvage(body: bytes) -> Parsed:
    """The body as `loads` reads it, except that an event that cannot be read alone is an
    `Unreadable` in its place. Events are where every door keeps them: the elements of an
    array at the top, or of an array member of an object at the top (`batch`, `input`); an
    object at the top that cannot be read whole is itself `Unreadable` (a single event),
    its members read one by one. ValueError when the body is not JSON apart from that.
    Readable values are read by `json` itself; only an unreadable one is scanned in Python,
    once, bracket runs at a time, within the body's cap (4 MB)."""
    try:
        text, check_text = body.removeprefix(BOM).decode("utf-8"), False
    except UnicodeDecodeError:
        text, check_text = body.removeprefix(BOM).decode("utf-8", "surrogateescape"), True
    reader = _Reader(text, check_text=check_text)
    document = reader.document()
    return Parsed(document, suspect=reader.hooks.unheld > 0)


def _first_reason(members: Mapping[str, object]) -> str:
    for value in members.values():
        inner = value if isinstance(value, list) else [value]
        for item in inner:
            if isinstance(item, Unreadable):
                return item.why
    return EVENT_TOO_DEEP


async def parse_json(body: bytes) -> Parsed:
    if not body.strip():
        raise Refused(400, "invalid_request", "the body is empty: send a JSON event or batch")
    if len(body) > PARSE_IN_THREAD:
        return await asyncio.to_thread(_loads, body)
    return _loads(body)


def events_of(document: object, kind: str, limit: int) -> list[object]:
    """The events of a request body: `kind` is a single type, `batch` or `webhook`; more than
    `limit` of them is refused (413): one huge batch of tiny events would keep the ledger's one
    writer busy for seconds, and every other client waiting behind it."""
    events = _events_of(document, kind)
    if len(events) > limit:
        raise Refused(
            413,
            "too_many_events",
            f"the request holds {len(events)} events, over the limit of {limit} per request: "
            "send smaller batches",
        )
    return events


def _events_of(document: object, kind: str) -> list[object]:
    if isinstance(document, Unreadable) and kind != "batch":
        return [document]  # one event that cannot be read: rejected, as `send` rejects its line
    if kind == "batch":
        if isinstance(document, Unreadable):
            document = document.members
        batch = document.get("batch") if isinstance(document, Mapping) else None
        if not isinstance(batch, list):
            raise Refused(
                400, "invalid_request", 'the body must be {"batch": [event, ...]}: no batch list'
            )
        if not batch:
            raise Refused(400, "invalid_request", "the batch is empty: no events")
        return batch
    if kind == "webhook":
        if isinstance(document, Mapping):
            return [document]
        if isinstance(document, list):
            if not document:
                raise Refused(400, "invalid_request", "the array is empty: no events")
            return document
        raise Refused(
            400, "invalid_request", "the body must be one JSON event or a JSON array of events"
        )
    if not isinstance(document, Mapping):
        raise Refused(400, "invalid_request", f"the body must be one JSON {kind} event (an object)")
    return [document]


@dataclass(frozen=True, slots=True)
class Admission:
    """One event as the ledger will hold it: key, content hash, line, and its type (for the
    metrics); `rejected` says why it can never be delivered (filed at once)."""

    key: str
    content_hash: str
    line: bytes
    type: str
    rejected: str | None = None


def received_at(now: float) -> str:
    """`receivedAt` as RudderStack writes it: ISO 8601, UTC, milliseconds.

    >>> received_at(0.0)
    '1970-01-01T00:00:00.000Z'
    """
    return (
        datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _instant(value: object) -> datetime | None:
    """An ISO 8601 date-time string as an aware datetime (naive ones read as UTC)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def event_time(event: Mapping[str, object], stamp: str) -> str:
    """The `timestamp` rudder-server gives an event that has none, received at `stamp`
    (`receivedAt`): `receivedAt - (sentAt - originalTimestamp)`, the client's time corrected
    for its clock's skew. Without `originalTimestamp` that is `receivedAt`; without `sentAt`,
    `originalTimestamp` as it is.

    >>> event_time({"originalTimestamp": "2024-05-01T10:00:00Z",
    ...             "sentAt": "2024-05-01T10:00:05Z"}, "2024-05-01T10:00:10.000Z")
    '2024-05-01T10:00:05.000Z'
    >>> event_time({"originalTimestamp": "2024-05-01T10:00:00Z"}, "2024-05-01T10:00:10.000Z")
    '2024-05-01T10:00:00.000Z'
    >>> event_time({"sentAt": "yesterday"}, "2024-05-01T10:00:10.000Z")
    '2024-05-01T10:00:10.000Z'
    """
    original = _instant(event.get("originalTimestamp"))
    if original is None:
        return stamp
    received = _instant(stamp)
    sent = _instant(event.get("sentAt"))
    try:
        moment = original if sent is None or received is None else received - (sent - original)
    except OverflowError:
        moment = original
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _has_time(event: Mapping[str, object]) -> bool:
    value = event.get("timestamp")
    return value is not None and not (isinstance(value, str) and not value.strip())


def type_label(value: object) -> str:
    """The `type` label of metrics: a known type, `none` (missing) or `other`.

    >>> type_label(" Track "), type_label(None), type_label("purchase")
    ('track', 'none', 'other')
    """
    if not isinstance(value, str) or not value.strip():
        return "none"
    name = value.strip().lower()
    return name if name in SINGLE_TYPES else "other"


def admission(
    app: str, raw: object, kind: str, stamp: str, max_event: int, *, suspect: bool = False
) -> Admission:
    """One event of a request received at `stamp` (`received_at`) as the ledger will hold it
    (see the module's doc); `suspect`: its request held a number that could not be held, so
    this event is checked for one."""
    if isinstance(raw, Unreadable):
        return _unreadable(app, raw, kind)
    if not isinstance(raw, Mapping):
        line = json_bytes(raw)
        digest = hashlib.sha256(canonical(raw)).hexdigest()
        what = "null" if raw is None else type(raw).__name__
        return Admission(
            f"{app}:sha256:{digest}",
            digest,
            line,
            "invalid",
            f"the event is not a JSON object (got {what})",
        )
    event = dict(raw)
    if kind in SINGLE_TYPES:
        event["type"] = kind
    too_deep = False
    try:
        shape = canonical(event)
    except RecursionError:
        shape, too_deep = _flat_json(event, sort_keys=True), True
    digest = hashlib.sha256(shape).hexdigest()
    key = event_key(app, event, digest)
    type_name = type_label(event.get("type"))
    event["receivedAt"] = stamp
    if not _has_time(event):
        event["timestamp"] = event_time(event, stamp)
    line = _flat_json(event) if too_deep else json_bytes(event)
    problem = EVENT_TOO_DEEP if too_deep else unheld(event) if suspect else None
    if problem is None:
        problem = oversize(len(shape), max_event)
    return Admission(key, digest, line, type_name, problem)


class _Token(str):
    """Punctuation `_flat_json` writes as it is (a plain `str` is a value, written as JSON)."""

    __slots__ = ()


def _flat_json(value: object, *, sort_keys: bool = False) -> bytes:
    """`json_bytes` of a value nested too deeply for `json.dumps` where it is called (an event
    read on a shallower stack), written with no recursion: the same bytes, so the same key.

    >>> event = {"b": [1, None, 2.5], "a": {"é": "x\\ud800"}}
    >>> _flat_json(event, sort_keys=True) == canonical(event)
    True
    >>> _flat_json(event) == json_bytes(event)
    True
    """
    out: list[str] = []
    todo: list[object] = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, _Token):
            out.append(item)
            continue
        parts: list[object]
        if isinstance(item, Mapping):
            pairs = (
                sorted(item.items(), key=lambda pair: str(pair[0])) if sort_keys else item.items()
            )
            parts = [_Token("{")]
            for number, (name, inner) in enumerate(pairs):
                comma = "," if number else ""
                parts += [_Token(comma + _scalar(str(name)) + ":"), inner]
            parts.append(_Token("}"))
        elif isinstance(item, list | tuple):
            parts = [_Token("[")]
            for number, inner in enumerate(item):
                parts += [_Token(","), inner] if number else [inner]
            parts.append(_Token("]"))
        else:
            out.append(_scalar(item))
            continue
        todo.extend(reversed(parts))
    return "".join(out).encode("utf-8", errors="backslashreplace")


def _scalar(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True, default=str)


def _unreadable(app: str, event: Unreadable, kind: str) -> Admission:
    """An event that cannot be read, rejected and keyed as `send` keys a line it cannot read:
    the app and the SHA-256 of its bytes, which the ledger keeps as they were sent."""
    digest = hashlib.sha256(event.raw).hexdigest()
    type_name = kind if kind in SINGLE_TYPES else type_label(event.members.get("type"))
    return Admission(f"{app}:sha256:{digest}", digest, event.raw, type_name, event.why)
