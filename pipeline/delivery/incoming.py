"""Input events, read lazily from JSONL so memory stays flat however long the file is.

Each event is normalized and composed once, here at the edge (with delivery's write
strategy); its lane, its company and every retry use that one Job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from returns.result import Result, Success

from pipeline.core.compose import Job, prepare_message
from pipeline.core.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.flows import DELIVERY
from pipeline.core.types import as_text, is_present


@dataclass(frozen=True, slots=True)
class Incoming:
    """One input event: its ledger key, its original line, and its Job or the failure.

    `problem` says why a line could not be read at all; such events are rejected, never sent.
    """

    key: str
    job: Result[Job, PipelineError] | None
    problem: str | None = None
    line: str = ""

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


def incoming(cfg: Config, position: int, message: object, line: str = "") -> Incoming:
    """Key: messageId, else the input position."""
    if not isinstance(message, Mapping):
        return Incoming(f"#{position}", None, "line is not a JSON object", line)
    job = prepare_message(cfg, message, DELIVERY)
    message_id = message.get("messageId")
    key = (
        as_text(message_id)
        if isinstance(message_id, str | int | float) and is_present(message_id)
        else f"#{position}"
    )
    return Incoming(key, job, None, line)


def read_jsonl(lines: Iterable[str], cfg: Config) -> Iterator[Incoming]:
    """Blank lines are skipped; a line that is not JSON becomes an Incoming with a problem."""
    for position, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as error:
            yield Incoming(f"#{position}", None, f"line is not JSON: {error}", text)
            continue
        yield incoming(cfg, position, message, text)


__all__ = ["Incoming", "incoming", "read_jsonl"]
