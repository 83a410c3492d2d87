"""DELIVERY §5, the pacer on its own: slow start, the cut on a 429 to what was accepted, the
Retry-After every lane waits out, the first-come gate and the `--rate` cap.

Virtual time (`FakeClock`) drives the pacer's clock and sleep: every turn's instant is exact
and no test waits a real second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from pipeline.delivery.pacing import LONG_WAIT_S, MEASURE_S, Pacer
from pipeline.testing.clock import FakeClock, settle

START = 100.0


def paced(
    cap: float | None = None, initial: float = 50.0, floor: float = 0.5
) -> tuple[Pacer, FakeClock]:
    clock = FakeClock(START)
    pacer = Pacer(cap=cap, initial=initial, floor=floor, clock=clock, sleep=clock.sleep)
    return pacer, clock


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


class Lanes:
    """Lanes asking the pacer for turns; `turns` is who got one when, in order."""

    def __init__(self, pacer: Pacer, clock: FakeClock) -> None:
        self.pacer = pacer
        self.clock = clock
        self.turns: list[tuple[str, float]] = []
        self.tasks: list[asyncio.Task[bool]] = []

    def ask(self, name: str, stopping: asyncio.Event | None = None) -> None:
        async def lane() -> bool:
            taken = await self.pacer.acquire(stopping)
            if taken:
                self.turns.append((name, self.clock()))
            return taken

        self.tasks.append(asyncio.ensure_future(lane()))

    async def done(self) -> list[bool]:
        return list(await asyncio.gather(*self.tasks))


# --- slow start ---------------------------------------------------------------------------------


def test_slow_start_begins_at_the_initial_rate_and_grows_two_per_good_answer() -> None:
    pacer, _ = paced()
    assert pacer.rate == 50.0
    assert pacer.slow_start
    for answered in range(1, 11):
        pacer.good()
        assert pacer.rate == 50.0 + 2.0 * answered
    assert pacer.slow_start


def test_slow_start_spaces_turns_at_the_rate_of_the_moment() -> None:
    async def test() -> None:
        pacer, clock = paced(initial=4.0)
        times = []
        for _ in range(3):
            assert await _turn(pacer, clock)
            times.append(clock() - START)
            pacer.good()  # 4 -> 6 -> 8 requests/s
        assert times == pytest.approx([0.0, 1 / 4, 1 / 4 + 1 / 6])

    run(test)


def test_after_slow_start_the_rate_grows_by_the_probe_step_per_second_of_good_answers() -> None:
    async def test() -> None:
        pacer, clock = paced(initial=20.0)
        pacer.too_many(0.0)  # ends slow start; nothing was accepted: the floor
        assert not pacer.slow_start
        before = pacer.rate
        await clock.advance(1.0)  # past the Retry-After
        answered = 0
        while clock() < START + 1.0 + 10.0:  # ten seconds of good answers, as fast as paced
            assert await _turn(pacer, clock)
            pacer.good()
            answered += 1
        # Each answer adds probe_step / rate, so a second of answers adds about probe_step.
        assert 9.0 <= pacer.rate - before <= 11.0
        assert answered > 10

    run(test)


# --- the cut on a 429 ---------------------------------------------------------------------------


def _accept(pacer: Pacer, clock: FakeClock, count: int, every: float) -> Awaitable[None]:
    async def answers() -> None:
        for _ in range(count):
            pacer.good()
            await clock.advance(every)

    return answers()


def test_a_429_cuts_the_rate_to_a_little_under_what_was_accepted_over_the_last_two_seconds() -> (
    None
):
    async def test() -> None:
        pacer, clock = paced()
        await _accept(pacer, clock, 100, 1 / 16)  # what a token bucket of 16/s lets through
        assert pacer.rate == 250.0  # slow start never saw a 429
        pacer.too_many(2.0)
        # The 32 answers of the last two seconds count, the 68 before them do not.
        assert pacer.rate == 16.0 * 0.95
        assert not pacer.slow_start
        assert pacer.throttled == 1

    run(test)


def test_a_429_never_raises_the_rate_and_cuts_at_least_a_tenth() -> None:
    async def test() -> None:
        pacer, clock = paced(initial=10.0)
        await _accept(pacer, clock, 30, 0.05)  # 30 answers in 1.5 s, rate grew to 70
        pacer.too_many(1.0)
        assert pacer.rate == pytest.approx(min(70 * 0.9, 30 / MEASURE_S * 0.95))
        rate = pacer.rate
        await clock.advance(1.5)
        pacer.too_many(1.0)  # little accepted since: a deeper cut, never a higher rate
        assert pacer.rate <= rate * 0.9

    run(test)


def test_at_most_one_cut_per_retry_after_but_every_429_extends_the_pause() -> None:
    async def test() -> None:
        pacer, clock = paced()
        await _accept(pacer, clock, 100, 0.05)
        pacer.too_many(3.0)
        cut = pacer.rate
        resume = pacer.resume_at
        assert resume == clock() + 3.0
        await clock.advance(1.0)
        pacer.too_many(3.0)  # a lane that was already waiting for its answer
        assert pacer.rate == cut
        assert pacer.throttled == 2
        assert pacer.resume_at == resume + 1.0
        await clock.advance(3.0)  # a Retry-After later: this one cuts again
        pacer.too_many(1.0)
        assert pacer.rate < cut

    run(test)


def test_a_429_with_nothing_accepted_lands_on_the_floor_not_zero() -> None:
    pacer, _ = paced(floor=0.5)
    pacer.too_many(None)
    assert pacer.rate == 0.5
    assert pacer.resume_at == START + 1.0  # no Retry-After: one second


# --- Retry-After: every lane waits ---------------------------------------------------------------


def test_retry_after_holds_every_lane_then_they_go_in_order_at_the_cut_rate() -> None:
    async def test() -> None:
        pacer, clock = paced(initial=10.0)
        lanes = Lanes(pacer, clock)
        pacer.too_many(4.0)  # one lane's 429 (nothing accepted yet: the rate is the floor)
        pacer.rate = 2.0  # a known rate, so that the spacing after the pause is exact
        for name in "abc":
            lanes.ask(name)
        await clock.advance(3.99)
        assert lanes.turns == []  # nobody goes during the pause, not only the lane that got it
        await clock.advance(0.01 + 1.0)
        assert await lanes.done() == [True, True, True]
        assert lanes.turns == [("a", START + 4.0), ("b", START + 4.5), ("c", START + 5.0)]

    run(test)


def test_a_pause_that_comes_while_lanes_wait_applies_to_their_next_turn() -> None:
    async def test() -> None:
        pacer, clock = paced(initial=1.0)
        lanes = Lanes(pacer, clock)
        for name in "ab":
            lanes.ask(name)
        await settle()
        assert lanes.turns == [("a", START)]
        pacer.too_many(5.0)  # b's turn was due at START + 1: now after the Retry-After
        await clock.advance(10.0)
        await lanes.done()
        assert lanes.turns[1][0] == "b"
        assert lanes.turns[1][1] == pytest.approx(START + 5.0)

    run(test)


# --- the first-come gate --------------------------------------------------------------------------


def test_lanes_take_turns_first_come_first_served() -> None:
    async def test() -> None:
        pacer, clock = paced(initial=10.0)
        lanes = Lanes(pacer, clock)
        for name in "abcdef":
            lanes.ask(name)
        await clock.advance(1.0)
        await lanes.done()
        assert [name for name, _ in lanes.turns] == list("abcdef")
        assert [at - START for _, at in lanes.turns] == pytest.approx(
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
        )

    run(test)


def test_a_rate_change_applies_at_once_not_to_turns_booked_at_the_old_rate() -> None:
    async def test() -> None:
        pacer, clock = paced(initial=1.0)
        lanes = Lanes(pacer, clock)
        for name in "abcd":
            lanes.ask(name)
        await settle()
        assert lanes.turns == [("a", START)]
        # Only the first waiter sleeps (until START + 1, booked at 1/s); the others queue on
        # the gate with no turn booked, so a faster rate applies to them straight away.
        assert clock.wakes == [START + 1.0]
        pacer.rate = 10.0
        await clock.advance(2.0)
        await lanes.done()
        assert [at - START for _, at in lanes.turns] == pytest.approx([0.0, 1.0, 1.1, 1.2])

    run(test)


def test_a_stop_during_a_long_wait_takes_no_turn_and_lets_the_next_lane_ask() -> None:
    async def test() -> None:
        pacer, clock = paced(initial=10.0)
        stopping = asyncio.Event()
        lanes = Lanes(pacer, clock)
        pacer.too_many(30.0)
        lanes.ask("a", stopping)
        await clock.advance(1.0)
        stopping.set()
        await settle()
        assert await lanes.done() == [False]
        assert lanes.turns == []
        assert clock.wakes == []  # its sleep is given up, not left behind
        assert pacer.next_at <= START  # the stopped lane booked nothing

    run(test)


def test_a_short_wait_between_turns_is_a_plain_sleep_a_stop_does_not_cut() -> None:
    async def test() -> None:
        pacer, clock = paced(initial=1 / (LONG_WAIT_S / 2))  # turns LONG_WAIT_S / 2 apart
        stopping = asyncio.Event()
        lanes = Lanes(pacer, clock)
        lanes.ask("a", stopping)
        lanes.ask("b", stopping)
        await settle()
        stopping.set()
        await clock.advance(LONG_WAIT_S)
        assert await lanes.done() == [True, True]

    run(test)


# --- the --rate cap ------------------------------------------------------------------------------


def test_the_cap_bounds_the_first_rate_and_every_increase() -> None:
    async def test() -> None:
        pacer, clock = paced(cap=8.0)
        assert pacer.rate == 8.0
        lanes = Lanes(pacer, clock)
        for index in range(20):
            lanes.ask(str(index))
        for _ in range(40):
            await clock.advance(0.125)
            pacer.good()
            assert pacer.rate <= 8.0
        await lanes.done()
        gaps = [b - a for (_, a), (_, b) in zip(lanes.turns, lanes.turns[1:], strict=False)]
        assert min(gaps) == pytest.approx(1 / 8.0)

    run(test)


def test_the_cap_also_bounds_the_rate_after_a_cut() -> None:
    async def test() -> None:
        pacer, clock = paced(cap=5.0)
        await _accept(pacer, clock, 200, 0.005)  # far more accepted than the cap
        assert pacer.rate == 5.0
        pacer.too_many(1.0)
        assert pacer.rate == 5.0 * 0.9  # the cut is from the capped rate

    run(test)


def test_the_cap_below_the_floor_wins() -> None:
    pacer, _ = paced(cap=0.2, floor=0.5)
    assert pacer.rate == 0.2


async def _turn(pacer: Pacer, clock: FakeClock) -> bool:
    """One lane's turn, moving virtual time on until the pacer gives it."""
    asking = asyncio.ensure_future(pacer.acquire())
    await settle()
    while not asking.done():
        await clock.advance(min(clock.wakes, default=clock()) - clock())
    return asking.result()
