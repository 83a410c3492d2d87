"""The service's seat at its app's shared rate budget (DELIVERY §7, `pipeline.delivery.pg.
budget`): with a PostgreSQL queue, every instance meets the others a few times a second, so a
429 one of them meets slows all, `--rate` caps them together, and a refused key pauses every
one of them (each `/health` says so) until a probe succeeds.

Between meetings the app's `Pacer` paces alone, capped at this instance's share: the hot path
makes no database call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from pipeline.delivery.ledger import LedgerError
from pipeline.delivery.pacing import MEASURE_S, Pacer
from pipeline.delivery.pg.budget import SYNC_S, Learned, Shared, SharedBudget
from pipeline.serve.logs import emit

if TYPE_CHECKING:
    from pipeline.serve.delivery import AppDelivery

__all__ = ["meetings"]


def learned(app: AppDelivery, pacer: Pacer) -> Learned:
    """What this instance tells the others now."""
    now = pacer.clock()
    recent = sum(1 for at in pacer.accepted if at >= now - MEASURE_S)
    resumed, app.resumed = app.resumed, False
    return Learned(
        accepted=recent / MEASURE_S,
        throttled=pacer.throttled,
        retry_after=max(0.0, pacer.resume_at - now),
        fault=app.paused_on if app.paused is not None and app.ledger_fault is None else None,
        resumed=resumed,
        cap=app.options.rate,
        busy=bool(app.rounds) or recent > 0,
    )


def apply(app: AppDelivery, pacer: Pacer, shared: Shared) -> None:
    """Pace at this instance's share until the next meeting; wait out a Retry-After another
    instance met; pause on a fault another instance met."""
    pacer.slow_start = False  # the app's rate grows in the database, for all instances at once
    pacer.cap = shared.share
    pacer.rate = shared.share
    if shared.wait > 0:
        pacer.resume_at = max(pacer.resume_at, pacer.clock() + shared.wait)
    if shared.fault is not None and app.paused is None and app.fault is None:
        emit(logging.ERROR, "delivery_paused_by_another_instance", app=app.app)
        app.fault = shared.fault  # the loop stops the rounds, pauses and probes
        app.wake.set()


async def meetings(app: AppDelivery, seat: SharedBudget) -> None:
    """Meet every `SYNC_S` until the service stops; a meeting that fails keeps the last share
    (the next one tries again)."""
    try:
        while not app.stopping.is_set():
            if app.state is not None:
                pacer = app.state.pacer
                try:
                    shared = await asyncio.to_thread(seat.meet, learned(app, pacer))
                except LedgerError as problem:
                    emit(logging.WARNING, "rate_budget_unreachable", app=app.app, error=problem)
                else:
                    apply(app, pacer, shared)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.stopping.wait(), SYNC_S)
    finally:
        await asyncio.to_thread(seat.leave)
