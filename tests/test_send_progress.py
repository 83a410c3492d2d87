"""`usercom send`'s progress in process (issue 13, items 13 and 15): a pause says why and until
when, "done" counts finished statuses only, and client data is plain text on the terminal."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import API_KEY, config, lines_of, write_config, write_lines
from rich.console import Console
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.cli.sending import pause_words, progress_line, run_send
from pipeline.delivery import DeliveryOptions, Outcome, Summary
from pipeline.delivery.pacing import Pause
from pipeline.sandbox import ForcedStatus, SandboxOptions, serve_in_thread
from pipeline.testing import FakeUserCom

FAST = DeliveryOptions(concurrency=4, backoff_initial=0.01, backoff_max=0.02, max_seconds=10)


def summary_of(**counts: int) -> Summary:
    summary = Summary()
    for status, count in counts.items():
        for n in range(count):
            summary.add(Outcome(f"k{status}{n}", status))  # type: ignore[arg-type]
    return summary


def test_done_counts_finished_statuses_only_and_the_counts_add_up() -> None:
    summary = summary_of(delivered=3, rejected=1, failed=1, held=1, pending=2)
    line = progress_line(summary, 2.0, 10)
    assert line == (
        "usercom send: 6/10 done (3/s): delivered 3, rejected 1, failed 1, held 1, "
        "pending 2 (not finished)"
    )


def test_a_pause_says_why_when_the_next_probe_goes_and_when_the_run_stops() -> None:
    why = "User.com at https://acme.user.com answered the probe with 503"
    pause = Pause(why, next_probe_in=3.2, outage_for=30.0)
    assert pause_words(pause, 1800.0) == (
        f"paused: {why}; next probe in 4 s; stops after --max-outage (30 min) in 29 min 30 s"
    )
    line = progress_line(summary_of(), 900.0, 306, pause, 1800.0)
    assert line.startswith("usercom send: 0/306 done (0/s): delivered 0, rejected 0")
    assert line.endswith(f"; paused: {why}; next probe in 4 s; stops after --max-outage "
                         "(30 min) in 29 min 30 s")  # fmt: skip


def test_a_pause_while_the_first_probe_is_out_says_what_started_it() -> None:
    words = pause_words(Pause("probing", None, 0.0), 90.0)
    assert words == (
        "paused: half or more of the last 20 requests failed (5xx, timeouts, lost connections); "
        "probing now; stops after --max-outage (1 min 30 s) in 1 min 30 s"
    )


def send_in_process(
    lines: list[dict[str, Any]], err: Console, fake: FakeUserCom, options: DeliveryOptions
) -> Summary:
    source = io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode())
    summary, _tally = run_send(
        source, config(), ledger=None, options=options, sink=None, err=err,
        total=len(lines), retry_rejected=False, transport=fake,
    )  # fmt: skip
    return summary


def test_the_log_line_says_the_run_is_paused_during_an_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USERCOM_PROGRESS_SECONDS", "0.1")
    written = io.StringIO()
    err = Console(file=written, force_terminal=False, width=300)
    events = [{"type": "identify", "userId": f"u{n}"} for n in range(12)]
    fake = FakeUserCom(api_key=API_KEY, forced=["/=503"])
    summary = send_in_process(events, err, fake, replace(FAST, max_outage=1.5))
    assert summary.fault is not None
    paused = [line for line in written.getvalue().splitlines() if "paused:" in line]
    assert paused, written.getvalue()
    assert "answered the probe with 503; next probe in" in paused[-1]
    assert "stops after --max-outage (2 s) in" in paused[-1]


def test_the_terminal_bar_says_the_run_is_paused_during_an_outage() -> None:
    written = io.StringIO()
    err = Console(file=written, force_terminal=True, width=400, color_system=None)
    events = [{"type": "identify", "userId": f"u{n}"} for n in range(12)]
    fake = FakeUserCom(api_key=API_KEY, forced=["/=503"])
    summary = send_in_process(events, err, fake, replace(FAST, max_outage=1.5))
    assert summary.fault is not None
    assert "paused: User.com at https://acme.user.com answered the probe with 503" in (
        written.getvalue()
    )


def test_a_message_id_that_looks_like_markup_is_shown_as_it_is_on_the_bar() -> None:
    written = io.StringIO()
    err = Console(file=written, force_terminal=True, width=200, color_system=None)
    # No user id, email or anonymousId: rejected, and the bar names its key.
    events = [{"type": "track", "event": "Seen", "messageId": "x[/bold]y[red"}]
    summary = send_in_process(events, err, FakeUserCom(api_key=API_KEY), FAST)
    assert summary.counts["rejected"] == 1
    assert "rejected: acme:x[/bold]y[red" in written.getvalue()


def test_a_fault_naming_client_data_is_printed_as_it_is(tmp_path: Path) -> None:
    # A redirect on a user's event route stops the run; its message names the route, and so
    # the userId, which must reach the terminal as text, not as rich markup.
    events = write_lines(
        tmp_path / "e.jsonl",
        lines_of([{"type": "track", "userId": "a[/bold]b", "event": "Seen", "messageId": "m1"}]),
    )
    config_path = write_config(tmp_path / "c.json")
    moved = ForcedStatus("/users-by-id/", 302, method="POST")
    with serve_in_thread(SandboxOptions(api_key=API_KEY, forced=(moved,))) as url:
        result = CliRunner().invoke(
            app, ["send", str(events), "--config", str(config_path), "--base-url", url]
        )
    assert result.exit_code == 3, result.output
    assert "answered a redirect (302)" in result.output
    assert "a[/bold]b" in result.output
