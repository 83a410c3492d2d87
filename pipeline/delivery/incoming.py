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
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, cast

from returns.result import Result, Success

from pipeline.core.compose import Job, prepare_message
from pipeline.core.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.flows import DELIVERY

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

    @property
    def lane(self) -> str:
        """Whose order this event keeps: its user, else only its own."""
        match self.job:
            case Success(Job(lane=str() as lane)):
                return lane
        return f"key:{self.key}"

    @property
    def company(self) -> str | None:
        match self.job:
            case Success(Job() as job):
                return job.company
        return None


def canonical(message: object) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8. Values JSON lacks (a framework's
    datetime) are written as their text, as a JSON encoder of that framework would."""
    return json.dumps(
        message,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=True,
        default=str,
    ).encode("utf-8", errors="surrogatepass")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _message_id(message: Mapping[str, object]) -> str | None:
    value = message.get("messageId")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if text.strip() else None


def incoming(cfg: Config, position: int, line: bytes, max_event: int | None = None) -> Incoming:
    """One line of input (without its line ending) as an Incoming event of app `cfg`; with
    `max_event`, an event larger than that (canonical JSON) is rejected as the service's
    ingest rejects it (what is already stored, the library's calls: no limit)."""
    app = cfg.subdomain
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        digest = _sha256(line)
        return Incoming(
            f"{app}:sha256:{digest}",
            position,
            None,
            digest,
            line,
            f"line is not UTF-8 text (byte {error.start})",
        )
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as error:
        digest = _sha256(line)
        return Incoming(
            f"{app}:sha256:{digest}",
            position,
            None,
            digest,
            line,
            f"line is not JSON: {str(error)[:200]}",
        )
    if not isinstance(message, Mapping):
        digest = _sha256(line)
        return Incoming(
            f"{app}:sha256:{digest}", position, None, digest, line, "line is not a JSON object"
        )
    try:
        shape = canonical(message)
    except (ValueError, RecursionError):
        shape = line
    digest = _sha256(shape)
    message_id = _message_id(message)
    key = f"{app}:{message_id}" if message_id is not None else f"{app}:sha256:{digest}"
    too_big = None if max_event is None else oversize(len(shape), max_event)
    if too_big is not None:
        return Incoming(key, position, None, digest, line, too_big)
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
