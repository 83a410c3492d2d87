"""One syntax, honest counts, right advice (issue 14): `usercom` run in-process with typer's
CliRunner, against a sandbox in a thread where requests are made."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import RAW_CONFIG, key_of, table_value, write_config, write_lines
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner, Result

from pipeline.cli import ledger_views
from pipeline.cli.app import app
from pipeline.cli.options import retention_of
from pipeline.cli.send_cmd import dry_run_summary
from pipeline.cli.sending import summary_table
from pipeline.cli.serve_cmd import _serve_options, demo_banner
from pipeline.core.answers import Reply
from pipeline.core.calls import call
from pipeline.core.config import parse_config
from pipeline.delivery.faults import outage_fault, run_fault
from pipeline.delivery.incoming import oversize
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.outcome import Outcome, Summary
from pipeline.runner import Target
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.serve.delivery import pause_reason
from pipeline.serve.ingest import admission

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
TRUNCATED = "first_name was 50 characters, over the 40 User.com accepts: truncated"


def invoke(*args: str | Path, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], input=stdin, env=ENV)


def sandbox_requests(url: str) -> int:
    count: int = httpx.get(f"{url}/__sandbox__/state").json()["request_count"]
    return count


def outcomes_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    with serve_in_thread(SandboxOptions()) as url:
        yield url


def identify_with_a_long_name(message_id: str = "m-long") -> str:
    return json.dumps(
        {
            "type": "identify",
            "messageId": message_id,
            "userId": "u-long",
            "traits": {"email": "long@example.com", "firstName": "A" * 50},
        }
    )


# -- 14.1: the same warnings, in the same field, counted the same, in every mode -------------


def test_warnings_are_the_same_field_and_count_in_dry_run_live_and_real_send(
    tmp_path: Path, sandbox_url: str
) -> None:
    events = write_lines(tmp_path / "events.jsonl", [identify_with_a_long_name()])
    config = write_config(tmp_path / "config.json")
    modes = {
        "dry run": ("--dry-run",),
        "live dry run": ("--dry-run", "--live"),
        "send": (),
    }
    for mode, flags in modes.items():
        out = tmp_path / f"{mode}.jsonl"
        result = invoke(
            "send", events, "--config", config, "--base-url", sandbox_url, "--out", out, *flags
        )
        assert result.exit_code == 0, (mode, result.output)
        [outcome] = outcomes_of(out.read_text())
        assert outcome["warnings"] == [TRUNCATED], mode
        assert not any("warning" in request for request in outcome["requests"]), mode
        assert table_value(result.stdout, "warnings") == "1", mode


# -- 14.2: one duration syntax, shared by send and serve ---------------------------------------


def help_of(command: str) -> str:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())


def test_max_outage_has_one_spelling_and_default_in_send_and_serve() -> None:
    for command in ("send", "serve"):
        shown = help_of(command)
        assert "--max-outage DURATION" in shown, command
        assert "[default: 30m]" in shown, command
        assert "1800" not in shown, command
    shown = help_of("serve")
    assert "--keep-days DURATION" in shown
    assert "[default: 7d]" in shown  # a duration like every other, not a bare number
    assert "[default: 7]" not in shown
    assert "[default: 7.0]" not in shown


@pytest.mark.parametrize(
    ("given", "days"), [("7d", 7.0), ("36h", 1.5), ("90m", 0.0625), ("7", 7.0), ("0", 0.0)]
)
def test_keep_days_takes_durations_and_a_bare_number_stays_days(
    tmp_path: Path, given: str, days: float
) -> None:
    assert retention_of("--keep-days", given) == days
    config = write_config(tmp_path / "config.json")
    chosen = serve_options_with(tmp_path, config, keep_days=given)
    assert chosen.keep_days == days


@pytest.mark.parametrize("given", ["soon", "-1", "7y", "inf"])
def test_a_bad_keep_days_is_refused_in_one_line_before_anything_is_opened(
    tmp_path: Path, given: str
) -> None:
    config = write_config(tmp_path / "config.json")
    ledger = tmp_path / "serve.sqlite"
    result = invoke("serve", "--config", config, "--ledger", ledger, "--keep-days", given)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "error: --keep-days must be a duration like 7d or 36h (a number alone is days), "
        f"0 or more: got {given!r}"
    )
    assert not ledger.exists()


def serve_options_with(tmp_path: Path, config: Path, **chosen: Any) -> Any:
    """`usercom serve`'s options as the command checks them, defaults but for `chosen`."""
    defaults: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "base_url": None,
        "concurrency": 8,
        "rate": None,
        "give_up_after": "24h",
        "max_queued": 1000,
        "keep_days": "7d",
        "transformer_token": None,
        "max_outage": "30m",
        "max_connections": 10,
        "header_timeout": "10s",
        "body_timeout": "60s",
    }
    return _serve_options(config, tmp_path / "serve.sqlite", (), **{**defaults, **chosen})


