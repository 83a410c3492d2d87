"""The ledger through `usercom send`: finished events skipped on a re-run, unfinished ones
exported in position order and retried first, rejected ones kept apart (DELIVERY §2, §4).

The ledger itself (queue, positions, locking, foreign files) is tested in test_ledger_v2.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from e2e_helpers import (
    API_KEY,
    REAL_API,
    content_key,
    invoke_cli,
    key_of,
    lines_of,
    raw_key,
    read_outcomes,
    sandbox_state,
    table_value,
    track_occurrences,
    write_config,
    write_lines,
)

from pipeline.delivery import DeliveryOptions
from pipeline.delivery.ledger import Ledger, Row
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.sandbox.options import ForcedStatus


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


def rows(path: Path, keys: list[str]) -> dict[str, Row]:
    """The ledger's rows of `keys` (read-only), after checking it holds no other row."""
    with Ledger.open_reader(path) as ledger:
        assert sum(ledger.counts().values()) == len(keys)
        found = {key: ledger.get(key) for key in keys}
    assert all(row is not None for row in found.values()), found
    return {key: row for key, row in found.items() if row is not None}


def ledger_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def without_count(state: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in state.items() if name != "request_count"}


def test_a_rerun_with_the_same_ledger_skips_finished_events(tmp_path: Path) -> None:
    lines = lines_of(people_events(4))
    events = write_lines(tmp_path / "events.jsonl", lines)
    cfg = write_config(tmp_path / "config.json")
    ledger = tmp_path / "run.sqlite"
    with serve_in_thread(SandboxOptions(api_key=API_KEY, seed=31)) as url:
        send = ("send", events, "--config", cfg, "--base-url", url, "--ledger", ledger)
        first = invoke_cli(*send)
        after_first = sandbox_state(url)
        second = invoke_cli(*send)
        after_second = sandbox_state(url)

    assert first.returncode == 0, first.stdout + first.stderr
    assert table_value(first.stdout, "delivered") == str(len(lines))
    assert second.returncode == 0, second.stdout + second.stderr
    assert table_value(second.stdout, "skipped (delivered earlier)") == str(len(lines))
    assert table_value(second.stdout, "delivered") == "0"
    assert table_value(second.stdout, "events sent this run") == "0"
    assert table_value(second.stdout, "API calls") == "0"
    # Not a single request more than the probe every run starts with.
    assert without_count(after_second) == without_count(after_first)
    assert after_second["request_count"] == after_first["request_count"] + 1
    assert len(after_first["events"]) == 8

    keys = [key_of(json.loads(line)["messageId"]) for line in lines]
    recorded = rows(ledger, keys)
    for position, (key, line) in enumerate(zip(keys, lines, strict=True), start=1):
        row = recorded[key]
        assert (row.status, row.attempts, row.error, row.position) == (
            "delivered",
            1,
            None,
            position,
        )
        assert row.line == line.encode()  # the original line, kept for every status
        assert row.requests
        assert all(r.split(" ")[1].startswith(REAL_API) for r in row.requests)
    assert API_KEY.encode() not in ledger_bytes(ledger)
    assert API_KEY[8:40].encode() not in ledger_bytes(ledger)


