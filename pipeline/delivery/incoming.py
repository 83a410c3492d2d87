"""Input events, read lazily from JSONL so memory stays flat however long the file is."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import cast

from pipeline.core import paths
from pipeline.core.types import JSONObject, as_text, is_present


@dataclass(frozen=True, slots=True)
class Incoming:
    """One input event: its ledger key, the lane that keeps its user's order, and the message.

    `problem` says why a line could not be read; such events are rejected, never sent.
    """

    key: str
    lane: str
    message: Mapping[str, object] | None
    problem: str | None = None
    line: str = ""


def incoming(position: int, message: object, line: str = "") -> Incoming:
    """Key: messageId, else the input position. Lane: the user (userId list, else email)."""
    if not isinstance(message, Mapping):
        return Incoming(f"#{position}", f"#{position}", None, "line is not a JSON object", line)
    # Read-only use of the parsed line: the flow freezes it later, once.
    view = cast(JSONObject, message)
    message_id = view.get("messageId")
    key = as_text(message_id) if is_present(message_id) else f"#{position}"
    who = paths.read(view, paths.USER_ID)
    who = who if who is not None else paths.read(view, paths.EMAIL)
    lane = f"user:{as_text(who)}" if who is not None else f"#{position}"
    return Incoming(key, lane, message, None, line)


def read_jsonl(lines: Iterable[str]) -> Iterator[Incoming]:
    """Blank lines are skipped; a line that is not JSON becomes an Incoming with a problem."""
    for position, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as error:
            yield Incoming(f"#{position}", f"#{position}", None, f"line is not JSON: {error}", text)
            continue
        yield incoming(position, message, text)
