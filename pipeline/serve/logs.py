"""Structured logs: one `key=value` line per thing worth knowing (a delivery problem, a pause).

Values with spaces, quotes or `=` are written as JSON strings, so every line splits cleanly
(`logfmt`). Messages come from outcomes and faults, which never hold the API key (it is masked
or blanked where User.com echoes it), and the key is never passed here.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Final

LOGGER = "usercom.serve"
log = logging.getLogger(LOGGER)


# json.dumps escapes C0 only: DEL, C1 (0x9b is CSI) and bidi overrides in client data would
# still act on the terminal showing the log.
_INERT: Final = {
    code: f"\\u{code:04x}" for code in (0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F))
} | {code: f"\\u{code:04x}" for code in range(0x2066, 0x206A)}


def _value(value: object) -> str:
    text = "null" if value is None else str(value)
    if text and not any(c in text for c in ' "=\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False).translate(_INERT)


def line(what: str, **fields: object) -> str:
    """`event=WHAT k=v ...`.

    >>> line("event_failed", app="acme", error='429 "slow down"')
    'event=event_failed app=acme error="429 \\\\"slow down\\\\""'
    """
    parts = [f"event={_value(what)}"]
    parts.extend(f"{name}={_value(value)}" for name, value in fields.items())
    return " ".join(parts)


def ignored_entries(notes: Mapping[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """Each ignored mapping entry once, with the apps whose config has it (`note`, `apps`).

    Sources often share one mapping: its warning is worth one line, not one per app.

    >>> ignored_entries({"acme": ("entry 1 is ignored",), "beta": ("entry 1 is ignored",)})
    [('entry 1 is ignored', 'acme,beta')]
    """
    apps_of: dict[str, list[str]] = {}
    for app, app_notes in notes.items():
        for note in app_notes:
            apps_of.setdefault(note, [])
            if app not in apps_of[note]:
                apps_of[note].append(app)
    return [(note, ",".join(apps)) for note, apps in apps_of.items()]


def emit(level: int, what: str, **fields: object) -> None:
    if log.isEnabledFor(level):
        log.log(level, "%s", line(what, **fields))


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        return f"ts={stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} " + (
            record.getMessage()
        )


def configure(level: int = logging.INFO) -> None:
    """Log lines to stderr, in UTC (idempotent)."""
    if any(getattr(h, "_usercom", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    formatter = _Formatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler._usercom = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