def test_failed_events_are_exported_and_retried_on_a_rerun(tmp_path: Path) -> None:
    events = people_events(3)
    lines = lines_of(events)
    troubled = [line for line in lines if json.loads(line)["messageId"] in ("led-0-t0", "led-0-t1")]
    source = write_lines(tmp_path / "events.jsonl", lines)
    cfg = write_config(tmp_path / "config.json")
    ledger_path = tmp_path / "run.sqlite"
    first_out = tmp_path / "first.jsonl"
    attempts = DeliveryOptions().max_attempts

    # 1. User.com fails every request about led-0 for as long as one event's attempts last
    #    (the other users' answers are good, so this is no outage): led-0's first track ends
    #    failed and holds its second track, which is never attempted.
    trouble = ForcedStatus("/users-by-id/led-0/", 500, times=attempts)
    with serve_in_thread(SandboxOptions(api_key=API_KEY, forced=(trouble,), seed=32)) as url:
        send = ("send", source, "--config", cfg, "--base-url", url, "--ledger", ledger_path)
        first = invoke_cli(*send, "--out", first_out)
        assert first.returncode == 4, first.stdout + first.stderr
        assert table_value(first.stdout, "delivered") == "7"
        assert table_value(first.stdout, "failed") == "1"
        assert table_value(first.stdout, "held") == "1"
        assert {o["key"]: o["status"] for o in read_outcomes(first_out)} == {
            key_of(f"led-{n}-{suffix}"): "delivered" if n or suffix == "id" else status
            for n in range(3)
            for suffix, status in (("id", "delivered"), ("t0", "failed"), ("t1", "held"))
        }
        assert track_occurrences(sandbox_state(url)) == {
            (f"led-{n}", "Tick", i): 1 for n in (1, 2) for i in range(2)
        }

        recorded = rows(ledger_path, [key_of(json.loads(line)["messageId"]) for line in lines])
        failed = recorded[key_of("led-0-t0")]
        assert (failed.status, failed.attempts) == ("failed", attempts)  # retried, boundedly
        assert failed.requests == (f"POST {REAL_API}users-by-id/led-0/events/ -> 500",) * attempts
        assert failed.error is not None
        assert "500" in failed.error
        held = recorded[key_of("led-0-t1")]
        assert (held.status, held.attempts, held.requests) == ("held", 0, ())
        assert held.error is not None
        assert key_of("led-0-t0") in held.error
        for line in troubled:
            assert recorded[key_of(json.loads(line)["messageId"])].line == line.encode()
        assert API_KEY.encode() not in ledger_bytes(ledger_path)

        # 2. `usercom failed` exports exactly the unfinished input lines, byte for byte, in
        #    position order (the failed track before the track it holds), ready to replay.
        exported = invoke_cli("failed", ledger_path)
        assert exported.returncode == 0, exported.stderr
        assert exported.stdout.splitlines() == troubled
        out = tmp_path / "failed.jsonl"
        assert invoke_cli("failed", ledger_path, "--out", out).returncode == 0
        assert out.read_text().splitlines() == troubled
        assert invoke_cli("failed", ledger_path, "--rejected").stdout == ""

        # 3. User.com is well again (with the users it already had): a re-run retries only the
        #    unfinished events, the failed one first.
        before = sandbox_state(url)["request_count"]
        rerun = invoke_cli(*send, "--out", tmp_path / "rerun.jsonl")
        state = sandbox_state(url)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert table_value(rerun.stdout, "skipped (delivered earlier)") == "7"
    assert table_value(rerun.stdout, "delivered") == "2"
    retried = read_outcomes(tmp_path / "rerun.jsonl")
    assert [(o["key"], o["status"]) for o in retried] == [
        (key_of("led-0-t0"), "delivered"),
        (key_of("led-0-t1"), "delivered"),
    ]
    # Every call of the re-run, and its probe.
    assert state["request_count"] - before == int(table_value(rerun.stdout, "API calls")) + 1
    assert track_occurrences(state) == {
        (f"led-{n}", "Tick", i): 1 for n in range(3) for i in range(2)
    }
    with Ledger.open_reader(ledger_path) as ledger:
        assert ledger.counts()["delivered"] == len(lines)
    assert invoke_cli("failed", ledger_path).stdout == ""


def test_rejected_events_are_finished_and_not_sent_again(tmp_path: Path) -> None:
    screen = {"type": "screen", "userId": "x"}
    lines = [*lines_of(people_events(1)), "not json", json.dumps(screen)]
    events = write_lines(tmp_path / "events.jsonl", lines)
    cfg = write_config(tmp_path / "config.json")
    ledger = tmp_path / "run.sqlite"
    with serve_in_thread(SandboxOptions(seed=34)) as url:
        send = ("send", events, "--config", cfg, "--base-url", url, "--ledger", ledger)
        first = invoke_cli(*send)
        after_first = sandbox_state(url)
        second = invoke_cli(*send, "--out", tmp_path / "second.jsonl")
        after_second = sandbox_state(url)

    assert first.returncode == 1, first.stdout + first.stderr
    assert table_value(first.stdout, "delivered") == "3"
    assert table_value(first.stdout, "rejected") == "2"
    keys = [*(key_of(f"led-0-{m}") for m in ("id", "t0", "t1")), raw_key("not json")]
    keys.append(content_key(screen))
    recorded = rows(ledger, keys)
    unreadable, unsupported = recorded[raw_key("not json")], recorded[content_key(screen)]
    assert unreadable.status == unsupported.status == "rejected"
    assert (unreadable.position, unsupported.position) == (4, 5)
    assert unreadable.line == b"not json"  # the raw line is kept, for `failed --rejected`
    assert unreadable.error is not None
    assert unreadable.error.startswith("line is not JSON")
    assert unsupported.error == "Event type screen is not supported"
    assert unsupported.line == json.dumps(screen).encode()

    # Rejected events are final: a re-run skips them (and the delivered ones) without a call.
    assert second.returncode == 1, second.stdout + second.stderr  # some rejected, none to retry
    assert table_value(second.stdout, "skipped (delivered earlier)") == "3"
    assert table_value(second.stdout, "skipped (rejected earlier)") == "2"
    assert table_value(second.stdout, "API calls") == "0"
    assert without_count(after_second) == without_count(after_first)
    assert not (tmp_path / "second.jsonl").exists()  # no outcome: --out was never opened
    assert invoke_cli("failed", ledger).stdout == ""  # rejected events are not unfinished
    rejected = invoke_cli("failed", ledger, "--rejected")
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.splitlines() == ["not json", json.dumps(screen)]
