"""The run ledger: one SQLite row per event, so a re-run skips what already finished.

Rows are committed as each outcome arrives (WAL journal), so a run killed at any moment
leaves a ledger that a re-run can trust: at worst an event whose write happened just before
the kill is sent again (delivery is at least once). Delivered and rejected events are
skipped on a re-run; failed ones (retries exhausted) are tried again, and can be exported
as JSONL to replay elsewhere. Requests are stored as the outcomes show them: the API key is
never in them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from pipeline.delivery.outcome import Outcome

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    requests TEXT NOT NULL,
    error TEXT,
    line TEXT
)
"""
FINISHED = ("delivered", "rejected")


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def finished(self, key: str) -> bool:
        row = self._db.execute("SELECT status FROM events WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] in FINISHED

    def record(self, outcome: Outcome, line: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO events (key, status, attempts, requests, error, line) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                outcome.key,
                outcome.status,
                outcome.attempts,
                json.dumps(list(outcome.requests)),
                outcome.error,
                line if outcome.status != "delivered" else None,
            ),
        )

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM events GROUP BY status")
        return dict(rows)

    def failed_lines(self) -> Iterator[str]:
        """The input lines of failed events, in key order, ready to replay."""
        rows = self._db.execute("SELECT line FROM events WHERE status = 'failed' ORDER BY key")
        for (line,) in rows:
            if line:
                yield line
