"""The effect runner: the one flow driver, and the httpx edge that talks to User.com.

A flow is data (`Call`s ending in a `Final`). `conversation` walks it as httpx's
`auth_flow` does: it yields each request and receives its answer. `drive` and `adrive` pump
that one generator with a send function, sync or async; the drop-in API passes a plain send
through httpx, the delivery engine its own (identity cache, rate limit, request log). Timeouts
and connection errors become `Unreachable` answers, which flows classify like any other
answer (SPEC §4, §10).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import NamedTuple, TypeVar, overload

import httpx
from httpx._urlparse import MAX_URL_LENGTH, ParseResult
from returns.result import Failure, Result, Success

from pipeline.core.answers import Answer, Reply, Unreachable, meaning
from pipeline.core.calls import Request, headers
from pipeline.core.config import API_PATH, Config, mask
from pipeline.core.errors import PipelineError
from pipeline.core.secrets import Secret, blank_runs
from pipeline.core.steps import Call, Final, Step
from pipeline.core.types import JSON, OBJECT_TYPES, freeze, thaw

Flow = Result[Step, PipelineError]
Finished = Result[Final, PipelineError]
Conversation = Generator[Request, Answer, Finished]


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: an app's origin (`https://acme.user.com`, the sandbox's
    `http://127.0.0.1:8000`) and the key that signs them. The API base is derived from the
    origin, never the other way round."""

    origin: str
    api_key: str = field(repr=False)
    base_url: str = field(init=False, repr=False, compare=False)
    # What every request to this target shares, worked out once rather than per request.
    parts: BaseParts | None = field(init=False, repr=False, compare=False)
    # The key's encoded forms, for blanking its echoes: worked out once, on first need.
    secret: Secret = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", self.origin.rstrip("/"))
        base_url = self.origin + API_PATH
        object.__setattr__(self, "base_url", base_url)
        object.__setattr__(self, "parts", parts_of(base_url, self.api_key))
        object.__setattr__(self, "secret", Secret(self.api_key))

    @classmethod
    def of(cls, cfg: Config, origin: str | None = None) -> Target:
        """The config's app, at `origin` when one is given (the sandbox, `--base-url`)."""
        return cls(origin or cfg.origin, cfg.api_key)

    def __repr__(self) -> str:
        return f"Target(origin={self.origin!r}, api_key={mask(self.api_key)!r})"


def conversation(flow: Flow) -> Conversation:
    """Yield each Call's request, feed its answer to the Call; return the Final or a Failure."""
    while True:
        match flow:
            case Success(Call() as step):
                flow = step.then((yield step.request))
            case Success(Final() as final):
                return Success(final)
            case Failure(error):
                return Failure(error)


class Ended(NamedTuple):
    """A flow whose final request was sent: the Final, and the answer it got."""

    final: Final
    answer: Answer


Delivered = Result[Ended, PipelineError]
# Yields the Calls' requests, then the Final itself (its request is the pump's to send).
Delivery = Generator[Request | Final, Answer, Delivered]


def _missing(answer: Answer) -> bool:
    return meaning(answer) == "not found"


def delivery(flow: Flow) -> Delivery:
    """The whole delivery conversation: `conversation`, then the final request, and the
    final's fallback when User.com answers it 404 (a route that may be missing, DELIVERY §3).
    The retry stays inside the generator, as httpx's `DigestAuth.auth_flow` keeps its 401."""
    while True:
        finished = yield from conversation(flow)
        match finished:
            case Success(Final() as final):
                answer = yield final
                if final.fallback is not None and _missing(answer):
                    flow = Success(final.fallback)
                    continue
                return Success(Ended(final, answer))
            case Failure(error):
                return Failure(error)


R = TypeVar("R")


def _pump(
    talk: Generator[Request | Final, Answer, R],
    send: Callable[[Request], Answer],
    final: Callable[[Final], Answer],
) -> R:
    try:
        asked = next(talk)
        while True:
            asked = talk.send(final(asked) if isinstance(asked, Final) else send(asked))
    except StopIteration as done:
        result: R = done.value
        return result


