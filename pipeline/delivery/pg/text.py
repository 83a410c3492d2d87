"""Text as PostgreSQL can hold it: JSON may carry U+0000 in any string (a messageId, a userId,
a trait quoted in an error), PostgreSQL's text may not, and psycopg refuses the whole
statement: one such event made its batch unstorable (503 for ever) and paused ingest for
every client meanwhile. On our connections every string parameter has U+0000 replaced by
U+FFFD, the replacement character, on writes and lookups alike, so a key still finds its row.
Imported only once psycopg is known to be installed."""

from __future__ import annotations

from psycopg import Connection
from psycopg.abc import Buffer
from psycopg.types.string import StrDumperUnknown

NUL = "\x00"
REPLACEMENT = "\ufffd"


class NulFreeStrDumper(StrDumperUnknown):
    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace(NUL, REPLACEMENT) if NUL in obj else obj)


def hold_nul_free(db: Connection[tuple[object, ...]]) -> None:
    db.adapters.register_dumper(str, NulFreeStrDumper)