def option_help(command: str, option: str) -> str:
    """The help of one option of `command`, as one line (up to the next option)."""
    shown = help_of(command)
    start = shown.index(f" {option} ")
    ends = (shown.find(after, start + len(option) + 2) for after in (" --", " -h,"))
    return shown[start : min(end for end in ends if end > 0)]


@pytest.mark.parametrize("option", ["--max-outage", "--concurrency", "--rate", "--base-url"])
def test_options_send_and_serve_share_read_the_same_in_both(option: str) -> None:
    assert option_help("send", option) == option_help("serve", option)


def ledger_argument_help(command: str) -> str:
    """The help of `command`'s LEDGER argument, as one line."""
    shown = help_of(command)
    start = shown.index(" LEDGER ", shown.index("Arguments: "))
    return shown[start : shown.index(" [required]", start)]


@pytest.mark.parametrize("command", ["failed", "requeue"])
def test_the_commands_that_take_a_ledger_describe_it_alike(command: str) -> None:
    assert ledger_argument_help(command) == ledger_argument_help("report")
    assert ledger_argument_help(command).endswith(
        "of a run or of the service: a file, or a postgresql:// URI"
    )


def test_explain_describes_its_ledger_option_as_the_others_their_argument() -> None:
    described = ledger_argument_help("report").removeprefix(" LEDGER ")
    assert option_help("explain", "--ledger") == f" --ledger LEDGER {described} [required]"


@pytest.mark.parametrize("given", ["90s", "30m", "45"])
def test_send_takes_the_durations_serve_takes(tmp_path: Path, given: str) -> None:
    events = write_lines(tmp_path / "events.jsonl", [identify_with_a_long_name()])
    config = write_config(tmp_path / "config.json")
    result = invoke("send", events, "--config", config, "--dry-run", "--max-outage", given)
    assert result.exit_code == 0, result.output


