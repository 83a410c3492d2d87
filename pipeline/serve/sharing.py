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
from pipeline.delivery.pg.budget import SYNC_S, Shared, SharedBudget
from pipeline.delivery.pg.sharing import learned_by, take_share
from pipeline.serve.logs import emit

if TYPE_CHECKING:
    from pipeline.delivery.pacing import Pacer
    from pipeline.serve.delivery import AppDelivery

__all__ = ["meetings"]

SLICES = 5  # looks for a new 429 this often within a meeting's interval
COUNT_EVERY = 20  # meetings between two counts of the app's queue (about 2 s)


def apply(app: AppDelivery, pacer: Pacer, shared: Shared) -> None:
    """Take this instance's share; pause on a fault another instance met, and probe at once
    when the app's pause is over (another instance's probe succeeded) rather than at this
    one's next probe, up to a minute later."""
    take_share(pacer, shared)
    if shared.fault is not None and app.paused is None and app.fault is None:
        emit(logging.ERROR, "delivery_paused_by_another_instance", app=app.app)
        app.borrowed = True  # not told back: only this pause's own probe may renew it
        app.fault = shared.fault  # the loop stops the rounds, pauses and probes
        app.wake.set()
    elif shared.fault is None and app.paused_on is not None and not app.untold:
        app.recheck.set()


async def _until_next_meeting(app: AppDelivery) -> None:
    """`SYNC_S`, or less when this instance meets a 429: the others hear of it at once."""
    throttled = app.state.pacer.throttled if app.state is not None else 0
    for _ in range(SLICES):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.stopping.wait(), SYNC_S / SLICES)
        if app.stopping.is_set() or (
            app.state is not None and app.state.pacer.throttled != throttled
        ):
            return


async def meetings(app: AppDelivery, seat: SharedBudget) -> None:
    """Meet every `SYNC_S` until the service stops; a meeting that fails keeps the last share
    (the next one tries again)."""
    met = 0
    try:
        while not app.stopping.is_set():
            met += 1
            if met % COUNT_EVERY == 0:
                # Others store and deliver this app's events too: this instance's own tally
                # (what it stored, what it filed) would drift, and --max-queued with it.
                with contextlib.suppress(LedgerError):
                    app.queued = await asyncio.to_thread(seat.queued)
                    app.metrics.queued.labels(app=app.app).set(app.queued)
            if app.state is not None:
                pacer = app.state.pacer
                resumed, app.resumed = app.resumed, False
                # A fault is told once, when this instance met it: told at every meeting, it
                # would undo another instance's good probe until this one's own next probe.
                telling = app.untold and app.paused is not None and app.ledger_fault is None
                told = learned_by(
                    pacer,
                    app.options.rate,
                    busy=bool(app.rounds),
                    fault=app.paused_on if telling else None,
                    resumed=resumed,
                )
                try:
                    shared = await asyncio.to_thread(seat.meet, told)
                except LedgerError as problem:
                    emit(logging.WARNING, "rate_budget_unreachable", app=app.app, error=problem)
                else:
                    app.untold = app.untold and not telling
                    apply(app, pacer, shared)
            await _until_next_meeting(app)
    finally:
        await asyncio.to_thread(seat.leave)