async def _apump(
    talk: Generator[Request | Final, Answer, R],
    send: Callable[[Request], Awaitable[Answer]],
    final: Callable[[Final], Awaitable[Answer]],
) -> R:
    try:
        asked = next(talk)
        while True:
            answer = await (final(asked) if isinstance(asked, Final) else send(asked))
            asked = talk.send(answer)
    except StopIteration as done:
        result: R = done.value
        return result


@overload
def drive(flow: Flow, send: Callable[[Request], Answer]) -> Finished: ...
@overload
def drive(
    flow: Flow, send: Callable[[Request], Answer], final: Callable[[Final], Answer]
) -> Delivered: ...
def drive(
    flow: Flow,
    send: Callable[[Request], Answer],
    final: Callable[[Final], Answer] | None = None,
) -> Finished | Delivered:
    """Run every Call of the flow through `send`. Without `final` the Final is returned,
    not sent; with it, `final` sends it (the caller's policy for the write) and its answer
    comes back with it, the 404 fallback followed (`delivery`)."""
    if final is None:
        return _pump(conversation(flow), send, lambda step: send(step.request))
    return _pump(delivery(flow), send, final)


@overload
async def adrive(flow: Flow, send: Callable[[Request], Awaitable[Answer]]) -> Finished: ...
@overload
async def adrive(
    flow: Flow,
    send: Callable[[Request], Awaitable[Answer]],
    final: Callable[[Final], Awaitable[Answer]],
) -> Delivered: ...
async def adrive(
    flow: Flow,
    send: Callable[[Request], Awaitable[Answer]],
    final: Callable[[Final], Awaitable[Answer]] | None = None,
) -> Finished | Delivered:
    if final is None:
        return await _apump(conversation(flow), send, lambda step: send(step.request))
    return await _apump(delivery(flow), send, final)


# --- the httpx edge --------------------------------------------------------------------------


class BaseParts(NamedTuple):
    """A base URL split the way httpx would split it, and the header rows of its requests.

    Parsing each request's URL string and normalising its headers were half the CPU of a
    MockTransport round trip; for base URLs whose parts httpx keeps as written, the request is
    assembled from these parts instead (properties/test_built_requests.py pins the equality).
    """

    scheme: str
    host: str
    port: int | None
    path: str
    host_row: tuple[bytes, bytes]
    header_rows: tuple[tuple[bytes, bytes], ...]


# Bases made only of characters httpx neither lowercases, percent-encodes nor resolves:
# a lowercase scheme and host name, a port, unreserved path characters.
_PLAIN_BASE = re.compile(
    r"(https?)://([a-z0-9-]+(?:\.[a-z0-9-]+)*)(?::([0-9]{1,5}))?((?:/[A-Za-z0-9._~-]*)*)"
)
_IPV4_LIKE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODY_METHODS = ("POST", "PUT", "PATCH")


def parts_of(base_url: str, api_key: str) -> BaseParts | None:
    """The base URL's parts, or None where httpx would change or refuse something in it."""
    plain = _PLAIN_BASE.fullmatch(base_url)
    if plain is None or not api_key.isascii():
        return None
    scheme, host, port_text, path = plain.groups()
    if "/." in path and {".", ".."} & set(path.split("/")):
        return None
    if _IPV4_LIKE.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return None
    port = int(port_text) if port_text else None
    port = None if port == _DEFAULT_PORTS[scheme] else port
    netloc = host if port is None else f"{host}:{port}"
    rows = tuple([_ROWS.get(pair) or _row(pair) for pair in headers(api_key).items()])
    return BaseParts(scheme, host, port, path, (b"Host", netloc.encode()), rows)


def _row(pair: tuple[str, str]) -> tuple[bytes, bytes]:
    return pair[0].encode(), pair[1].encode()


