"""`usercom serve` delivery (DELIVERY §2-§3, §6): order, retries, pauses, health, metrics.

The service runs in a thread (short retry and probe waits) in front of a sandbox.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from serve_helpers import (
    API_KEY,
    RAW_CONFIG,
    SUBDOMAIN,
    health,
    identify,
    ledger_counts,
    ledger_rows,
    options,
    post,
    sandbox_state,
    service_in_thread,
    track,
    tracks_by_user,
    wait_until,
    with_key,
)

from pipeline.sandbox import ForcedStatus, SandboxOptions, parse_forced, serve_in_thread
from pipeline.serve.logs import LOGGER


def test_events_of_each_user_land_in_order(sandbox: str, ledger: Path) -> None:
    users = [f"user-{n}" for n in range(12)]
    with service_in_thread(options(ledger, sandbox, concurrency=4)) as service:
        for user in users:
            assert post(service.url, "/v1/identify", identify(user)).status_code == 200
        for round_ in range(5):
            batch = [track(user, round_ * 4 + i) for user in users for i in range(4)]
            assert post(service.url, "/v1/batch", {"batch": batch}).status_code == 200
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 12 * 21, timeout=60)
        state = sandbox_state(sandbox)
        assert sorted(u["custom_id"] for u in state["users"]) == sorted(users)
        for user, positions in tracks_by_user(state).items():
            assert positions == list(range(20)), user
        shown = health(service.url)
        assert shown == {
            "status": "ok",
            "queued": 0,
            "in_flight": 0,
            "paused": None,
            "apps": {SUBDOMAIN: {"queued": 0, "paused": None, "in_flight": 0}},
        }


def test_a_failed_event_is_retried_later_and_holds_its_user_meanwhile(
    tmp_path: Path, ledger: Path
) -> None:
    # The first 3 event writes fail (503): with one attempt per round here, the event is filed
    # failed three times, and the service tries it again later, in order, until it lands.
    forced = (parse_forced("users-by-id-events-create=503x3"),)
    with (
        serve_in_thread(SandboxOptions(api_key=API_KEY, forced=forced)) as sandbox,
        service_in_thread(
            options(ledger, sandbox, event_attempts=1, retry_initial=0.3, retry_max=0.3)
        ) as service,
    ):
        batch = [identify("u1"), track("u1", 1), track("u1", 2), identify("u2"), track("u2", 1)]
        assert post(service.url, "/v1/batch", {"batch": batch}).status_code == 200
        assert wait_until(lambda: ledger_counts(ledger)["failed"] >= 1, timeout=30)
        counts = ledger_counts(ledger)
        assert counts["rejected"] == 0
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 5, timeout=60)
        assert tracks_by_user(sandbox_state(sandbox)) == {"u1": [1, 2], "u2": [1]}
        metrics = httpx.get(f"{service.url}/metrics").text
        assert 'usercom_events_failed_total{app="acme",type="track"}' in metrics
        assert 'status="503"' in metrics
        rows = {row.key: row for row in ledger_rows(ledger)}
        assert rows["acme:u1-track-1"].attempts + rows["acme:u2-track-1"].attempts == 5


def test_an_event_older_than_give_up_after_stays_failed_and_holds_nobody(
    ledger: Path,
) -> None:
    forced = (parse_forced("users-by-id-events-create=503x1"),)  # the first event write fails
    with (
        serve_in_thread(SandboxOptions(api_key=API_KEY, forced=forced)) as sandbox,
        service_in_thread(
            options(ledger, sandbox, event_attempts=1, retry_initial=30, give_up_after=0.5)
        ) as service,
    ):
        batch = [identify("u1"), track("u1", 1), identify("u1", plan="pro")]
        batch[2]["messageId"] = "u1-identify-2"
        assert post(service.url, "/v1/batch", {"batch": batch}).status_code == 200
        assert wait_until(lambda: ledger_counts(ledger)["failed"] == 1)
        assert ledger_counts(ledger)["held"] == 1  # the second identify waits
        time.sleep(0.6)
        # Past --give-up-after the track is no longer tried, and holds nobody.
        assert post(service.url, "/v1/track", track("u1", 5)).status_code == 200
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 3)
        rows = {row.key: row for row in ledger_rows(ledger)}
        assert rows["acme:u1-track-1"].status == "failed"
        assert rows["acme:u1-track-1"].attempts == 1
        assert tracks_by_user(sandbox_state(sandbox)) == {"u1": [5]}
        assert health(service.url)["queued"] == 1
        metrics = httpx.get(f"{service.url}/metrics").text
        assert 'usercom_events_given_up_total{app="acme"} 1.0' in metrics


def test_a_wrong_api_key_pauses_delivery_and_keeps_every_event(sandbox: str, ledger: Path) -> None:
    wrong = with_key(RAW_CONFIG, "w" * 64)
    batch = [identify("u1"), track("u1", 1), track("u1", 2)]
    with service_in_thread(options(ledger, sandbox, raw=wrong)) as service:
        assert post(service.url, "/v1/batch", {"batch": batch}).status_code == 200
        assert wait_until(lambda: health(service.url)["paused"] is not None)
        shown = health(service.url)
        assert shown["status"] == "paused"
        assert "401" in shown["paused"]
        assert "apiKey" in shown["paused"]
        assert "w" * 64 not in json.dumps(shown)
        assert shown["apps"][SUBDOMAIN]["queued"] == 3
        metrics = httpx.get(f"{service.url}/metrics").text
        assert 'usercom_paused{app="acme"} 1.0' in metrics
    counts = ledger_counts(ledger)
    assert counts["pending"] == 3
    assert counts["rejected"] == counts["failed"] == counts["delivered"] == 0
    assert sandbox_state(sandbox)["users"] == []
    # A restart with the right key delivers what was queued, with nothing to clean up.
    with service_in_thread(options(ledger, sandbox)) as service:
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 3)
        assert health(service.url)["paused"] is None
    assert tracks_by_user(sandbox_state(sandbox)) == {"u1": [1, 2]}


def test_a_paused_app_resumes_by_itself_when_a_probe_succeeds(ledger: Path) -> None:
    # The key is refused for a while (the first 6 requests), then accepted again.
    forced = (parse_forced("GET users-by-id=401x6"),)
    with (
        serve_in_thread(SandboxOptions(api_key=API_KEY, forced=forced)) as sandbox,
        service_in_thread(options(ledger, sandbox)) as service,
    ):
        assert post(
            service.url, "/v1/batch", {"batch": [identify("u1"), track("u1", 1)]}
        ).is_success
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2, timeout=30)
        assert health(service.url)["paused"] is None
        assert ledger_counts(ledger)["rejected"] == 0


def test_metrics_are_prometheus_text_per_app(sandbox: str, ledger: Path) -> None:
    with service_in_thread(options(ledger, sandbox)) as service:
        batch = [identify("u1"), track("u1", 1), {"type": "page", "userId": "u1"}]
        assert post(service.url, "/v1/batch", {"batch": batch}).status_code == 200
        assert wait_until(lambda: health(service.url)["queued"] == 0)
        answer = httpx.get(f"{service.url}/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        text = answer.text
        for line in (
            'usercom_events_received_total{app="acme",type="identify"} 1.0',
            'usercom_events_received_total{app="acme",type="track"} 1.0',
            'usercom_events_delivered_total{app="acme",type="identify"} 1.0',
            'usercom_events_rejected_total{app="acme",type="page"} 1.0',
            'usercom_queue_depth{app="acme"} 0.0',
            'usercom_oldest_queued_age_seconds{app="acme"} 0.0',
            'usercom_api_throttled_total{app="acme"}',
            'usercom_ingest_requests_total{route="/v1/batch",status="200"} 1.0',
        ):
            if line.endswith("}"):
                assert line[: -len("}")] in text, line
            else:
                assert line in text, line
        assert 'usercom_api_calls_total{app="acme",endpoint="' in text
        assert API_KEY not in text


def test_the_oldest_queued_age_grows_while_paused(sandbox: str, ledger: Path) -> None:
    wrong = with_key(RAW_CONFIG, "w" * 64)
    with service_in_thread(options(ledger, sandbox, raw=wrong)) as service:
        assert post(service.url, "/v1/track", track("u1", 1)).status_code == 200

        def age() -> float:
            for line in httpx.get(f"{service.url}/metrics").text.splitlines():
                if line.startswith("usercom_oldest_queued_age_seconds{"):
                    return float(line.rsplit(" ", 1)[1])
            return -1.0

        assert wait_until(lambda: age() > 0.2, timeout=5)


def test_retention_drops_bodies_but_keeps_keys(sandbox: str, ledger: Path) -> None:
    with service_in_thread(options(ledger, sandbox, keep_days=0.0)) as service:
        assert post(
            service.url, "/v1/batch", {"batch": [identify("u1"), track("u1", 1)]}
        ).is_success
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2)
    # Retention runs at start (and hourly): with 0 days, every finished body goes.
    with service_in_thread(options(ledger, sandbox, keep_days=0.0)) as service:
        assert wait_until(lambda: all(row.line == b"" for row in ledger_rows(ledger)))
        again = post(service.url, "/v1/track", track("u1", 1))
        assert again.json()["duplicates"] == 1
    assert {row.status for row in ledger_rows(ledger)} == {"delivered"}
    assert tracks_by_user(sandbox_state(sandbox)) == {"u1": [1]}


def test_one_users_long_retries_do_not_hold_the_others(ledger: Path) -> None:
    # Every event write of user "slow" fails: its event is retried within its round for 3 s.
    forced = (ForcedStatus("/users-by-id/slow/events/", 503, method="POST"),)
    with (
        serve_in_thread(SandboxOptions(api_key=API_KEY, forced=forced)) as sandbox,
        service_in_thread(
            options(ledger, sandbox, event_seconds=3.0, event_attempts=50, retry_initial=60)
        ) as service,
    ):
        users = ["slow", *(f"fast-{n}" for n in range(5))]
        assert post(service.url, "/v1/batch", {"batch": [identify(u) for u in users]}).is_success
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 6)
        assert post(service.url, "/v1/track", track("slow", 1)).is_success
        time.sleep(0.2)
        started = time.monotonic()
        fast = [track(u, 1) for u in users[1:]]
        assert post(service.url, "/v1/batch", {"batch": fast}).is_success
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 11, timeout=10)
        assert time.monotonic() - started < 2.0
        assert {r.key: r.status for r in ledger_rows(ledger)}["acme:slow-track-1"] == "pending"
        assert wait_until(lambda: ledger_counts(ledger)["failed"] == 1, timeout=10)
        assert set(tracks_by_user(sandbox_state(sandbox))) == set(users[1:])


def test_one_event_always_answered_5xx_is_its_own_failure_not_an_outage(ledger: Path) -> None:
    # DELIVERY §3, §6 (issue 13.9): u0's event route always answers 503, the probe and every
    # other route are fine. Its failures fill the window again and again; each time the probe
    # is answered, so they keep counting against u0's event (filed failed, retried later),
    # never resent as if User.com were down, and the others are delivered meanwhile.
    forced = (parse_forced("POST /users-by-id/u0/events/=503"),)
    with (
        serve_in_thread(SandboxOptions(api_key=API_KEY, forced=forced)) as sandbox,
        service_in_thread(
            options(ledger, sandbox, event_attempts=3, retry_initial=0.1, retry_max=0.2)
        ) as service,
    ):
        batch = [identify("u0"), track("u0", 1), identify("u1"), track("u1", 1)]
        assert post(service.url, "/v1/batch", {"batch": batch}).status_code == 200

        def poison_attempts() -> int:
            rows = ledger_rows(ledger)
            return int(next(r.attempts for r in rows if r.key.endswith("u0-track-1")))

        assert wait_until(lambda: poison_attempts() >= 25, timeout=30)
        assert health(service.url)["paused"] is None
        assert post(service.url, "/v1/track", track("u1", 2)).status_code == 200
        assert wait_until(lambda: tracks_by_user(sandbox_state(sandbox)).get("u1") == [1, 2])
        counts = ledger_counts(ledger)
        assert counts["failed"] == 1
        assert counts["delivered"] == 4


class Switchable:
    """A User.com in front of the sandbox that can go down (every request 503, the probe too)."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.down = upstream, False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if owner.down:
                    status, content = 503, b'{"detail": "Service unavailable."}'
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    reply = httpx.request(
                        self.command, owner.upstream + self.path, headers=headers, content=body
                    )
                    status, content = reply.status_code, reply.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *_args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_health_says_why_while_the_lanes_ride_out_an_outage(sandbox: str, ledger: Path) -> None:
    # DELIVERY §3, §6: User.com goes down after the start (its probe is failing too): the
    # rounds pause and probe, and /health says so while events stay queued; back up, they land.
    upstream = Switchable(sandbox)
    try:
        with service_in_thread(options(ledger, upstream.url, max_outage=600.0)) as service:
            assert post(service.url, "/v1/identify", identify("u0")).status_code == 200
            assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 1)
            upstream.down = True
            batch = [identify(f"u{n}") for n in range(1, 13)]
            assert post(service.url, "/v1/batch", {"batch": batch}).status_code == 200
            assert wait_until(lambda: health(service.url)["paused"] is not None, timeout=20)
            shown = health(service.url)
            assert shown["status"] == "paused"
            assert "outage: User.com at" in shown["paused"]
            assert "answered the probe with 503" in shown["paused"]
            upstream.down = False
            assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 13, timeout=30)
            assert health(service.url)["paused"] is None
    finally:
        upstream.close()