def test_a_bad_duration_is_refused_with_one_same_line_by_send_and_serve(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", [identify_with_a_long_name()])
    config = write_config(tmp_path / "config.json")
    ledger = tmp_path / "serve.sqlite"
    sent = invoke("send", events, "--config", config, "--dry-run", "--max-outage", "soon")
    served = invoke("serve", "--config", config, "--ledger", ledger, "--max-outage", "soon")
    expected = (
        "error: --max-outage must be a duration like 90s, 30m, 24h or 7d (a number alone is "
        "seconds): got 'soon'"
    )
    for result in (sent, served):
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == expected
    assert not ledger.exists()


# -- 14.3: one size limit, 32 KB per event, in send as in serve --------------------------------


def test_send_rejects_an_event_over_32_kb_with_the_reason_serve_gives(
    tmp_path: Path, sandbox_url: str
) -> None:
    big = {
        "type": "identify",
        "messageId": "m-big",
        "userId": "u-big",
        "traits": {"email": "big@example.com", "bio": "x" * (40 * 1024)},
    }
    events = write_lines(tmp_path / "events.jsonl", [json.dumps(big), identify_with_a_long_name()])
    config = write_config(tmp_path / "config.json")
    served = admission("acme", big, "batch", "2026-01-01T00:00:00.000Z", 32 * 1024)
    assert served.rejected is not None
    assert "32 KB" in served.rejected

    for flags in ((), ("--dry-run",), ("--dry-run", "--live")):
        out = tmp_path / f"out{len(flags)}.jsonl"
        before = sandbox_requests(sandbox_url)
        result = invoke(
            "send", events, "--config", config, "--base-url", sandbox_url, "--out", out, *flags
        )
        assert result.exit_code == 1, (flags, result.output)
        big_outcome, small_outcome = outcomes_of(out.read_text())
        assert big_outcome["status"] == "rejected", flags
        assert big_outcome["error"] == served.rejected, flags
        assert big_outcome["requests"] == [], flags
        assert small_outcome["status"] in ("delivered", "planned"), flags
        if not flags:  # the probe and the one small identify: nothing of the big one
            assert sandbox_requests(sandbox_url) - before == 2


# -- 14.4: requeue matches keys as explain does, and asks before sending a finished event again


def ledger_with(path: Path, statuses: dict[str, str]) -> Path:
    with Ledger.open_writer(path, "acme") as book:
        for message_id, status in statuses.items():
            key = key_of(message_id)
            book.enqueue(key, "hash", json.dumps({"messageId": message_id}).encode())
            book.record(key, status, 1, [], None, [])  # type: ignore[arg-type]
    return path


def statuses_of(path: Path) -> dict[str, str]:
    with Ledger.open_reader(path) as book:
        return {row.key: row.status for row in book.rows()}


def test_requeue_takes_a_key_without_the_app_prefix_and_says_1_event(tmp_path: Path) -> None:
    ledger = ledger_with(tmp_path / "l.sqlite", {"f-1": "failed", "h-1": "held"})
    result = invoke("requeue", ledger, "f-1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1 event is pending again"
    assert statuses_of(ledger) == {key_of("f-1"): "pending", key_of("h-1"): "held"}
    both = invoke("requeue", ledger, "acme:h-1", "f-1")  # f-1 is pending already
    assert both.stdout.strip() == "1 event is pending again"


def test_requeue_of_an_unknown_key_exits_2_and_changes_nothing(tmp_path: Path) -> None:
    ledger = ledger_with(tmp_path / "l.sqlite", {"f-1": "failed"})
    result = invoke("requeue", ledger, "f-1", "nope")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: no event 'nope' in ledger")
    assert statuses_of(ledger) == {key_of("f-1"): "failed"}


@pytest.mark.parametrize(
    ("status", "flag"), [("delivered", "--delivered"), ("rejected", "--rejected")]
)
def test_requeue_of_a_finished_event_needs_its_flag(tmp_path: Path, status: str, flag: str) -> None:
    ledger = ledger_with(tmp_path / "l.sqlite", {"done": status, "f-1": "failed"})
    refused = invoke("requeue", ledger, "done", "f-1")
    assert refused.exit_code == 2
    [line] = refused.stderr.strip().splitlines()
    assert f"is {status}" in line
    assert flag in line
    assert statuses_of(ledger) == {key_of("done"): status, key_of("f-1"): "failed"}
    allowed = invoke("requeue", ledger, "done", "f-1", flag)
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stdout.strip() == "2 events are pending again"
    assert set(statuses_of(ledger).values()) == {"pending"}


def test_requeue_never_makes_every_delivered_event_pending_at_once(tmp_path: Path) -> None:
    ledger = ledger_with(tmp_path / "l.sqlite", {"d-1": "delivered", "f-1": "failed"})
    result = invoke("requeue", ledger, "--delivered")
    assert result.exit_code == 2
    assert "--delivered" in result.stderr
    assert statuses_of(ledger) == {key_of("d-1"): "delivered", key_of("f-1"): "failed"}


# -- 14.6: the summary shows failed errors first, and the next step ----------------------------


def summary_of(*outcomes: Outcome) -> Summary:
    summary = Summary()
    for outcome in outcomes:
        summary.add(outcome)
    return summary


def test_failed_errors_come_before_rejected_ones_even_when_rarer() -> None:
    summary = summary_of(
        *(Outcome(f"acme:r{n}", "rejected", 1, (), f"refused {n % 3}") for n in range(6)),
        Outcome("acme:f", "failed", 6, (), "User.com answered 503"),
    )
    assert summary.top_errors(3) == [
        ("failed", "User.com answered 503", 1),
        ("rejected", "refused 0", 2),
        ("rejected", "refused 1", 2),
    ]
    table = table_text(summary_table(summary, "usercom send"))
    assert table.index("User.com answered 503") < table.index("refused 0")
    assert "refused 2" not in table


def table_text(table: Table) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_next_step_after_unfinished_events_names_the_ledger() -> None:
    summary = summary_of(
        Outcome("acme:f", "failed", 6, (), "User.com answered 503"),
        Outcome("acme:h", "held", 0, (), None),
        Outcome("acme:r", "rejected", 1, (), "bad"),
    )
    [unfinished, rejected] = ledger_views.send_advice(summary, Path("run.sqlite"))
    assert unfinished.startswith("2 failed or held: re-run the same command")
    assert "--ledger run.sqlite" in unfinished
    assert "usercom explain KEY --ledger run.sqlite" in unfinished
    assert rejected.startswith("1 rejected: `usercom failed run.sqlite --rejected`")
    [no_ledger, _] = ledger_views.send_advice(summary, None)
    assert "nothing keeps them" in no_ledger
    assert "--ledger" in no_ledger
    assert ledger_views.send_advice(summary_of(Outcome("acme:d", "delivered", 1)), None) == []


def test_send_ending_with_rejected_events_prints_the_next_step(
    tmp_path: Path, sandbox_url: str
) -> None:
    track = {"type": "track", "messageId": "t-1", "userId": "nobody", "event": "Seen"}
    events = write_lines(tmp_path / "events.jsonl", [json.dumps(track)])
    config = write_config(tmp_path / "config.json")
    ledger = tmp_path / "run.sqlite"
    result = invoke(
        "send", events, "--config", config, "--base-url", sandbox_url, "--ledger", ledger
    )
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"next: 1 rejected: `usercom failed {ledger} --rejected` exports them to fix and send "
        f"again; `usercom explain KEY --ledger {ledger}` tells one event's story"
    )


# -- 14.7: advice that fits the case -----------------------------------------------------------


def explained_next(ledger: Path, key: str) -> str:
    result = invoke("explain", key, "--ledger", ledger)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.stdout.splitlines() if line.startswith("next ")]
    return line