# The header rows every request has whatever its key, encoded once.
_ROWS = {pair: _row(pair) for pair in headers("").items() if pair[0] != "Authorization"}


def _url(target: Target, parts: BaseParts, request: Request) -> httpx.URL | None:
    path, query = request.encoded()
    length = len(target.base_url) + len(path) + (0 if query is None else len(query) + 1)
    if length > MAX_URL_LENGTH:
        return None  # httpx refuses it as too long: let it say so, as it always has
    path = parts.path + path
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = ParseResult(parts.scheme, "", parts.host, parts.port, path, query, None)
    return url


def to_httpx(target: Target, request: Request) -> httpx.Request:
    body = None if request.body is None else json.dumps(thaw(request.body)).encode()
    parts = target.parts
    url = None if parts is None else _url(target, parts, request)
    if parts is None or url is None:
        outgoing = httpx.Request(
            request.method,
            request.url(target.base_url),
            headers=headers(target.api_key),
            content=body,
        )
    else:
        outgoing = _assembled(parts, url, request.method, body)
    outgoing.extensions["timeout"] = TIMEOUTS
    return outgoing


def _assembled(parts: BaseParts, url: httpx.URL, method: str, body: bytes | None) -> httpx.Request:
    """The request httpx builds from `content=`, with its Host and Content-Length in place."""
    rows = [parts.host_row]
    if body is None and method in _BODY_METHODS:
        rows.append((b"Content-Length", b"0"))
    rows.extend(parts.header_rows)
    if body is not None:
        rows.append((b"Content-Length", str(len(body)).encode()))
    outgoing = httpx.Request(
        method, url, headers=httpx.Headers(rows), stream=httpx.ByteStream(body or b"")
    )
    outgoing.read()
    return outgoing


def _retry_after(response: httpx.Response) -> float | None:
    # get_list, as `get` raises and catches a KeyError inside for every answer without one.
    return retry_after_of(response.headers.get_list("retry-after"))


# The longest wait a Retry-After may impose: past it (or at "inf") an origin would stop
# delivery for good; README "Rate" says why ten minutes.
MAX_RETRY_AFTER_S = 600.0


def retry_after_of(said: list[str]) -> float | None:
    """Retry-After in seconds from the header's values (none, not a number or NaN: None),
    at most MAX_RETRY_AFTER_S."""
    if not said:
        return None
    try:
        seconds = float(", ".join(said))
    except ValueError:
        return None
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


# Shorter "keys" are not secrets worth blanking, and blanking them would garble real text
# (a key "a" would eat every "a" of a message or of a user's data). Real keys are 64 chars.
SECRET_MIN = 8


def blank(value: JSON, secret: str | Secret) -> JSON:
    """`value` with every stretch of 16 or more characters of `secret` (all of a shorter one)
    (or of its base64, hex, other-case or reversed forms) replaced wherever it occurs in a
    string (keys included): a key quoted cut short, or encoded, leaks too.

    Blanking the decoded strings, not the raw bytes, catches every way JSON can escape a key
    (`\\"`, `\\/`, `\\u0041`), and leaves the rest of what User.com said readable.
    """
    return _blank(value, secret if isinstance(secret, Secret) else Secret(secret))


def _blank(value: JSON, secret: Secret) -> JSON:
    if type(value) is str:
        return _blank_text(value, secret)
    if type(value) is tuple:
        return tuple([_blank(item, secret) for item in value])
    if isinstance(value, OBJECT_TYPES):
        # Scalars and short strings are taken as they are, without a call each: this runs on
        # every answer, and most answers hold no string long enough to quote the key.
        need = secret.shortest
        blanked: dict[str, JSON] = {}
        for key, item in value.items():
            if len(key) >= need:
                key = _blank_text(key, secret)
            if type(item) is str:
                if len(item) >= need:
                    item = _blank_text(item, secret)
            elif item is not None and not isinstance(item, int | float):
                item = _blank(item, secret)
            blanked[key] = item
        return MappingProxyType(blanked)
    if isinstance(value, tuple):
        return tuple([_blank(item, secret) for item in value])
    if isinstance(value, str):
        return _blank_text(value, secret)
    return value


