"""Where a PostgreSQL ledger is (DELIVERY §7): a libpq URI and a schema, told apart from a
SQLite file by the URI's scheme. Pure: nothing here connects or imports the driver.

The password (in the URI's user part or its `password=` parameter) is never shown: `shown`
is the URI with it replaced by `***`, and every message that names the database uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

SCHEMES: Final = ("postgresql://", "postgres://")
DEFAULT_SCHEMA: Final = "usercom"
MASK: Final = "***"
# A plain, unquoted PostgreSQL identifier (lowercase, as PostgreSQL folds it), at most 63 bytes.
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class LocationError(ValueError):
    """A ledger URI or schema name that cannot be used: the one line to print (exit 2)."""


@dataclass(frozen=True, slots=True)
class PgLocation:
    """A PostgreSQL ledger: the URI libpq connects with, and the schema holding our tables."""

    uri: str = field(repr=False)
    schema: str = DEFAULT_SCHEMA

    @property
    def shown(self) -> str:
        """The URI with its password masked, and the schema when it is not the default."""
        where = masked(self.uri)
        return where if self.schema == DEFAULT_SCHEMA else f"{where} (schema {self.schema})"

    def __str__(self) -> str:
        """As a command line names it (in advice such as `usercom failed LEDGER`)."""
        where = masked(self.uri)
        return where if self.schema == DEFAULT_SCHEMA else f"{where} --pg-schema {self.schema}"


def is_uri(raw: str) -> bool:
    """Whether a ledger argument names a PostgreSQL database rather than a file."""
    return raw.lower().startswith(SCHEMES)


def masked(uri: str) -> str:
    """`uri` with any password replaced by `***`.

    >>> masked("postgresql://ann:s3cret@db.example:5432/queue?sslmode=require&password=x")
    'postgresql://ann:***@db.example:5432/queue?sslmode=require&password=%2A%2A%2A'
    >>> masked("postgres://db/queue")
    'postgres://db/queue'
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return f"{uri.split('://', 1)[0]}://{MASK}"
    netloc = parts.netloc
    if "@" in netloc:
        users, hosts = netloc.rsplit("@", 1)
        if ":" in users:
            users = users.split(":", 1)[0] + ":" + MASK
        netloc = f"{users}@{hosts}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name == "password" for name, _ in pairs):
        query = urlencode([(n, MASK if n == "password" else v) for n, v in pairs])
    # Not urlunsplit: it drops the `//` of an empty host (`postgres:///db` became
    # `postgres:/db`, which no command reads as a URI any more).
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return shown + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def password_of(uri: str) -> str | None:
    """The password the URI carries, if any (to scrub it from a driver's message)."""
    try:
        parts = urlsplit(uri)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return None
    in_query = [value for name, value in pairs if name == "password" and value]
    return parts.password or (in_query[0] if in_query else None)


def _without_password(text: str, uri: str) -> str:
    """`text` with the password of `uri` masked, found without urlsplit (which may be what
    could not read the URI)."""
    netloc = re.split(r"[/?#]", uri.split("://", 1)[-1], maxsplit=1)[0]
    users = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
    password = users.split(":", 1)[1] if ":" in users else ""
    return text.replace(password, MASK) if password else text


def schema_name(raw: str) -> str:
    """A `--pg-schema` value, checked: a plain lowercase identifier.

    >>> schema_name("usercom_eu")
    'usercom_eu'
    >>> schema_name("Drop Table")
    Traceback (most recent call last):
    ...
    pipeline.delivery.pg.location.LocationError: --pg-schema must be a plain lowercase name (letters, digits, _; not starting with a digit or pg_; at most 63): got 'Drop Table'
    """  # noqa: E501
    if _SCHEMA_NAME.fullmatch(raw) is None or raw.startswith("pg_"):
        raise LocationError(
            "--pg-schema must be a plain lowercase name (letters, digits, _; not starting with "
            f"a digit or pg_; at most 63): got {raw!r}"
        )
    return raw


def ledger_location(raw: str, schema: str = DEFAULT_SCHEMA) -> Path | PgLocation:
    """A ledger argument as given: a PostgreSQL URI (with the schema) or a file path."""
    if is_uri(raw):
        try:
            parts = urlsplit(raw)
            if "," not in parts.netloc:  # libpq's several hosts (h1:p1,h2:p2) have no one port
                parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError as problem:
            # Python's words may quote the whole host part, password included.
            said = _without_password(str(problem), raw)
            raise LocationError(f"ledger URI {masked(raw)} is not valid: {said}") from problem
        return PgLocation(raw, schema_name(schema))
    return Path(raw)