def test_explain_of_an_event_that_was_never_sent_says_edit_it(tmp_path: Path) -> None:
    ledger = tmp_path / "l.sqlite"
    with Ledger.open_writer(ledger, "acme") as book:
        book.enqueue("acme:big", "h1", b'{"messageId": "big"}', rejected=oversize(40_000))
        book.enqueue("acme:sha256:0f", "h2", b"not json")
        book.record("acme:sha256:0f", "rejected", 0, [], "line is not JSON: Expecting value", [])
        book.enqueue("acme:t-1", "h3", b'{"messageId": "t-1"}')
        book.record("acme:t-1", "rejected", 1, ["POST x -> 404"], "user not found", [])
    for key in ("big", "sha256:0f"):
        advice = explained_next(ledger, key)
        assert "--retry-rejected" not in advice, key
        assert "as it is" not in advice, key
        assert "edit" in advice, key
        assert f"usercom failed {ledger} --rejected" in advice, key
    refused = explained_next(ledger, "t-1")
    assert "--retry-rejected" not in refused  # `usercom serve` has no such flag
    assert f"usercom requeue {ledger} acme:t-1 --rejected" in refused


def test_report_of_a_file_that_is_not_a_ledger_names_the_positional_argument(
    tmp_path: Path,
) -> None:
    events = write_lines(tmp_path / "events.jsonl", [identify_with_a_long_name()])
    for command in (("report", events), ("failed", events), ("requeue", events)):
        result = invoke(*command)
        assert result.exit_code == 2, command
        [line] = result.stderr.strip().splitlines()
        assert "--ledger" not in line, command
        assert "give the LEDGER" in line, command
    explained = invoke("explain", "k", "--ledger", events)
    assert "use another --ledger" in explained.stderr  # there it is an option


