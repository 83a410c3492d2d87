"""Text as PostgreSQL can hold it. JSON may carry U+0000 in any string (a userId, a trait
quoted in an error) and a lone surrogate (`\\ud800`, what JavaScript leaves of a cut emoji);
PostgreSQL's text holds neither, and psycopg refuses the whole statement: one such event made
its batch unstorable (503 for ever) and paused ingest for every client meanwhile. On our
connections every string parameter goes through `storable` (U+0000 becomes U+FFFD, a lone
surrogate its escape, as `event_key` writes one in a messageId), on writes and lookups alike,
so a key still finds its row; what the ledger compares with values read back (its leases'
lanes) goes through it too. The driver is imported only by `hold_storable_text`."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import Connection

NUL = "\x00"
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """`text` as our PostgreSQL connections store it (the same text when it can be).

    >>> storable("a\\x00b"), storable("s\\ud800"), storable("plain")
    ('a\\ufffdb', 's\\\\ud800', 'plain')
    """
    text = text.replace(NUL, REPLACEMENT) if NUL in text else text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


@functools.cache
def _dumper() -> type[Any]:
    from psycopg.abc import Buffer
    from psycopg.types.string import StrDumperUnknown

    class StorableStrDumper(StrDumperUnknown):
        def dump(self, obj: str) -> Buffer | None:
            text = obj.replace(NUL, REPLACEMENT) if NUL in obj else obj
            try:
                return text.encode(self._encoding)  # one encode: the common case pays no more
            except UnicodeEncodeError:
                return text.encode(self._encoding, "backslashreplace")

    return StorableStrDumper


def hold_storable_text(db: Connection[Any]) -> None:
    db.adapters.register_dumper(str, _dumper())
