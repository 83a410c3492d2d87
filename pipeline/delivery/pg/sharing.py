"""A pacer's seat at its app's shared budget (`budget.py`): what a `Pacer` tells the others
and how it takes back its share. The service adds its pauses (`serve/sharing.py`); `send`
uses this as it is, so that concurrent sends (and the service) keep to one budget."""

from __future__ import annotations

import asyncio
import contextlib

from pipeline.delivery.ledger import LedgerError
from pipeline.delivery.pacing import MEASURE_S, Pacer
from pipeline.delivery.pg.budget import SYNC_S, Learned, Shared, SharedBudget

__all__ = ["first_share", "learned_by", "share_with", "take_share"]


def learned_by(
    pacer: Pacer,
    cap: float | None,
    *,
    busy: bool,
    fault: str | None = None,
    resumed: bool = False,
) -> Learned:
    """What `pacer` learned lately, for the next meeting."""
    now = pacer.clock()
    recent = sum(1 for at in pacer.accepted if at >= now - MEASURE_S)
    return Learned(
        accepted=recent / MEASURE_S,
        throttled=pacer.throttled,
        retry_after=max(0.0, pacer.resume_at - now),
        fault=fault,
        resumed=resumed,
        cap=cap,
        busy=busy or recent > 0,
    )


def take_share(pacer: Pacer, shared: Shared) -> None:
    """Pace at this instance's share until the next meeting, and wait out a Retry-After
    another instance met. The rate grows in the database, for everyone at once."""
    pacer.slow_start = False
    pacer.cap = shared.share
    pacer.rate = shared.share
    if shared.wait > 0:
        pacer.resume_at = max(pacer.resume_at, pacer.clock() + shared.wait)


def first_share(seat: SharedBudget, pacer: Pacer, cap: float | None) -> None:
    """Join before the first request: a run that starts beside busy instances starts at its
    share, not at the pacer's own first rate on top of theirs."""
    with contextlib.suppress(LedgerError):
        take_share(pacer, seat.meet(learned_by(pacer, cap, busy=True)))


async def share_with(seat: SharedBudget, pacer: Pacer, cap: float | None) -> None:
    """Meet every `SYNC_S` until cancelled (a `send` run's life); then leave."""
    try:
        while True:
            with contextlib.suppress(LedgerError):  # unreachable: keep the last share
                take_share(
                    pacer, await asyncio.to_thread(seat.meet, learned_by(pacer, cap, busy=True))
                )
            await asyncio.sleep(SYNC_S)
    finally:
        await asyncio.to_thread(seat.leave)
