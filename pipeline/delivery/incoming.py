"""Input events: read lazily (gzip, BOM, CRLF tolerated), keyed, normalized once at the edge.

Keys (DELIVERY §4): the app plus `messageId`, else the app plus the SHA-256 of the event's
canonical JSON (keys sorted, no insignificant whitespace, UTF-8), else (an unreadable line) of
its raw bytes. Keys never depend on line numbers, so exporting, editing and replaying a file
never collides with what a ledger already holds. Each event is normalized and composed once
(with delivery's write strategy); its lane, its company and every retry use that one Job.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, cast

from returns.result import Result, Success

from pipeline.core.compose import Job, prepare_message
from pipeline.core.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.flows import DELIVERY
from pipeline.core.messages import EVENT_TOO_DEEP

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
# One event's limit, for `send` as for the service's ingest: larger is rejected, never sent.
MAX_EVENT_BYTES = 32 * 1024


def oversize(size: int, limit: int = MAX_EVENT_BYTES) -> str | None:
    """Why an event of `size` bytes (canonical JSON) is rejected, or None when it fits.

    >>> oversize(40_000)
    'the event is 40000 bytes, over the 32 KB limit of one event: send it smaller'
    """
    if size <= limit:
        return None
    return (
        f"the event is {size} bytes, over the {limit // 1024} KB limit of one event: "
        "send it smaller"
    )


@dataclass(frozen=True, slots=True)
class Incoming:
    """One input event: its key, position, original line and content hash, and its Job.

    `problem` says why a line could not be read at all; such events are rejected, never sent.
    """

    key: str
    position: int
    job: Result[Job, PipelineError] | None
    content_hash: str
    line: bytes
    problem: str | None = None
    # Set (the reason) for an event that failed earlier and is not due for a retry yet: the
    # engine does not attempt it, files nothing new for it, and holds its user's later events.
    deferred: str | None = None
    # Whose order this event keeps: its user, else only its own. Worked out once (`replace`
    # works it out again): the engine and the rounds ask for it about ten times per event.
    lane: str = field(init=False, repr=False, compare=False)
    company: str | None = field(init=False, repr=False, compare=False)  # the group's, if any

    def __post_init__(self) -> None:
        object.__setattr__(self, "lane", _lane_of(self.job, self.key))
        job = self.job.unwrap() if isinstance(self.job, Success) else None
        object.__setattr__(self, "company", None if job is None else job.company)


def _lane_of(job: Result[Job, PipelineError] | None, key: str) -> str:
    match job:
        case Success(Job(lane=str() as lane)):
            return lane
    return f"key:{key}"


def json_bytes(value: object, *, sort_keys: bool = False) -> bytes:
    """Compact JSON as UTF-8 that always encodes: a lone surrogate (what JavaScript leaves when
    it cuts an emoji in half, sent as a `\\ud83d` escape) is written back as that escape, so
    the text reads back as the same value. Values JSON lacks (a framework's datetime, a number
    `loads` could not hold) are written as their text, as a JSON encoder of that framework would.
    """
    return json.dumps(
        value,
        sort_keys=sort_keys,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=True,
        default=str,
    ).encode("utf-8", errors="backslashreplace")


def canonical(message: object) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 (see `json_bytes`)."""
    return json_bytes(message, sort_keys=True)


class Unheld:
    """A JSON number Python cannot hold as a value a request can carry: an integer over
    Python's digit limit, a float out of range (`1e999`), or `NaN`/`Infinity` (not JSON).
    `loads` puts one in place of each, so the event holding it is rejected, not its request."""

    __slots__ = ("text", "why")

    def __init__(self, text: str, why: str) -> None:
        self.text = text
        self.why = why

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Unheld({self.text[:20]!r})"


@dataclass(slots=True)
class _Hooks:
    """`json.loads` hooks that mark what they could not hold (and count it)."""

    unheld: int = 0

    def integer(self, text: str) -> int | Unheld:
        try:
            return int(text)
        except ValueError:
            self.unheld += 1
            return Unheld(text, f"an integer of {len(text.lstrip('-'))} digits")

    def real(self, text: str) -> float | Unheld:
        value = float(text)
        if math.isfinite(value):
            return value
        self.unheld += 1
        return Unheld(text, "a number out of range")

    def constant(self, text: str) -> Unheld:
        self.unheld += 1
        return Unheld(text, "not a JSON number")


def loads(text: str | bytes) -> tuple[object, bool]:
    """JSON text as a value, and whether any number in it could not be held (an `Unheld` sits
    in its place; see `unheld`). Raises ValueError or RecursionError as `json.loads` does.

    >>> loads('{"a": 1e999, "b": 2}')
    ({'a': Unheld('1e999'), 'b': 2}, True)
    """
    hooks = _Hooks()
    value = json.loads(
        text, parse_int=hooks.integer, parse_float=hooks.real, parse_constant=hooks.constant
    )
    return value, hooks.unheld > 0


