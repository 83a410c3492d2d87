"""`usercom send` against poison values and repeated messageIds (issue 13 items 3, 4, 12):
the same event has the same outcome as in `usercom serve`.

In process: typer's CliRunner runs `send` against a sandbox in a thread (a loopback socket).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.delivery.ledger import Ledger
from pipeline.sandbox import SandboxOptions, serve_in_thread

API_KEY = "send-SECRET-key-5b7d9f1a3c5e7a9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7"
SUBDOMAIN = "acme"


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        yield url


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"apiKey": API_KEY, "appSubdomain": SUBDOMAIN}), encoding="utf-8")
    return path


def identify(user: str) -> str:
    return json.dumps({"type": "identify", "messageId": f"{user}-id", "userId": user})


def track(user: str, message_id: str, **properties: Any) -> str:
    event = {
        "type": "track",
        "messageId": message_id,
        "userId": user,
        "event": "Viewed",
        "properties": properties,
    }
    return json.dumps(event)


def send(
    sandbox: str, config: Path, lines: list[str], tmp_path: Path, *extra: str
) -> tuple[int, list[dict[str, Any]], str]:
    """Run `usercom send` on `lines`: its exit code, its outcomes (`--out`) and its stderr."""
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.unlink(missing_ok=True)
    args = ["send", str(events), "--config", str(config), "--base-url", sandbox, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, *extra])
    written = out.read_text(encoding="utf-8") if out.exists() else ""
    outcomes = [json.loads(line) for line in written.splitlines()]
    return result.exit_code, outcomes, result.output


def by_key(outcomes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {outcome["key"]: outcome for outcome in outcomes}


def tracks_stored(sandbox: str) -> list[Any]:
    state = httpx.get(f"{sandbox}/__sandbox__/state", timeout=10).json()
    return [event["data"] for event in state["events"]]


def test_send_rejects_a_number_it_cannot_hold_and_delivers_a_cut_emoji(
    sandbox: str, config: Path, tmp_path: Path
) -> None:
    lines = [
        identify("s1"),
        '{"type":"track","userId":"s1","event":"Big","messageId":"m-big",'
        '"properties":{"n":%s}}' % ("9" * 5000),
        '{"type":"track","userId":"s1","event":"Cut","messageId":"bad\\ud800id",'
        '"properties":{"note":"half \\ud83d an emoji"}}',
        '{"type":"track","userId":"s1","event":"Inf","messageId":"m-inf","properties":{"n":1e999}}',
        track("s1", "m-ok", n=1),
    ]
    code, outcomes, _ = send(sandbox, config, lines, tmp_path)
    assert code == 1
    found = by_key(outcomes)
    assert found[f"{SUBDOMAIN}:bad\\ud800id"]["status"] == "delivered"
    assert found[f"{SUBDOMAIN}:m-ok"]["status"] == "delivered"
    assert "properties.n is an integer of 5000 digits" in found[f"{SUBDOMAIN}:m-big"]["error"]
    assert "properties.n is a number out of range (1e999)" in found[f"{SUBDOMAIN}:m-inf"]["error"]
    assert {"note": "half \ud83d an emoji"} in tracks_stored(sandbox)


def test_a_repeated_message_id_with_other_content_is_rejected_and_a_rerun_sends_nothing(
    sandbox: str, config: Path, tmp_path: Path
) -> None:
    ledger = tmp_path / "send.sqlite"
    lines = [
        identify("r1"),
        track("r1", "m-dup", version=1),
        track("r1", "m-other", version=9),
        track("r1", "m-dup", version=2),
        track("r1", "m-dup", version=1),  # the first version again: one event
    ]
    code, outcomes, output = send(sandbox, config, lines, tmp_path, "--ledger", str(ledger))
    assert code == 1, output
    assert len(outcomes) == 4
    first = by_key(outcomes)[f"{SUBDOMAIN}:m-dup"]
    assert first["status"] == "delivered"
    (repeat,) = [o for o in outcomes if o["key"].startswith(f"{SUBDOMAIN}:m-dup#repeat-")]
    assert repeat["status"] == "rejected"
    assert repeat["error"] == (
        f"messageId repeated with other content at position {first['position']}"
    )
    assert "messageId repeated with other content" in output
    stored = [data for data in tracks_stored(sandbox) if "version" in data]
    assert sorted(data["version"] for data in stored) == [1, 9]
    for _ in range(2):  # a re-run of the unchanged file sends nothing, every time
        code, outcomes, output = send(sandbox, config, lines, tmp_path, "--ledger", str(ledger))
        assert code == 1, output  # the repeat is still rejected (earlier)
        assert outcomes == []
        assert "changed since last run" not in output
    assert len(tracks_stored(sandbox)) == 2


def test_without_a_ledger_the_later_version_is_rejected_too(
    sandbox: str, config: Path, tmp_path: Path
) -> None:
    lines = [identify("r2"), track("r2", "m-two", version=1), track("r2", "m-two", version=2)]
    code, outcomes, _ = send(sandbox, config, lines, tmp_path)
    assert code == 1
    found = by_key(outcomes)
    assert found[f"{SUBDOMAIN}:m-two"]["status"] == "delivered"
    (repeat,) = [o for o in outcomes if o["key"].startswith(f"{SUBDOMAIN}:m-two#repeat-")]
    assert repeat["error"] == "messageId repeated with other content at position 2"
    assert [data["version"] for data in tracks_stored(sandbox)] == [1]


def test_a_later_version_made_pending_again_is_still_rejected_as_a_repeat(
    sandbox: str, config: Path, tmp_path: Path
) -> None:
    ledger = tmp_path / "send.sqlite"
    lines = [identify("r3"), track("r3", "m-3", version=1), track("r3", "m-3", version=2)]
    send(sandbox, config, lines, tmp_path, "--ledger", str(ledger))
    with Ledger.open_writer(ledger, SUBDOMAIN) as book:
        (repeat,) = [row.key for row in book.rows() if "#repeat-" in row.key]
        assert book.requeue([repeat], rejected=True) == 1
    code, outcomes, _ = send(sandbox, config, lines, tmp_path, "--ledger", str(ledger))
    assert code == 1
    (again,) = outcomes
    assert again["key"] == repeat
    assert again["status"] == "rejected"
    assert again["error"].startswith("messageId repeated with other content at position ")
    assert [data["version"] for data in tracks_stored(sandbox)] == [1]


def test_without_a_ledger_an_event_read_twice_is_sent_once(
    sandbox: str, config: Path, tmp_path: Path
) -> None:
    unkeyed = json.dumps({"type": "track", "userId": "r4", "event": "Viewed", "properties": {}})
    lines = [identify("r4"), unkeyed, track("r4", "m-4", n=1), unkeyed, track("r4", "m-4", n=1)]
    code, outcomes, _ = send(sandbox, config, lines, tmp_path)
    assert code == 0
    assert [o["status"] for o in outcomes] == ["delivered"] * 3
    assert len(tracks_stored(sandbox)) == 2


REPEATS = [
    identify("r3"),
    "",  # a blank line: not an event, positions do not count it
    track("r3", "m-dup", version=1),
    track("r3", "m-other", version=9),
    track("r3", "m-dup", version=2),
    track("r3", "m-dup", version=1),  # the first version again: one event
]


def keyed(outcomes: list[dict[str, Any]]) -> list[tuple[str, str, str | None, int]]:
    planned = {"planned": "delivered"}  # a planned event is one a real run delivers here
    return sorted(
        (o["key"], planned.get(o["status"], o["status"]), o.get("error"), o["position"])
        for o in outcomes
    )


@pytest.mark.parametrize("flags", [("--dry-run",), ("--dry-run", "--live")], ids=str)
def test_a_dry_run_applies_the_repeat_rule_as_the_real_run_does(
    sandbox: str, config: Path, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    code, planned, output = send(sandbox, config, REPEATS, tmp_path, *flags)
    assert code == 1, output  # some can never be sent
    (repeat,) = [o for o in planned if o["key"].startswith(f"{SUBDOMAIN}:m-dup#repeat-")]
    assert repeat["status"] == "rejected"
    assert repeat["error"] == "messageId repeated with other content at position 2"
    code, sent, output = send(sandbox, config, REPEATS, tmp_path)
    assert code == 1, output
    assert keyed(planned) == keyed(sent)