def test_a_refused_key_pauses_the_service_with_fix_the_config_and_restart() -> None:
    target = Target.of(parse_config(RAW_CONFIG).unwrap(), None)
    request = call("user_by_id", "x")
    for status in (401, 403, 301):
        fault = run_fault(request, Reply(status), target)
        assert fault is not None
        reason = pause_reason(fault)
        assert "resumes by itself" not in reason, status
        assert "restart" in reason, status
        assert "re-run" not in reason, status
    outage = pause_reason(outage_fault(90))
    assert "resumes by itself once a probe succeeds" in outage


# -- 14.11: an input that breaks off is an input problem: exit 2, said in one line -------------


def test_a_truncated_gzip_input_exits_2_in_every_mode_and_says_so(
    tmp_path: Path, sandbox_url: str
) -> None:
    lines = [identify_with_a_long_name(f"m-{n}") for n in range(200)]
    whole = gzip.compress("".join(line + "\n" for line in lines).encode())
    events = tmp_path / "events.jsonl.gz"
    events.write_bytes(whole[: len(whole) // 2])
    config = write_config(tmp_path / "config.json")
    ledger = tmp_path / "run.sqlite"
    for flags in (("--ledger", ledger), ("--dry-run",), ("--dry-run", "--live")):
        result = invoke("send", events, "--config", config, "--base-url", sandbox_url, *flags)
        assert result.exit_code == 2, (flags, result.output)
        problem = [line for line in result.stderr.splitlines() if "read to its end" in line]
        assert len(problem) == 1, (flags, result.stderr)
        assert problem[0].startswith("error: the input could not be read to its end"), flags
        assert "fix the input" in problem[0], flags


# -- 14.13: an empty input says so; real times; no rate from a tiny sample ---------------------


def test_an_empty_input_says_it_holds_no_events(tmp_path: Path, sandbox_url: str) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n\n")
    config = write_config(tmp_path / "config.json")
    for flags in ((), ("--dry-run",), ("--dry-run", "--live")):
        result = invoke("send", events, "--config", config, "--base-url", sandbox_url, *flags)
        assert result.exit_code == 0, (flags, result.output)
        assert f"{events} holds no events" in result.stderr, flags
        assert "delivered" not in result.stdout, flags  # no table of zeros
    piped = invoke("send", "-", "--config", config, "--dry-run", stdin="")
    assert "stdin holds no events" in piped.stderr


def test_a_dry_run_measures_its_time(tmp_path: Path) -> None:
    lines = "".join(identify_with_a_long_name(f"m-{n}") + "\n" for n in range(50))
    summary = dry_run_summary(parse_config(RAW_CONFIG).unwrap(), io.BytesIO(lines.encode()), None)
    assert summary.events == 50
    assert summary.seconds > 0


def test_no_rate_is_shown_from_a_tiny_sample() -> None:
    tiny = summary_of(Outcome("acme:d", "delivered", 1))
    tiny.seconds = 0.2
    assert tiny.rate is None
    assert "per second" not in table_text(summary_table(tiny, "usercom send"))
    quick = summary_of(*(Outcome(f"acme:d{n}", "delivered", 1) for n in range(500)))
    quick.seconds = 0.5  # many events, but under a second: no rate either
    assert quick.rate is None
    enough = summary_of(*(Outcome(f"acme:d{n}", "delivered", 1) for n in range(100)))
    enough.seconds = 2.0
    assert enough.rate == 50.0
    assert (
        table_value(table_text(summary_table(enough, "usercom send")), "events sent per second")
        == "50"
    )


# -- 14.15: serve --demo says where its ledger is ----------------------------------------------


def test_the_demo_banner_names_its_ledger_and_the_commands_to_try_on_it() -> None:
    ledger = Path("/tmp/usercom-x/demo.sqlite")
    shown = demo_banner(
        "http://127.0.0.1:8080", "http://127.0.0.1:9000", "demo-write-key", ledger, scratch=True
    )
    [line] = [line for line in shown.splitlines() if line.strip().startswith("ledger:")]
    assert str(ledger) in line
    for command in (f"usercom report {ledger}", f"usercom failed {ledger}", "usercom explain"):
        assert command in line
    assert "deleted when the demo stops" in line
    kept = demo_banner("http://h:1", "http://s:2", "k", Path("mine.sqlite"), scratch=False)
    assert "deleted" not in kept
    assert "usercom report mine.sqlite" in kept