def test_a_round_waiting_on_one_users_retries_frees_its_other_users_at_once(ledger: Path) -> None:
    # Every event write of user "slow" fails, and is retried within its round for 10 s. Its
    # round took a page (10 events) with fast-0's and fast-1's first events too; their later
    # events, on the next pages, must not wait for that round to end.
    forced = (ForcedStatus("/users-by-id/slow/events/", 503, method="POST"),)
    with (
        serve_in_thread(SandboxOptions(api_key=API_KEY, forced=forced)) as sandbox,
        service_in_thread(
            options(ledger, sandbox, page=10, event_seconds=10.0, event_attempts=1000)
        ) as service,
    ):
        fast = [f"fast-{n}" for n in range(4)]
        batch = [identify("slow"), track("slow", 1)]
        batch += [
            event
            for user in fast
            for event in (identify(user), *(track(user, t) for t in range(1, 7)))
        ]
        assert post(service.url, "/v1/batch", {"batch": batch}).is_success

        def slow_still_retrying() -> bool:
            statuses = {r.key: str(r.status) for r in ledger_rows(ledger)}
            return statuses["acme:slow-track-1"] == "pending"

        expected = {user: list(range(1, 7)) for user in fast}
        assert wait_until(lambda: tracks_by_user(sandbox_state(sandbox)) == expected, timeout=9)
        # Before, fast-0's and fast-1's tracks past the first page waited for slow's 10 s.
        # Outcomes are filed just after their answers: wait for the filing, not only the writes.
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 1 + 4 * 7, timeout=2)
        assert slow_still_retrying()