def unheld(value: object) -> str | None:
    """Why `value` (from `loads`) cannot be sent: the first number it could not hold, by path.

    >>> unheld({"properties": {"n": [1, loads("1e999")[0]]}})
    'properties.n[1] is a number out of range (1e999): send it as a string'
    """
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, Unheld):
            shown = item.text if len(item.text) <= 20 else f"{item.text[:12]}…"
            where = path or "the event"
            return f"{where} is {item.why} ({shown}): send it as a string"
        if isinstance(item, Mapping):
            stack.extend(
                (f"{path}.{name}" if path else str(name), inner)
                for name, inner in reversed(list(item.items()))
            )
        elif isinstance(item, list):
            stack.extend((f"{path}[{n}]", inner) for n, inner in reversed(list(enumerate(item))))
    return None


def plain(value: object) -> object:
    """`value` with every `Unheld` number replaced by its text (to echo it back as JSON)."""
    if isinstance(value, Unheld):
        return value.text
    if isinstance(value, Mapping):
        return {name: plain(inner) for name, inner in value.items()}
    if isinstance(value, list):
        return [plain(inner) for inner in value]
    return value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def message_id(message: Mapping[str, object]) -> str | None:
    """The `messageId` as keys use it (a string or an integer, not blank)."""
    value = message.get("messageId")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if text.strip() else None


def event_key(app: str, message: Mapping[str, object], digest: str) -> str:
    """The key of an event (DELIVERY §4), the one rule of `send` and `serve`: the app plus the
    `messageId`, else the app plus `digest` (its content hash). A messageId that is not valid
    Unicode (a lone surrogate, sent as a JSON escape) is written with that escape, so every
    key is text SQLite, outcomes and terminals can hold.

    >>> event_key("acme", {"messageId": "bad\\ud800id"}, "d1")
    'acme:bad\\\\ud800id'
    >>> event_key("acme", {"messageId": " "}, "d1")
    'acme:sha256:d1'
    """
    found = message_id(message)
    if found is None:
        return f"{app}:sha256:{digest}"
    return f"{app}:{found.encode('utf-8', 'backslashreplace').decode('utf-8')}"


def repeat_key(key: str, digest: str) -> str:
    """The key of a later version (content `digest`) of the event `key`: its own row, so the
    first version keeps its key and its place in the queue.

    >>> repeat_key("acme:m-1", "0123456789abcdef0123")
    'acme:m-1#repeat-0123456789abcdef'
    """
    return f"{key}#repeat-{digest[:16]}"


REPEATED = "messageId repeated with other content"


def repeat_reason(first_position: int) -> str:
    return f"{REPEATED} at position {first_position}"


def repeated(event: Incoming, first_position: int) -> Incoming:
    """`event` as a later version of an event still to be delivered (or read before it in the
    same input): rejected under its own key, never sent, so the first version is not
    silently replaced and a re-run of the same input does not alternate between the two."""
    return replace(
        event,
        key=repeat_key(event.key, event.content_hash),
        job=None,
        problem=repeat_reason(first_position),
    )


def stored(
    cfg: Config, key: str, content_hash: str, position: int, line: bytes, error: str | None
) -> Incoming:
    """An event as a ledger holds it, under the key and content hash it was stored with: the
    line is parsed, never keyed or hashed again (keys are made once, where events are read).
    A later version (`repeated`) stays rejected as a repeat whatever made it pending again
    (`requeue`, a replay): its first version is the event."""
    if key.endswith(repeat_key("", content_hash)):
        reason = error if error is not None and error.startswith(REPEATED) else REPEATED
        return Incoming(key, position, None, content_hash, line, reason)
    read = _message(line)
    if isinstance(read, str):
        return Incoming(key, position, None, content_hash, line, read)
    message, suspect = read
    problem = unheld(message) if suspect else None
    if problem is not None:
        return Incoming(key, position, None, content_hash, line, problem)
    return Incoming(key, position, prepare_message(cfg, message, DELIVERY), content_hash, line)


