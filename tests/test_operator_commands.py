"""The operator's commands (DELIVERY §4) end to end, in this process over real loopback sockets:
`usercom explain` and `usercom report` read a ledger a real run wrote; `usercom send --dry-run
--live` makes reads only and says per event what a real run would do. Only the commands that
meet another process's lock run as processes of their own."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from e2e_helpers import (
    API_KEY,
    RAW_CONFIG,
    SUBDOMAIN,
    Finished,
    invoke_cli,
    lines_of,
    read_outcomes,
    run_cli,
    sandbox_state,
    table_value,
    user_ids_by_custom_id,
    write_config,
    write_lines,
)

from pipeline.core import messages
from pipeline.delivery.ledger import Ledger
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.sandbox.options import ForcedStatus

PAGE = {
    "type": "page",
    "userId": "u0",
    "messageId": "p0",
    "properties": {"url": "https://shop.example/a", "path": "/a"},
    "timestamp": "2024-05-01T10:00:00Z",
}
BAD_BYTES = b'\xff\xfe{"type": "track"}'


def seed_events() -> list[dict[str, Any]]:
    return [
        {"type": "identify", "userId": "u0", "messageId": "i0", "traits": {"email": "u0@x.io"}},
        {"type": "identify", "userId": "u1", "messageId": "i1", "traits": {"email": "u1@x.io"}},
        {"type": "track", "userId": "u0", "event": "Paid", "messageId": "t0"},  # forced 400
        {"type": "track", "userId": "u1", "event": "Paid", "messageId": "t1"},
        {"type": "track", "userId": "u1", "messageId": "bad"},  # no event name
    ]


def write_seed(path: Path) -> Path:
    """The seed events, then a line that is not UTF-8."""
    lines = [line.encode() for line in lines_of(seed_events())]
    path.write_bytes(b"\n".join([*lines, BAD_BYTES]) + b"\n")
    return path


def key(message_id: str) -> str:
    return f"{SUBDOMAIN}:{message_id}"


# The track route delivery uses may be POST /events/ or POST /users-by-id/<cid>/events/:
# the first event write is refused either way (400: its content), once.
REJECT_ONE_TRACK = (
    ForcedStatus("/events/", 400, method="POST", times=1),
    ForcedStatus("/users-by-id/", 400, method="POST", times=1),
    ForcedStatus("/site-views/", 401, method="POST"),
)


def run_seed(tmp_path: Path) -> Path:
    """`usercom send` of the seed with a ledger (3 delivered, 3 rejected), then a second run
    whose page meets a refused key: the run stops, the page stays pending (exit 3)."""
    ledger = tmp_path / "run.sqlite"
    events = write_seed(tmp_path / "seed.jsonl")
    config = write_config(tmp_path / "config.json")
    with serve_in_thread(SandboxOptions(api_key=API_KEY, forced=REJECT_ONE_TRACK)) as url:
        first = invoke_cli(
            "send", events, "--config", config, "--base-url", url, "--ledger", ledger
        )
        assert first.returncode == 1, first.stdout + first.stderr
        page = write_lines(tmp_path / "page.jsonl", lines_of([PAGE]))
        second = invoke_cli("send", page, "--config", config, "--base-url", url, "--ledger", ledger)
        assert second.returncode == 3, second.stdout + second.stderr
    return ledger


def one_line_error(result: Finished) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_report_sums_up_the_ledger_and_says_what_to_do(tmp_path: Path) -> None:
    ledger = run_seed(tmp_path)
    result = invoke_cli("report", ledger, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["app"] == SUBDOMAIN
    assert report["counts"] == {
        "pending": 1,
        "delivered": 3,
        "rejected": 3,
        "failed": 0,
        "held": 0,
    }
    assert report["events"] == 7
    errors = {row["error"]: row["count"] for row in report["errors"]}
    assert errors[messages.EVENT_REQUIRED] == 1
    assert any(error.startswith("line is not UTF-8") for error in errors)
    assert any("(400" in error for error in errors), errors
    # API calls per endpoint template and answer: no ids, no origin, no query values.
    calls = {(c["method"], c["endpoint"], c["answer"]): c["count"] for c in report["calls"]}
    assert sum(calls.values()) == report["api_calls"] > 0
    for method, endpoint, _ in calls:
        assert endpoint.startswith("/"), endpoint
        assert "u0" not in endpoint
        assert "u1" not in endpoint
        assert "@" not in endpoint
        assert method in ("GET", "POST", "PUT")
    assert ("POST", "/site-views/", "401") in calls
    assert sum(n for (m, _, a), n in calls.items() if m == "POST" and a == "400") == 1
    assert report["oldest_unfinished"] == {"key": key("p0"), "position": 7, "status": "pending"}
    advice = " ".join(report["next"])
    assert "1 unfinished" in advice
    assert f"--ledger {ledger}" in advice
    assert f"usercom failed {ledger}" in advice
    assert "3 rejected" in advice
    assert "--rejected" in advice

    shown = invoke_cli("report", ledger)
    assert shown.returncode == 0, shown.stderr
    assert table_value(shown.stdout, "delivered") == "3"
    assert table_value(shown.stdout, "pending") == "1"
    assert table_value(shown.stdout, "oldest unfinished") == "position 7 (pending)"
    assert "next: 1 unfinished" in shown.stdout
    assert "most common errors" in shown.stdout


def test_explain_tells_one_events_story_with_or_without_the_app_prefix(tmp_path: Path) -> None:
    ledger = run_seed(tmp_path)
    bare = invoke_cli("explain", "t0", "--ledger", ledger)
    full = invoke_cli("explain", key("t0"), "--ledger", ledger)
    assert bare.returncode == full.returncode == 0, bare.stderr + full.stderr
    assert bare.stdout == full.stdout
    text = bare.stdout
    assert f"event     {key('t0')}" in text
    assert "status    rejected" in text
    assert "position  3" in text
    assert "attempts  1" in text
    assert "-> 400  (content refused)" in text
    assert "https://acme.user.com/api/public/" in text  # the real URL, not the sandbox's
    assert API_KEY not in text
    assert '"messageId": "t0"' in text  # the original line
    assert "next      fix the event" in text

    story = json.loads(invoke_cli("explain", "t0", "--ledger", ledger, "--json").stdout)
    assert story["key"] == key("t0")
    assert story["status"] == "rejected"
    assert story["position"] == 3
    assert any(r.endswith("-> 400") for r in story["requests"])
    assert "(400" in story["error"]
    assert json.loads(story["line"])["messageId"] == "t0"

    # The pending page: the run stopped on it; its requests and the way to resume.
    page = invoke_cli("explain", "p0", "--ledger", ledger)
    assert "status    pending" in page.stdout
    assert "-> 401  (key refused)" in page.stdout
    assert f"--ledger {ledger}" in page.stdout


def test_explain_shows_an_unreadable_line_decoded_with_replacement(tmp_path: Path) -> None:
    ledger = run_seed(tmp_path)
    digest = hashlib.sha256(BAD_BYTES).hexdigest()
    result = invoke_cli("explain", f"sha256:{digest[:12]}", "--ledger", ledger)  # a unique prefix
    assert result.returncode == 0, result.stderr
    assert f"event     {key('sha256:' + digest)}" in result.stdout
    assert 'line      \ufffd\ufffd{"type": "track"}' in result.stdout
    assert "error     line is not UTF-8" in result.stdout


def test_explain_of_an_unknown_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    ledger = run_seed(tmp_path)
    line = one_line_error(invoke_cli("explain", "nope", "--ledger", ledger))
    assert "'nope'" in line
    assert f"usercom failed {ledger}" in line
    assert f"usercom report {ledger}" in line
    ambiguous = one_line_error(invoke_cli("explain", "i", "--ledger", ledger))
    assert "give more of it" in ambiguous


def test_report_and_explain_read_while_a_writer_holds_the_ledger(tmp_path: Path) -> None:
    ledger = run_seed(tmp_path)
    # A lock another process holds: the commands run as processes of their own.
    with Ledger.open_writer(ledger, SUBDOMAIN):  # holds the writer lock, as a running send does
        busy = run_cli("send", tmp_path / "seed.jsonl", "--config", tmp_path / "config.json",
                       "--ledger", ledger)  # fmt: skip
        assert busy.returncode == 2
        assert "in use" in busy.stderr
        report = run_cli("report", ledger, "--json")
        story = run_cli("explain", "t1", "--ledger", ledger)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["counts"]["delivered"] == 3
    assert story.returncode == 0, story.stderr
    assert "status    delivered" in story.stdout


def test_report_and_explain_refuse_what_is_not_a_ledger(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    assert "not a ledger" in one_line_error(invoke_cli("report", other))
    assert "not a ledger" in one_line_error(invoke_cli("explain", "k", "--ledger", other))
    assert "does not exist" in one_line_error(invoke_cli("report", tmp_path / "missing.sqlite"))
    assert other.read_text() == "hello\n"


# -- send --dry-run --live --------------------------------------------------------------------


def seed_sandbox(tmp_path: Path, url: str, config: Path) -> None:
    seed = [
        {"type": "identify", "userId": "u1", "traits": {"email": "u1@x.io"}},
        {"type": "identify", "userId": "u2", "traits": {"email": "u2@x.io"}},
        {"type": "group", "userId": "u2", "groupId": "g-old", "traits": {"name": "Old"}},
    ]
    sent = invoke_cli(
        "send", write_lines(tmp_path / "seed.jsonl", lines_of(seed)), "--config", config,
        "--base-url", url,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr


def dry_events() -> list[dict[str, Any]]:
    def track(user: str, mid: str) -> dict[str, Any]:
        return {"type": "track", "userId": user, "event": "Paid", "messageId": mid}

    return [
        {"type": "identify", "userId": "u1", "messageId": "d1", "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "u9", "messageId": "d2", "traits": {"email": "u9@x.io"}},
        track("u1", "d3"),
        track("u8", "d4"),  # nobody
        track("u9", "d5"),  # created by d2 in a real run
        {**PAGE, "userId": "u2", "messageId": "d6"},
        {"type": "group", "userId": "u1", "groupId": "g-new", "traits": {"name": "New"},
         "messageId": "d7"},
        {"type": "group", "userId": "u2", "groupId": "g-old", "traits": {"name": "Old"},
         "messageId": "d8"},
        {"type": "group", "userId": "u8", "groupId": "g-old", "traits": {"name": "Old"},
         "messageId": "d9"},
        {"type": "track", "userId": "u1", "messageId": "d10"},  # invalid: no event name
    ]  # fmt: skip


def test_dry_run_live_reads_only_and_says_what_a_real_run_would_do(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json")
    events = write_lines(tmp_path / "dry.jsonl", lines_of(dry_events()))
    out = tmp_path / "out.jsonl"
    ledger = tmp_path / "never.sqlite"
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        seed_sandbox(tmp_path, url, config)
        before = sandbox_state(url)
        result = invoke_cli(
            "send", events, "--config", config, "--base-url", url, "--dry-run", "--live",
            "--out", out, "--ledger", ledger,
        )  # fmt: skip
        after = sandbox_state(url)
    assert result.returncode == 1, result.stdout + result.stderr  # d10 can never be sent
    outcomes = {row["key"]: row for row in read_outcomes(out)}
    would = {k.removeprefix(f"{SUBDOMAIN}:"): row["would"] for k, row in outcomes.items()}
    ids = user_ids_by_custom_id(before)
    old_company = next(c["id"] for c in before["companies"] if c["custom_id"] == "g-old")
    assert would == {
        "d1": f"would update user {ids['u1']}",
        "d2": "would create the user",
        "d3": "would record the event",
        "d4": f"would fail: {messages.TRACK_NOT_FOUND}",
        "d5": "would record the event (after position 2 creates the user)",
        "d6": "would record the page view",
        "d7": "would create the company and add the user to it",
        "d8": f"would update company {old_company} and add the user to it",
        "d9": f"would fail: {messages.GROUP_USER_NOT_FOUND}",
        "d10": f"would fail: {messages.EVENT_REQUIRED}",
    }
    assert {row["status"] for k, row in outcomes.items() if k != key("d10")} == {"planned"}
    assert outcomes[key("d10")]["status"] == "rejected"
    assert outcomes[key("d4")]["error"] == messages.TRACK_NOT_FOUND
    # Reads only: the sandbox holds exactly what it held, and every request it got was a GET
    # of an outcome (plus the probe every run starts with).
    requests = [r for row in outcomes.values() for r in row["requests"]]
    assert requests
    assert all(r.startswith("GET https://acme.user.com/api/public/") for r in requests)
    assert outcomes[key("d5")]["requests"] == []  # its user is one d2 creates
    assert after["request_count"] - before["request_count"] == len(requests) + 1
    assert {k: v for k, v in after.items() if k != "request_count"} == {
        k: v for k, v in before.items() if k != "request_count"
    }
    # The summary counts each kind; --ledger is ignored with a note, and no ledger appears.
    assert table_value(result.stdout, "record the event") == "2"
    assert table_value(result.stdout, "create the user") == "1"
    assert table_value(result.stdout, "update the company") == "1"
    assert table_value(result.stdout, "planned") == "9"
    assert "--ledger" in result.stderr
    assert "ignored" in result.stderr
    assert not ledger.exists()
    assert not Path(f"{ledger}.lock").exists()


def test_dry_run_live_says_could_not_tell_when_reads_keep_failing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json")
    events = write_lines(
        tmp_path / "dry.jsonl",
        lines_of([
            {"type": "identify", "userId": "u1", "messageId": "x1"},
            {"type": "identify", "userId": "u2", "messageId": "x2"},
        ]),
    )  # fmt: skip
    # The probe takes the first 503 (an outage is not a run-level fault), x1 the next three.
    forced = (ForcedStatus("/users-by-id/", 503, method="GET", times=4),)
    with serve_in_thread(SandboxOptions(api_key=API_KEY, forced=forced)) as url:
        result = invoke_cli(
            "send", events, "--config", config, "--base-url", url, "--dry-run", "--live",
            "--out", "-",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {row["key"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows[key("x1")]["would"].startswith("could not tell: User.com failed")
    assert len(rows[key("x1")]["requests"]) == 3
    assert rows[key("x2")]["would"] == "would create the user"
    assert "what a real run would do" in result.stderr  # with --out -, the tables go to stderr


def test_dry_run_live_stops_on_a_refused_key_with_exit_3(tmp_path: Path) -> None:
    wrong = write_config(tmp_path / "wrong.json", {**RAW_CONFIG, "apiKey": "w" * 64})
    events = write_lines(tmp_path / "dry.jsonl", lines_of(dry_events()))
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        result = invoke_cli(
            "send", events, "--config", wrong, "--base-url", url, "--dry-run", "--live"
        )
        state = sandbox_state(url)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "refused the API key (401)" in result.stderr
    assert "dry run: nothing was written" in result.stderr
    assert "w" * 64 not in result.stdout + result.stderr
    assert state["request_count"] == 1  # the probe, nothing after it
    assert state["users"] == []


def test_live_without_dry_run_is_refused_before_any_request(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json")
    events = write_lines(tmp_path / "e.jsonl", lines_of(dry_events()))
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        result = invoke_cli("send", events, "--config", config, "--base-url", url, "--live")
        state = sandbox_state(url)
    line = one_line_error(result)
    assert "--live only works with --dry-run" in line
    assert state["request_count"] == 0