class Heard(logging.Handler):
    """The service's log lines, as they are emitted."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def named(self, what: str) -> list[str]:
        return [line for line in self.lines if line.startswith(f"event={what} ")]


@pytest.fixture
def heard() -> Iterator[Heard]:
    logger, handler = logging.getLogger(LOGGER), Heard()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_an_outage_is_logged_when_a_probe_fails_and_when_it_ends_and_nothing_is_in_flight(
    sandbox: str, ledger: Path, heard: Heard
) -> None:
    upstream = Switchable(sandbox)
    try:
        with service_in_thread(options(ledger, upstream.url, max_outage=600.0)) as service:
            assert post(service.url, "/v1/identify", identify("u0")).status_code == 200
            assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 1)
            upstream.down = True
            batch = [identify(f"u{n}") for n in range(1, 13)]
            assert post(service.url, "/v1/batch", {"batch": batch}).status_code == 200
            assert wait_until(lambda: health(service.url)["paused"] is not None, timeout=20)
            assert wait_until(lambda: heard.named("delivery_outage"), timeout=5)
            shown = health(service.url)
            # Before: in_flight was 12 (every event handed to a round) though the lanes wait.
            assert shown["queued"] == 12
            assert shown["in_flight"] == 0
            assert shown["apps"][SUBDOMAIN]["in_flight"] == 0
            [outage] = heard.named("delivery_outage")  # once, not once per probe
            assert "answered the probe with 503" in outage
            assert not heard.named("delivery_outage_over")
            upstream.down = False
            assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 13, timeout=30)
            assert len(heard.named("delivery_outage_over")) == 1
            assert len(heard.named("delivery_outage")) == 1
    finally:
        upstream.close()
