"""Text as PostgreSQL can hold it. JSON may carry U+0000 in any string (a userId, a trait
quoted in an error) and a lone surrogate (`\\ud800`, what JavaScript leaves of a cut emoji);
PostgreSQL's text holds neither, and psycopg refuses the whole statement: one such event made
its batch unstorable (503 for ever) and paused ingest for every client meanwhile. On our
connections every string parameter has U+0000 replaced by U+FFFD and a lone surrogate
written as its escape (as `event_key` writes one in a messageId), on writes and lookups
alike, so a key still finds its row. Imported only once psycopg is known to be installed."""

from __future__ import annotations

from psycopg import Connection
from psycopg.abc import Buffer
from psycopg.types.string import StrDumperUnknown

NUL = "\x00"
REPLACEMENT = "\ufffd"


class StorableStrDumper(StrDumperUnknown):
    def dump(self, obj: str) -> Buffer | None:
        text = obj.replace(NUL, REPLACEMENT) if NUL in obj else obj
        try:
            return text.encode(self._encoding)  # one encode: the common case pays nothing more
        except UnicodeEncodeError:
            return text.encode(self._encoding, "backslashreplace")


def hold_storable_text(db: Connection[tuple[object, ...]]) -> None:
    db.adapters.register_dumper(str, StorableStrDumper)