class FirstSeen:
    """The keys read so far from one input, with their content and position. Kept in a private
    SQLite file rather than in memory, as 16-byte digests: an input may hold millions of
    events, and the page cache keeps this within a few MB.

    The file is `folder`/seen.sqlite (the run's scratch folder, made and checked up front), or
    SQLite's own temporary file without one."""

    def __init__(self, folder: Path | None = None) -> None:
        where = "" if folder is None else str(folder / "seen.sqlite")
        self._db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE seen (key BLOB PRIMARY KEY, content BLOB NOT NULL, "
            "position INTEGER NOT NULL) WITHOUT ROWID"
        )
        self._db.execute("BEGIN")  # never committed: the file goes when it is closed

    def get(self, key: str, content_hash: str) -> tuple[bool, int] | None:
        """Whether `key` was read before with this content, and where; None if never."""
        found = self._db.execute(
            "SELECT content, position FROM seen WHERE key = ?", (_digest(key),)
        ).fetchone()
        if found is None:
            return None
        return bytes(found[0]) == _digest(content_hash), int(found[1])

    def add(self, key: str, content_hash: str, position: int) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO seen (key, content, position) VALUES (?, ?, ?)",
            (_digest(key), _digest(content_hash), position),
        )

    def record(self, key: str, content_hash: str, position: int) -> tuple[bool, int] | None:
        """`add` for a key never read (None); else `get`. One statement for a new key, the
        common case, where `get` then `add` take two."""
        added = self._db.execute(
            "INSERT OR IGNORE INTO seen (key, content, position) VALUES (?, ?, ?)",
            (_digest(key), _digest(content_hash), position),
        )
        return None if added.rowcount == 1 else self.get(key, content_hash)

    def close(self) -> None:
        self._db.close()


def once_each(
    events: Iterable[Incoming],
    seen: FirstSeen,
    again: Callable[[Incoming], None] | None = None,
) -> Iterator[Incoming]:
    """An input's events as `usercom send` takes them with no ledger, for the dry runs to
    predict it: an event read twice is one event (`again` hears of the later one), and a later
    one under a key read before with other content is its `repeated` self, rejected."""
    for event in events:
        earlier = seen.record(event.key, event.content_hash, event.position)
        if earlier is None:
            yield event
            continue
        same, first_position = earlier
        if not same:
            event = repeated(event, first_position)
            if seen.record(event.key, event.content_hash, event.position) is None:
                yield event
                continue
        if again is not None:
            again(event)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _message(line: bytes) -> tuple[Mapping[str, object], bool] | str:
    """A line's message, and whether a number in it could not be held (see `loads`); or why
    the line cannot be read as one event."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"line is not UTF-8 text (byte {error.start})"
    try:
        message, suspect = loads(text)
    except (ValueError, RecursionError) as error:
        # Too deep for `json.loads` is what the core says of one too deep for it: one reason.
        if isinstance(error, RecursionError):
            return EVENT_TOO_DEEP
        return f"line is not JSON: {str(error)[:200]}"
    if not isinstance(message, Mapping):
        return "line is not a JSON object"
    return message, suspect


def incoming(cfg: Config, position: int, line: bytes, max_event: int | None = None) -> Incoming:
    """One line of input (without its line ending) as an Incoming event of app `cfg`, keyed
    (DELIVERY §4); with `max_event`, an event larger than that (canonical JSON) is rejected
    as the service's ingest rejects it (what is already stored, the library's calls: no
    limit)."""
    app = cfg.subdomain
    read = _message(line)
    if isinstance(read, str):
        digest = _sha256(line)
        return Incoming(f"{app}:sha256:{digest}", position, None, digest, line, read)
    message, suspect = read
    try:
        shape = canonical(message)
    except (ValueError, RecursionError):
        shape = line
    digest = _sha256(shape)
    key = event_key(app, message, digest)
    problem = unheld(message) if suspect else None
    if problem is None and max_event is not None:
        problem = oversize(len(shape), max_event)
    if problem is not None:
        return Incoming(key, position, None, digest, line, problem)
    return Incoming(key, position, prepare_message(cfg, message, DELIVERY), digest, line)


def open_stream(raw: IO[bytes]) -> IO[bytes]:
    """The stream itself, or its decompressed content when it starts with gzip's magic."""
    if isinstance(raw, io.BufferedReader) and raw.peek(2)[:2] == GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    return raw


class LineReader:
    """Non-blank lines of a byte stream, without line endings and without a leading BOM.

    A stream that breaks off (a truncated gzip file) ends the lines; `broken` says why.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.broken: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        first = True
        try:
            for line in open_stream(self.raw):
                if first:
                    first = False
                    line = line.removeprefix(BOM)
                stripped = line.rstrip(b"\r\n")
                if stripped.strip():
                    yield stripped
        except (OSError, EOFError, zlib.error) as error:
            self.broken = f"the input could not be read to its end ({error})"


def read_jsonl(
    lines: Iterable[bytes] | Iterable[str], cfg: Config, max_event: int | None = None
) -> Iterator[Incoming]:
    """Incoming events of `lines` (bytes or text), positions counted from 1."""
    position = 0
    for line in lines:
        data = line.encode("utf-8", errors="surrogatepass") if isinstance(line, str) else line
        data = data.rstrip(b"\r\n")
        if not data.strip():
            continue
        position += 1
        yield incoming(cfg, position, data, max_event)
