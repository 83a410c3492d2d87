"""A run's filing of outcomes in its queue (`usercom send`), and what it does when the ledger cannot
commit (a full disk, a quota, an I/O error: issue 13.2).

An event whose outcome is not on disk is `pending` for the next run, which sends it again. So
when a commit fails the run stops starting attempts (the caller stops it), keeps the outcomes
it could not file, lets the attempts in flight end, and files the kept outcomes again for a
while before it ends (space may come back: a log rotated, a file deleted). It then stops with
exit 3 and says whether every outcome is filed, or which events a re-run would send again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from itertools import chain, repeat

from pipeline.delivery.incoming import Incoming
from pipeline.delivery.lifecycle import FINISHED
from pipeline.delivery.outcome import Outcome
from pipeline.delivery.queue import DeliveryQueue, Record

PATIENCE_S = 60.0  # how long a stopped run keeps trying to file what it kept
WAITS_S = (0.5, 1.0, 2.0, 4.0)  # between two tries, then the last one again
SHOWN_POSITIONS = 20
TICK_S = 0.1  # how soon a signal ends the waiting
GROUP_OUTCOMES = 64  # outcomes staged before they are committed together, at most
GROUP_SECONDS = 0.02  # how long the first of them waits for the others, at most


def record_of(item: Incoming, outcome: Outcome) -> Record:
    """The outcome as the queue files it, for the content it was sent with."""
    return Record(
        item.key,
        item.content_hash,
        item.line,
        outcome.status,
        outcome.attempts,
        outcome.requests,
        outcome.error,
        outcome.warnings,
    )


@dataclass(slots=True)
class Filing:
    """Files outcomes as they arrive, in groups; keeps those the ledger could not take.

    In a running loop an outcome is staged, then filed and committed with its group: once
    GROUP_OUTCOMES are staged, or GROUP_SECONDS after the first of them (one commit per
    outcome cost more than the rest of its bookkeeping, issue 18.2). A crash loses at most
    those, and their events are sent again by the next run, as an attempt in flight would be.
    `flush` commits them at once (before the summary). Outside a loop each commits at once.

    `on_problem` hears (once) that the ledger cannot commit: the caller stops the run."""

    ledger: DeliveryQueue
    on_problem: Callable[[str], None]
    kept: list[tuple[Incoming, Outcome]] = field(default_factory=list)
    problem: str | None = None
    refused: str | None = None  # why the ledger first could not commit in this run
    staged: list[tuple[Incoming, Outcome]] = field(default_factory=list)
    due: asyncio.TimerHandle | None = None  # the time-bounded commit of what is staged

    def file(self, item: Incoming, outcome: Outcome) -> bool:
        """File it (staged, or committed now outside a loop); False when it is kept instead
        (the ledger cannot commit)."""
        if self.problem is None:
            self.staged.append((item, outcome))
            self._commit_in_time()
            return self.problem is None
        self.kept.append((item, outcome))
        return False

    def _commit_in_time(self) -> None:
        if len(self.staged) >= GROUP_OUTCOMES:
            self.flush()
            return
        if self.due is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to commit later from: commit now
            self.flush()
            return
        self.due = loop.call_later(GROUP_SECONDS, self.flush)

    def commit(self) -> None:
        """Commit what is staged (outcomes, and admissions of the same transaction); raises
        what the queue raises, with the staged outcomes kept for `refile`."""
        if self.due is not None:
            self.due.cancel()
            self.due = None
        if self.staged:  # one lookup of their rows for the group, not one per outcome
            self.ledger.file([record_of(item, outcome) for item, outcome in self.staged])
        self.ledger.commit()
        self.staged.clear()

    def flush(self) -> bool:
        """Commit the staged outcomes now; False when the ledger could not (they are kept)."""
        if self.problem is not None:
            return False
        try:
            self.commit()
        except sqlite3.Error as error:
            self.failed(error)
            return False
        return True

    def failed(self, error: sqlite3.Error) -> None:
        """A commit (or a write) failed: what it held is gone, and the run must stop."""
        self.problem = str(error) or type(error).__name__
        if self.due is not None:
            self.due.cancel()
            self.due = None
        # Staged outcomes went with the transaction: they are filed again from `kept`.
        self.kept.extend(self.staged)
        self.staged.clear()
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled it back already
            self.ledger.rollback()
        if self.refused is None:
            self.refused = self.problem
            self.on_problem(self.problem)

    def refile(self) -> bool:
        """File every kept outcome in one commit; True when none is left to file."""
        if not self.kept:
            return True
        try:
            self.ledger.file([record_of(item, outcome) for item, outcome in self.kept])
            self.ledger.commit()
        except sqlite3.Error as error:
            self.failed(error)
            return False
        self.kept.clear()
        self.problem = None
        return True

    def fault(self, *, has_ledger: bool) -> str | None:
        """Why the run stopped, for its last words, when the ledger refused a commit."""
        if self.refused is None:
            return None
        if not has_ledger:  # deleted at the end: what it did not take costs nothing more
            return (
                f"the run's scratch ledger (in the temporary folder) cannot commit "
                f"({self.refused}), so the run stopped sending; free space there (or set "
                "TMPDIR) and re-run, or use --ledger to resume a run"
            )
        where = f"the ledger {self.ledger.where}"
        resume = "re-run with the same --ledger to resume"
        if not self.kept:
            return (
                f"{where} could not commit ({self.refused}), so the run stopped sending; every "
                f"outcome is "
                f"filed now: {resume}"
            )
        # Only a finished outcome that is lost costs something: its event is sent again.
        positions = sorted(
            outcome.position for _, outcome in self.kept if outcome.status in FINISHED
        )
        stopped = f"{where} cannot commit ({self.problem}), so the run stopped sending"
        if not positions:
            return f"{stopped}; no finished event is unfiled; free space on its disk, then {resume}"
        shown = ", ".join(str(p) for p in positions[:SHOWN_POSITIONS])
        more = ", …" if len(positions) > SHOWN_POSITIONS else ""
        return (
            f"{stopped}; {len(positions)} events finished (delivered or rejected) could not be "
            f"filed as such (positions {shown}{more}) and a re-run sends them again; free space "
            f"on its disk, then {resume}"
        )


def stop_when_refused(events: Iterator[Incoming], filing: Filing) -> Iterator[Incoming]:
    """The events to send, until the ledger cannot commit: one it could not store is not read
    (an enqueue's batch commit may fail too)."""
    try:
        while filing.refused is None:
            try:
                event = next(events)
            except StopIteration:
                return
            except sqlite3.Error as error:
                filing.failed(error)
                return
            yield event
    finally:
        if isinstance(events, Generator):
            events.close()


async def refile_kept(
    filing: Filing, say: Callable[[str], None], give_up: Callable[[], bool]
) -> None:
    """Try to file the kept outcomes for up to PATIENCE_S (or until `give_up()`: a signal)."""
    if not filing.kept:
        return
    if not any(outcome.status in FINISHED for _, outcome in filing.kept):
        # Each of their events is stored pending, committed before it was sent (`queue`): a
        # re-run sends it again whether this outcome is filed or not, so none is worth a wait.
        filing.refile()
        return
    say(
        f"usercom send: filing the outcomes of {len(filing.kept)} events again, for up to "
        f"{PATIENCE_S:.0f} s (free space on the ledger's disk)"
    )
    deadline = time.monotonic() + PATIENCE_S
    for wait in chain(WAITS_S, repeat(WAITS_S[-1])):
        if filing.refile():
            return
        until = time.monotonic() + min(wait, deadline - time.monotonic())
        while time.monotonic() < until and not give_up():
            await asyncio.sleep(min(TICK_S, until - time.monotonic()))
        if time.monotonic() >= deadline or give_up():
            return