def _blank_text(text: str, secret: Secret) -> str:
    if not secret.could_quote(text):
        return text
    return blank_runs(text, secret.value, MASKED, forms=secret.forms)


MASKED = "<apiKey>"


def _decoded(content: bytes) -> JSON:
    try:
        return freeze(json.loads(content)) if content else None
    except (ValueError, RecursionError):
        return None


def to_answer(response: httpx.Response, secret: str | Secret = "") -> Reply:
    """The answer as the flow sees it; `secret` (the key) is blanked wherever it was echoed:
    as raw bytes (when the body still reads as JSON without them) and in every decoded
    string, so no escaping, in the answer or in a message built from it, lets it through."""
    return reply_of(response.status_code, response.content, _retry_after(response), secret)


def reply_of(status: int, content: bytes, retry_after: float | None, secret: str | Secret) -> Reply:
    """`to_answer` for any HTTP client: the key blanked in the raw bytes and decoded strings."""
    body = _decoded(content)
    key = secret.value if isinstance(secret, Secret) else secret
    if len(key) >= SECRET_MIN:
        raw = key.encode(errors="surrogatepass")
        if raw in content:
            masked = _decoded(content.replace(raw, MASKED.encode()))
            body = masked if masked is not None else body
        if body is not None:
            body = blank(body, secret)
    return Reply(status, body, retry_after)


def _unreachable(error: httpx.RequestError) -> Unreachable:
    if isinstance(error, httpx.TimeoutException):
        return Unreachable("timeout", type(error).__name__)
    return Unreachable("connection", type(error).__name__)


# Where requests go: a client (real HTTPS, with its proxies and pools), or a bare transport
# (tests, the delivery engine's slots). A bare transport skips the client's cookie, auth and
# redirect layers that User.com calls never use: about 15% of each request's CPU time.
Via = httpx.Client | httpx.BaseTransport
AsyncVia = httpx.AsyncClient | httpx.AsyncBaseTransport

TIMEOUTS = httpx.Timeout(30.0, connect=10.0).as_dict()


def send(via: Via, target: Target, request: Request) -> Answer:
    outgoing = to_httpx(target, request)
    try:
        if isinstance(via, httpx.Client):
            response = via.send(outgoing)
        else:
            response = via.handle_request(outgoing)
            try:
                response.read()
            finally:
                response.close()
    except httpx.RequestError as error:
        return _unreachable(error)
    return to_answer(response, target.secret)


async def asend(via: AsyncVia, target: Target, request: Request) -> Answer:
    outgoing = to_httpx(target, request)
    try:
        if isinstance(via, httpx.AsyncClient):
            response = await via.send(outgoing)
        else:
            response = await via.handle_async_request(outgoing)
            try:
                await response.aread()
            finally:
                await response.aclose()
    except httpx.RequestError as error:
        return _unreachable(error)
    return to_answer(response, target.secret)


def scrub(error: PipelineError, target: Target) -> PipelineError:
    """User.com may echo the key back in its answer: never let it reach a message."""
    secret = target.secret
    if len(secret.value) < SECRET_MIN or not secret.could_quote(error.message):
        return error
    cleaned = blank_runs(error.message, secret.value, mask(secret.value), forms=secret.forms)
    return error if cleaned == error.message else replace(error, message=cleaned)


def run_flow(flow: Flow, via: Via, target: Target) -> Finished:
    """Drive a flow through an httpx client or transport (the drop-in API)."""
    return drive(flow, lambda request: send(via, target, request)).alt(
        lambda error: scrub(error, target)
    )


async def arun_flow(flow: Flow, via: AsyncVia, target: Target) -> Finished:
    async def asend_to(request: Request) -> Answer:
        return await asend(via, target, request)

    finished = await adrive(flow, asend_to)
    return finished.alt(lambda error: scrub(error, target))
