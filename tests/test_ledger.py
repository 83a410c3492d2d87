"""The SQLite run ledger: finished events skipped on a re-run, failed ones retried and exported."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from e2e_helpers import (
    API_KEY,
    REAL_API,
    config,
    deliver_lines,
    lines_of,
    run_cli,
    sandbox_state,
    table_value,
    track_occurrences,
    write_config,
    write_lines,
)

from pipeline.delivery import DeliveryOptions, Incoming, Outcome, deliver, read_jsonl
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.loop import run as run_loop
from pipeline.sandbox import SandboxOptions, serve_in_thread


def people_events(users: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n in range(users):
        user = f"led-{n}"
        events.append({"type": "identify", "messageId": f"{user}-id", "userId": user})
        events.extend(
            {
                "type": "track",
                "messageId": f"{user}-t{i}",
                "userId": user,
                "event": "Tick",
                "properties": {"position": i},
            }
            for i in range(2)
        )
    return events


def rows(path: Path) -> dict[str, tuple[str, int, list[str], str | None, str | None]]:
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT key, status, attempts, requests, error, line FROM events")
        return {key: (s, a, json.loads(r), e, line) for key, s, a, r, e, line in found}


def ledger_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_ledger_records_outcomes_and_knows_what_is_finished(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.record(Outcome("a", "delivered", 1, ("POST u -> 201",)), '{"a": 1}')
        ledger.record(Outcome("b", "rejected", 1, (), "bad event"), '{"b": 1}')
        ledger.record(Outcome("d", "failed", 3, ("POST u -> 503",) * 3, "down"), '{"d": 1}')
        ledger.record(Outcome("c", "failed", 2, ("POST u -> 500",) * 2, "down"), '{"c": 1}')
    with Ledger(path) as ledger:  # reopened: everything was committed
        assert ledger.finished("a")
        assert ledger.finished("b")
        assert not ledger.finished("c")
        assert not ledger.finished("missing")
        assert ledger.counts() == {"delivered": 1, "rejected": 1, "failed": 2}
        assert list(ledger.failed_lines()) == ['{"c": 1}', '{"d": 1}']
        # A later outcome replaces the row of the same key.
        ledger.record(Outcome("c", "delivered", 1, ("POST u -> 201",)), '{"c": 1}')
        assert ledger.finished("c")
        assert list(ledger.failed_lines()) == ['{"d": 1}']
    assert rows(path)["a"] == ("delivered", 1, ["POST u -> 201"], None, None)
    assert rows(path)["d"] == ("failed", 3, ["POST u -> 503"] * 3, "down", '{"d": 1}')


def test_a_rerun_with_the_same_ledger_skips_finished_events(tmp_path: Path) -> None:
    lines = lines_of(people_events(4))
    events = write_lines(tmp_path / "events.jsonl", lines)
    cfg = write_config(tmp_path / "config.json")
    ledger = tmp_path / "run.sqlite"
    with serve_in_thread(SandboxOptions(api_key=API_KEY, seed=31)) as url:
        send = ("send", events, "--config", cfg, "--base-url", url, "--ledger", ledger)
        first = run_cli(*send)
        after_first = sandbox_state(url)
        second = run_cli(*send)
        after_second = sandbox_state(url)

    assert first.returncode == 0, first.stdout + first.stderr
    assert table_value(first.stdout, "delivered") == str(len(lines))
    assert second.returncode == 0, second.stdout + second.stderr
    assert table_value(second.stdout, "skipped") == str(len(lines))
    assert table_value(second.stdout, "delivered") == "0"
    assert table_value(second.stdout, "API calls") == "0"
    assert after_second == after_first  # not a single request more
    assert len(after_first["events"]) == 8

    recorded = rows(ledger)
    assert set(recorded) == {json.loads(line)["messageId"] for line in lines}
    for status, attempts, requests, error, line in recorded.values():
        assert (status, attempts, error, line) == ("delivered", 1, None, None)
        assert requests
        assert all(r.split(" ")[1].startswith(REAL_API) for r in requests)
    assert API_KEY.encode() not in ledger_bytes(ledger)
    assert API_KEY[8:40].encode() not in ledger_bytes(ledger)


def test_failed_events_are_exported_and_retried_on_a_rerun(tmp_path: Path) -> None:
    events = people_events(3)
    lines = lines_of(events)
    identifies = [line for line in lines if json.loads(line)["type"] == "identify"]
    tracks = [line for line in lines if json.loads(line)["type"] == "track"]
    ledger_path = tmp_path / "run.sqlite"
    options = DeliveryOptions(concurrency=4, max_attempts=2, backoff_initial=0.01, backoff_max=0.02)

    # 1. User.com fails every event write: the tracks exhaust their attempts.
    outage = SandboxOptions(api_key=API_KEY, forced_status={"events-create": 500}, seed=32)
    with serve_in_thread(outage) as url, Ledger(ledger_path) as ledger:

        def record(incoming: Incoming, outcome: Outcome) -> None:
            ledger.record(outcome, incoming.line)

        opts = DeliveryOptions(
            concurrency=options.concurrency,
            max_attempts=options.max_attempts,
            backoff_initial=options.backoff_initial,
            backoff_max=options.backoff_max,
            base_url=url,
        )
        summary = run_loop(deliver(read_jsonl(lines, config()), config(), opts, record))
        assert sandbox_state(url)["events"] == []
    assert summary.counts == {"delivered": 3, "failed": 6}

    recorded = rows(ledger_path)
    for line in tracks:
        status, attempts, requests, error, kept = recorded[json.loads(line)["messageId"]]
        assert (status, attempts) == ("failed", 2)
        assert requests == [f"POST {REAL_API}events/ -> 500"] * 2
        assert error is not None
        assert "500" in error
        assert kept == line
    assert API_KEY.encode() not in ledger_bytes(ledger_path)

    # 2. `usercom failed` exports exactly the failed input lines, ready to replay.
    exported = run_cli("failed", ledger_path)
    assert exported.returncode == 0, exported.stderr
    assert sorted(exported.stdout.splitlines()) == sorted(tracks)
    out = tmp_path / "failed.jsonl"
    assert run_cli("failed", ledger_path, "--out", out).returncode == 0
    assert sorted(out.read_text().splitlines()) == sorted(tracks)

    # 3. User.com is back (with the users it already had): a re-run retries only the failed.
    cfg = write_config(tmp_path / "config.json")
    source = write_lines(tmp_path / "events.jsonl", lines)
    with serve_in_thread(SandboxOptions(api_key=API_KEY, seed=33)) as url:
        assert deliver_lines(identifies, url).statuses() == {"delivered": 3}
        before = sandbox_state(url)["request_count"]
        rerun = run_cli(
            "send",
            source,
            "--config",
            cfg,
            "--base-url",
            url,
            "--ledger",
            ledger_path,
            "--out",
            tmp_path / "rerun.jsonl",
        )
        state = sandbox_state(url)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert table_value(rerun.stdout, "skipped") == "3"
    assert table_value(rerun.stdout, "delivered") == "6"
    retried = {
        o["key"] for o in map(json.loads, (tmp_path / "rerun.jsonl").read_text().splitlines())
    }
    assert retried == {json.loads(line)["messageId"] for line in tracks}
    assert state["request_count"] - before == int(table_value(rerun.stdout, "API calls"))
    assert track_occurrences(state) == {
        (f"led-{n}", "Tick", i): 1 for n in range(3) for i in range(2)
    }
    assert {status for status, *_ in rows(ledger_path).values()} == {"delivered"}
    assert run_cli("failed", ledger_path).stdout == ""


def test_rejected_events_are_finished_and_not_sent_again(tmp_path: Path) -> None:
    lines = [*lines_of(people_events(1)), "not json", json.dumps({"type": "screen", "userId": "x"})]
    events = write_lines(tmp_path / "events.jsonl", lines)
    cfg = write_config(tmp_path / "config.json")
    ledger = tmp_path / "run.sqlite"
    with serve_in_thread(SandboxOptions(seed=34)) as url:
        send = ("send", events, "--config", cfg, "--base-url", url, "--ledger", ledger)
        first = run_cli(*send)
        second = run_cli(*send, "--out", tmp_path / "second.jsonl")

    assert first.returncode == 1
    assert table_value(first.stdout, "rejected") == "2"
    recorded = rows(ledger)
    assert recorded["#4"][0] == recorded["#5"][0] == "rejected"
    assert recorded["#4"][4] == "not json"  # the raw line is kept for anything not delivered
    assert recorded["#5"][3] == "Event type screen is not supported"
    assert table_value(second.stdout, "skipped") == str(len(lines))
    assert (tmp_path / "second.jsonl").read_text() == ""
    assert run_cli("failed", ledger).stdout == ""  # rejected events are not "failed"
