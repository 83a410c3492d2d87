"""The `usercom` command against a sandbox on a loopback port: in this process (typer's CliRunner),
but for the sandbox command, which runs as a real process until a signal stops it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import (
    API_KEY,
    EXAMPLES,
    RAW_CONFIG,
    REAL_API,
    content_key,
    invoke_cli,
    key_of,
    lines_of,
    mix_lines,
    raw_key,
    read_outcomes,
    sandbox_process,
    sandbox_state,
    table_value,
    track_occurrences,
    user_ids_by_custom_id,
    write_config,
    write_lines,
)

from pipeline.core.flows import DELIVERY
from pipeline.core.plan import Plan, plan
from pipeline.sandbox import SandboxOptions, serve_in_thread

VALID: list[dict[str, Any]] = [
    {"type": "identify", "messageId": "m-id", "userId": "cli-1", "traits": {"email": "c1@x.io"}},
    {
        "type": "track",
        "messageId": "m-track",
        "userId": "cli-1",
        "event": "Clicked",
        "properties": {"position": 7},
        "timestamp": "2024-05-01T10:00:00Z",
    },
    {
        "type": "page",
        "messageId": "m-page",
        "userId": "cli-1",
        "timestamp": "2024-05-01T10:00:05Z",
        "context": {"page": {"url": "https://x.io/a", "path": "/a"}},
    },
    {
        "type": "group",
        "messageId": "m-group",
        "userId": "cli-1",
        "groupId": "g-1",
        "traits": {"name": "G One"},
    },
]


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert API_KEY not in text
        assert API_KEY[8:40] not in text


def test_send_delivers_everything_exits_0_and_writes_one_outcome_per_event(
    tmp_path: Path,
) -> None:
    unkeyed = {"type": "track", "userId": "cli-1", "event": "No Id", "properties": {"position": 8}}
    # Line 5 is blank (skipped); the unkeyed event on line 6 is known by its content hash and
    # is the 5th event.
    lines = [*lines_of(VALID), "", json.dumps(unkeyed)]
    events = write_lines(tmp_path / "events.jsonl", lines)
    config = write_config(tmp_path / "config.json")
    out = tmp_path / "outcomes.jsonl"
    with serve_in_thread(SandboxOptions(api_key=API_KEY, seed=21)) as url:
        result = invoke_cli("send", events, "--config", config, "--base-url", url, "--out", out)
        state = sandbox_state(url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert table_value(result.stdout, "delivered") == "5"
    assert table_value(result.stdout, "rejected") == "0"
    assert table_value(result.stdout, "failed") == "0"
    assert table_value(result.stdout, "events sent this run") == "5"
    # The sandbox also answered the probe the run starts with (not an event's API call).
    assert int(table_value(result.stdout, "API calls")) == state["request_count"] - 1

    outcomes = read_outcomes(out)
    assert {o["key"]: o["position"] for o in outcomes} == {
        key_of("m-id"): 1,
        key_of("m-track"): 2,
        key_of("m-page"): 3,
        key_of("m-group"): 4,
        content_key(unkeyed): 5,
    }
    for outcome in outcomes:
        assert set(outcome) >= {"key", "status", "attempts", "requests", "error", "position"}
        assert (outcome["status"], outcome["attempts"]) == ("delivered", 1)
        assert outcome["error"] is None
        assert outcome["requests"]
        for request in outcome["requests"]:
            assert request.split(" ")[1].startswith(REAL_API), request
            assert url not in request
    track = next(o for o in outcomes if o["key"] == key_of("m-track"))
    # A user named by userId: one write to its own event route, no lookup (DELIVERY §3).
    assert track["requests"] == [f"POST {REAL_API}users-by-id/cli-1/events/ -> 201"]

    ids = user_ids_by_custom_id(state)
    assert list(ids) == ["cli-1"]
    assert track_occurrences(state) == {("cli-1", "Clicked", 7): 1, ("cli-1", "No Id", 8): 1}
    assert [(v["page_path"], v["timestamp"]) for v in state["site_views"]] == [
        ("/a", "2024-05-01T10:00:05Z")
    ]
    assert [(c["custom_id"], c["employees"]) for c in state["companies"]] == [
        ("g-1", [ids["cli-1"]])
    ]
    assert_no_key(result.stdout, result.stderr, out.read_text())


def test_malformed_lines_become_rejected_outcomes_and_never_stop_the_run(tmp_path: Path) -> None:
    lines = [
        "this is not json",  # 1
        json.dumps(VALID[0]),  # 2
        "[1, 2, 3]",  # 3
        '"a string"',  # 4
        json.dumps({"type": "screen", "messageId": "m-screen", "userId": "cli-1", "name": "Home"}),
        json.dumps({"type": "track", "messageId": "m-anon", "event": "Clicked"}),  # no user at all
        json.dumps({"type": "identify", "messageId": "m-noid", "traits": {"email": "z@x.io"}}),
        json.dumps({"messageId": "m-notype", "userId": "cli-1"}),
        '{"type": "track", "userId": "cli-1", "event": "Cut',  # 9: truncated
        *lines_of(VALID[1:]),  # 10-12
    ]
    events = write_lines(tmp_path / "events.jsonl", lines)
    config = write_config(tmp_path / "config.json")
    out = tmp_path / "outcomes.jsonl"
    with serve_in_thread(SandboxOptions(seed=22)) as url:
        result = invoke_cli("send", events, "--config", config, "--base-url", url, "--out", out)
        state = sandbox_state(url)

    assert result.returncode == 1, result.stdout + result.stderr
    assert table_value(result.stdout, "delivered") == "4"
    assert table_value(result.stdout, "rejected") == "8"
    filed = read_outcomes(out)
    assert sorted(o["position"] for o in filed) == list(range(1, len(lines) + 1))
    outcomes = {o["position"]: o for o in filed}
    # A line that is no event is keyed by its raw bytes; an event by its messageId.
    for position in (1, 3, 4, 9):
        assert outcomes[position]["key"] == raw_key(lines[position - 1])
    for position in range(5, 9):
        assert outcomes[position]["key"] == key_of(json.loads(lines[position - 1])["messageId"])
    rejected = {n: o["error"] for n, o in outcomes.items() if o["status"] == "rejected"}
    assert rejected.pop(1).startswith("line is not JSON: Expecting value")
    assert rejected.pop(9).startswith("line is not JSON: ")
    assert rejected == {
        3: "line is not a JSON object",
        4: "line is not a JSON object",
        5: "Event type screen is not supported",  # m-screen
        6: "Default lookup field : email value is empty",  # m-anon
        7: 'Missing required value from "userId"',  # m-noid
        8: "Event type is required",  # m-notype
    }
    for position in (1, 3, 4, 9):
        assert outcomes[position]["attempts"] == 0  # never attempted: the line could not be read
    for position in range(1, 10):
        if position != 2:
            assert outcomes[position]["requests"] == []  # rejected before any request
    delivered = sorted(o["key"] for o in outcomes.values() if o["status"] == "delivered")
    assert delivered == sorted(key_of(m) for m in ("m-id", "m-track", "m-page", "m-group"))
    # The valid events after the bad lines all landed.
    assert len(state["users"]) == 1
    assert len(state["events"]) == len(state["site_views"]) == len(state["companies"]) == 1


def test_stdin_input_and_exit_code_1_when_an_event_is_rejected_by_user_com(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json")
    orphan = {"type": "track", "messageId": "orphan", "userId": "nobody", "event": "E"}
    stdin = "".join(line + "\n" for line in [*lines_of(VALID[:2]), json.dumps(orphan)])
    with serve_in_thread(SandboxOptions(seed=23)) as url:
        result = invoke_cli(
            "send", "-", "--config", config, "--base-url", url, "--out", "-", stdin=stdin
        )
        state = sandbox_state(url)

    assert result.returncode == 1, result.stderr
    outcomes = {o["key"]: o for o in map(json.loads, result.stdout.splitlines())}
    assert len(outcomes) == 3
    assert outcomes[key_of("m-id")]["status"] == "delivered"
    assert outcomes[key_of("m-track")]["status"] == "delivered"
    orphan_outcome = outcomes[key_of("orphan")]
    assert (orphan_outcome["status"], orphan_outcome["position"]) == ("rejected", 3)
    # The user's event route answers 404: the lookup decides, and finds no user.
    assert orphan_outcome["requests"] == [
        f"POST {REAL_API}users-by-id/nobody/events/ -> 404",
        f"GET {REAL_API}users-by-id/nobody/ -> 404",
    ]
    assert "No user found" in orphan_outcome["error"]
    # With --out -, the summary goes to stderr so stdout stays pure JSONL.
    assert table_value(result.stderr, "rejected") == "1"
    assert len(state["events"]) == 1


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        (None, "cannot read config"),
        ("{not json", "is not valid JSON (line 1 column 2)"),
        (json.dumps([1, 2]), "Destination config must be an object"),
        (json.dumps({**RAW_CONFIG, "apiKey": ""}), "API Key is required"),
        (json.dumps({"appSubdomain": "acme"}), "API Key is required"),
        (json.dumps({**RAW_CONFIG, "appSubdomain": None}), "App Subdomain is required"),
        (
            json.dumps({**RAW_CONFIG, "appSubdomain": "evil.com/x"}),
            "not a valid User.com subdomain",
        ),
        (json.dumps({**RAW_CONFIG, "appSubdomain": "acme.user.com.evil.io"}), "not a valid"),
        (json.dumps({"Config": {**RAW_CONFIG, "appSubdomain": "a@b"}}), "not a valid"),
    ],
)
def test_config_errors_exit_2_without_any_request(
    tmp_path: Path, config_text: str | None, message: str
) -> None:
    events = write_lines(tmp_path / "events.jsonl", lines_of(VALID))
    config = tmp_path / "config.json"
    if config_text is not None:
        config.write_text(config_text, encoding="utf-8")
    with serve_in_thread(SandboxOptions(seed=24)) as url:
        result = invoke_cli("send", events, "--config", config, "--base-url", url)
        state = sandbox_state(url)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "error:" in result.stderr
    assert message in " ".join(result.stderr.split())
    assert state["request_count"] == 0
    assert_no_key(result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("events file missing", ("EVENTS file not found", "nope.jsonl")),
        ("events file missing, dry run", ("EVENTS file not found", "nope.jsonl")),
        ("events path is a directory", ("EVENTS is a folder, not a file",)),
        ("out in a missing directory", ("--out's folder does not exist", "missing-dir")),
        ("ledger in a missing directory", ("--ledger's folder does not exist", "missing-dir")),
        ("failed on a file that is no ledger", ("notes.txt is not a ledger", "left untouched")),
    ],
)
def test_unusable_paths_are_usage_errors_exit_2(
    tmp_path: Path, case: str, message: tuple[str, ...]
) -> None:
    config = write_config(tmp_path / "config.json")
    events = write_lines(tmp_path / "events.jsonl", lines_of(VALID))
    nowhere = tmp_path / "missing-dir"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 100)
    args: dict[str, tuple[str | Path, ...]] = {
        "events file missing": ("send", tmp_path / "nope.jsonl", "--config", config),
        "events file missing, dry run": (
            "send",
            tmp_path / "nope.jsonl",
            "--config",
            config,
            "--dry-run",
        ),
        "events path is a directory": ("send", tmp_path, "--config", config, "--dry-run"),
        "out in a missing directory": (
            "send",
            events,
            "--config",
            config,
            "--dry-run",
            "--out",
            nowhere / "x.jsonl",
        ),
        "ledger in a missing directory": (
            "send",
            events,
            "--config",
            config,
            "--dry-run",
            "--ledger",
            nowhere / "run.sqlite",
        ),
        "failed on a file that is no ledger": ("failed", notes),
    }
    result = invoke_cli(*args[case])
    assert "Traceback" not in result.stderr, result.stderr[-400:]
    assert result.returncode == 2, result.stderr[-400:]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line
    assert result.stderr.startswith("error: ")
    for fragment in message:
        assert fragment in result.stderr
    assert notes.read_text() == "not a database\n" * 100  # never altered


def test_other_usage_errors_exit_2(tmp_path: Path) -> None:
    no_config_option = invoke_cli("send", tmp_path / "nope.jsonl")
    assert no_config_option.returncode == 2
    missing_ledger = invoke_cli("failed", tmp_path / "nope.sqlite")
    assert missing_ledger.returncode == 2
    assert "no ledger" in missing_ledger.stderr


def test_dry_run_makes_no_request_and_reports_planned_events(tmp_path: Path) -> None:
    lines = [*mix_lines(5), "not json"]  # 46 events + 1 bad line
    events = write_lines(tmp_path / "events.jsonl", lines)
    config = write_config(tmp_path / "config.json")
    out = tmp_path / "plan.jsonl"
    with serve_in_thread(SandboxOptions(seed=25)) as url:
        result = invoke_cli(
            "send", events, "--config", config, "--base-url", url, "--dry-run", "--out", out
        )
        state = sandbox_state(url)

    assert state["request_count"] == 0
    assert state["users"] == state["events"] == []
    assert result.returncode == 1, result.stdout + result.stderr  # the bad line is rejected
    assert "dry run" in result.stdout
    assert table_value(result.stdout, "planned") == "46"
    assert table_value(result.stdout, "rejected") == "1"
    assert table_value(result.stdout, "API calls") == "0"
    assert table_value(result.stdout, "events sent this run") == "0"
    outcomes = read_outcomes(out)
    assert [o["status"] for o in outcomes] == ["planned"] * 46 + ["rejected"]
    assert [o["key"] for o in outcomes] == [
        *(key_of(json.loads(line)["messageId"]) for line in lines[:46]),
        raw_key("not json"),
    ]
    assert [o["position"] for o in outcomes] == list(range(1, 48))
    # Each planned outcome carries the requests plan() shows for it; none was made.
    for line, outcome in zip(lines, outcomes[:46], strict=False):
        item = {"message": json.loads(line), "destination": {"Config": RAW_CONFIG}}
        shown = plan(item, DELIVERY)
        assert isinstance(shown, Plan), shown
        assert outcome["requests"] == [step.strip() for step in shown.lines]
        assert outcome["requests"][0].split(" ")[0] in ("GET", "POST", "PUT")
    assert outcomes[46]["requests"] == []
    assert_no_key(result.stdout, result.stderr, out.read_text())


def test_demo_exits_0_and_prints_the_summary_and_sandbox_tables() -> None:
    result = invoke_cli("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "usercom demo" in out
    assert table_value(out, "delivered") == "92"
    assert table_value(out, "rejected") == "0"
    assert table_value(out, "users") == "10"
    assert table_value(out, "companies") == "2"
    assert table_value(out, "events sent this run") == "92"  # summary
    assert table_value(out, "events") == "60"  # sandbox totals: the tracks
    assert table_value(out, "site_views") == "20"
    # The sandbox counted every call and the probe the run starts with (not an event's call).
    assert int(table_value(out, "requests received")) == int(table_value(out, "API calls")) + 1
    assert "sandbox users (10)" in out
    assert "sandbox companies (2)" in out
    assert "sandbox totals" in out
    assert "user-0001+test@example.com" in out
    examples_key = json.loads((EXAMPLES / "config.json").read_text())["apiKey"]
    assert examples_key not in out + result.stderr


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ((), ["send", "sandbox", "demo", "failed"]),
        (
            ("send",),
            ["--config", "--base-url", "--ledger", "--concurrency", "--rate", "--out", "--dry-run"],
        ),
        (
            ("sandbox",),
            [
                "--port",
                "--latency-ms",
                "--error-rate",
                "--throttle-rate",
                "--drop-rate",
                "--lost-response-rate",
                "--rate-limit",
                "--seed",
            ],
        ),
        (("demo",), ["--events", "--config"]),
        (("failed",), ["ledger", "--out"]),
    ],
)
def test_help_of_each_subcommand(command: tuple[str, ...], mentions: list[str]) -> None:
    result = invoke_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    for word in mentions:
        assert word in result.stdout


def test_sandbox_command_serves_faults_and_its_state(tmp_path: Path) -> None:
    with sandbox_process("--throttle-rate", "1", "--seed", "1", log=tmp_path / "log") as url:
        throttled = httpx.get(
            f"{url}/api/public/users-by-id/x/", headers={"Authorization": "Token t"}, timeout=10
        )
        state = sandbox_state(url)
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    assert state == {
        "users": [],
        "companies": [],
        "events": [],
        "site_views": [],
        "request_count": 1,
    }
