"""A failure's reason as a pattern (DELIVERY §8): one cause of many users is one group.

Pure: the status, then the error with what varies from event to event masked — quoted values,
e-mail addresses, URLs' ids and query values, long hex and identifiers with digits, numbers —
while the words, and the HTTP status an answer carried, stay.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

_QUOTED: Final = re.compile(r"'[^']*'|\"[^\"]*\"")
_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL: Final = re.compile(r"https?://\S+")
# An HTTP status where an answer is told: "-> 404", "(503)", "HTTP 429", "status 400".
_STATUS: Final = re.compile(r"(?:(?<=-> )|(?<=\()|(?<=HTTP )|(?<=status ))[1-5]\d\d\b")
# A token with a digit in it (u-17, ab12cd, 2026-12-04T10:00:00Z, 3.5): an identifier or a value.
_WITH_DIGIT: Final = re.compile(r"[\w.:+-]*\d[\w.:+-]*")
_KEEP: Final = "\x00"


def _url(found: re.Match[str]) -> str:
    """A URL as its route: origin kept, every path segment holding a digit or following a
    by-id route masked, query values dropped."""
    url = found.group(0).rstrip(").,;")
    tail = found.group(0)[len(url) :]
    head, _, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    host, _, path = rest.partition("/")
    segments = path.split("/")
    for index, segment in enumerate(segments):
        after_by_id = index > 0 and segments[index - 1].endswith("-by-id")
        if segment and (after_by_id or any(ch.isdigit() for ch in segment)):
            segments[index] = "<id>"
    masked = f"{scheme}://{host}/{'/'.join(segments)}"
    if query:
        names = [part.partition("=")[0] for part in query.split("&")]
        masked += "?" + "&".join(f"{name}=" for name in names)
    return masked + tail


@lru_cache(maxsize=65536)
def mask(error: str) -> str:
    """The error with its varying parts masked (cached: the same errors come back often).

    >>> mask("user not found: no user with custom_id 'u-17' (GET https://acme.user.com/api/public/users-by-id/u-17/ -> 404)")
    "user not found: no user with custom_id '…' (GET https://acme.user.com/api/public/users-by-id/<id>/ -> 404)"
    >>> mask("User.com failed (503) after 6 attempts in 30.2 s")
    'User.com failed (503) after N attempts in N s'
    >>> mask("email ada.l@example.com is invalid") == mask("email bob@example.org is invalid")
    True
    """  # noqa: E501
    text = _QUOTED.sub(lambda found: found.group(0)[0] + "…" + found.group(0)[0], error)
    text = _URL.sub(_url, text)
    text = _EMAIL.sub("<email>", text)
    statuses: list[str] = []

    def keep(found: re.Match[str]) -> str:
        statuses.append(found.group(0))
        return _KEEP

    text = _STATUS.sub(keep, text)
    text = _WITH_DIGIT.sub(lambda found: "N" if _is_number(found.group(0)) else "<id>", text)
    for status in statuses:
        text = text.replace(_KEEP, status, 1)
    return text


def _is_number(token: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+(?:[.:]\d+)*", token))


def reason(status: str, error: str | None) -> str:
    """The group a failed, held or rejected event belongs to: its status and masked error.

    >>> reason("rejected", "user not found: 'u-1'") == reason("rejected", "user not found: 'u-2'")
    True
    >>> reason("held", None)
    'held: (no error)'
    >>> reason("held", "held: an earlier event of this user (acme:u-1-track-1) did not finish")
    'held: an earlier event of this user (<id>) did not finish'
    """
    masked = mask(error) if error else "(no error)"
    return masked if masked.startswith(f"{status}:") else f"{status}: {masked}"
