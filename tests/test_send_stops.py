"""`usercom send` stops cleanly (issue 13, items 10 and 11), as a process over loopback: a
closed `--out -` pipe, and a signal while every lane waits out an outage pause."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    API_KEY,
    CLI,
    REPO,
    cli_env,
    lines_of,
    run_cli,
    sandbox_state,
    wait_until,
    write_config,
    write_lines,
)

from pipeline.delivery.ledger import Ledger
from pipeline.sandbox import ForcedStatus, SandboxOptions, serve_in_thread

STOPPING = "stopping… (Ctrl+C again to leave at once)"


def user_events(users: int, tracks: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for u in range(users):
        events.append({"type": "identify", "userId": f"u{u}", "traits": {"email": f"u{u}@x.io"}})
        events += [
            {"type": "track", "userId": f"u{u}", "event": "Seen", "properties": {"n": t}}
            for t in range(tracks)
        ]
    return events


def send_process(*args: str | Path, stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as errors:
        return subprocess.Popen(
            [*CLI, "send", *(str(arg) for arg in args)],
            stdout=subprocess.PIPE,
            stderr=errors,
            env=cli_env(),
            cwd=REPO,
        )


def statuses(ledger: Path) -> Counter[str]:
    with contextlib.closing(Ledger.open_reader(ledger)) as book:
        return Counter(row.status for row in book.rows())


def test_a_closed_out_pipe_stops_the_run_at_once_quietly_and_resumably(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "e.jsonl", lines_of(user_events(150, 2)))
    config = write_config(tmp_path / "c.json")
    ledger, errors = tmp_path / "l.db", tmp_path / "stderr.txt"
    with serve_in_thread(SandboxOptions(api_key=API_KEY, latency_ms=20)) as url:
        process = send_process(
            events, "--config", config, "--base-url", url, "--ledger", ledger, "--out", "-",
            "--concurrency", "4", stderr=errors,
        )  # fmt: skip
        assert process.stdout is not None
        first_two = [process.stdout.readline() for _ in range(2)]  # what `| head -2` reads
        process.stdout.close()
        try:
            code = process.wait(timeout=20)  # it ends at once; before, it ran 10+ minutes
        finally:
            process.kill()
        said = errors.read_text(encoding="utf-8")
        assert all(line.startswith(b'{"key"') for line in first_two)
        assert code == 141, said
        assert "Traceback" not in said
        assert "Task exception" not in said
        assert "BrokenPipeError" not in said
        assert "--out - was closed" in said
        assert "re-run with the same --ledger to resume" in said
        # The ledger holds what was read: delivered or pending, nothing filed by mistake.
        filed = statuses(ledger)
        assert set(filed) <= {"delivered", "pending"}, filed
        assert filed["delivered"] < 450
        resumed = run_cli("send", events, "--config", config, "--base-url", url, "--ledger", ledger)
        state = sandbox_state(url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(state["users"]) == 150
    assert len(state["events"]) == 300  # each track once: nothing sent twice


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_an_outage_pause_stops_within_seconds_with_summary_and_resume_line(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    events = write_lines(tmp_path / "e.jsonl", lines_of(user_events(20, 2)))
    config = write_config(tmp_path / "c.json")
    ledger, errors = tmp_path / "l.db", tmp_path / "stderr.txt"
    down = ForcedStatus("/", 503)  # every request, the probes too: a real outage
    with serve_in_thread(SandboxOptions(api_key=API_KEY, forced=(down,))) as url:
        process = send_process(
            events, "--config", config, "--base-url", url, "--ledger", ledger, stderr=errors
        )
        try:
            # Paused: past the first failures, the probes are all that is sent.
            assert wait_until(
                lambda: sandbox_state(url)["request_count"] >= 12, timeout=30, step=0.1
            )
            time.sleep(2.0)
            process.send_signal(sig)
            said_at_once = wait_until(lambda: STOPPING in errors.read_text(), 2, 0.05)
            # Within seconds; before, it still ran 160 s later (the pause was not stoppable).
            table, _ = process.communicate(timeout=15)
        finally:
            process.kill()
    said = errors.read_text(encoding="utf-8")
    assert said_at_once, said
    assert process.returncode == code, said
    assert "Traceback" not in said
    assert "interrupted: re-run with the same --ledger to resume" in said
    assert "pending" in table.decode()  # the summary table
    assert set(statuses(ledger)) == {"pending"}


def test_a_second_sigint_leaves_at_once_and_still_says_how_to_resume(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "e.jsonl", lines_of(user_events(20, 1)))
    config = write_config(tmp_path / "c.json")
    ledger, errors = tmp_path / "l.db", tmp_path / "stderr.txt"
    # Every answer takes 3 s: after the first SIGINT, the writes in flight are waited for.
    with serve_in_thread(SandboxOptions(api_key=API_KEY, latency_ms=3000)) as url:
        process = send_process(
            events, "--config", config, "--base-url", url, "--ledger", ledger, stderr=errors
        )
        try:
            assert wait_until(lambda: sandbox_state(url)["request_count"] >= 1, 30, 0.05)
            time.sleep(0.5)  # the probe was answered: the first writes are in flight
            process.send_signal(signal.SIGINT)
            assert wait_until(lambda: STOPPING in errors.read_text(), 2, 0.02)
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=2)  # at once, not after the writes in flight
        finally:
            process.kill()
    said = errors.read_text(encoding="utf-8")
    assert process.returncode == 130, said
    assert "Traceback" not in said
    assert "stopped at once: re-run with the same --ledger to resume" in said
    with contextlib.closing(Ledger.open_reader(ledger)) as book:
        assert book.counts()["pending"] >= 1  # readable, consistent: what was read is pending


def writes(state: dict[str, Any]) -> int:
    """What the sandbox has stored: every user, track, site view and company is one write."""
    return sum(len(state[kind]) for kind in ("users", "events", "site_views", "companies"))


@pytest.mark.parametrize("concurrency", [1, 8])
def test_after_a_signal_no_new_request_starts_and_what_was_not_attempted_stays_pending(
    tmp_path: Path, concurrency: int
) -> None:
    events = write_lines(tmp_path / "e.jsonl", lines_of(user_events(60, 2)))
    config = write_config(tmp_path / "c.json")
    ledger, errors = tmp_path / "l.db", tmp_path / "stderr.txt"
    with serve_in_thread(SandboxOptions(api_key=API_KEY, latency_ms=300)) as url:
        process = send_process(
            events, "--config", config, "--base-url", url, "--ledger", ledger,
            "--concurrency", str(concurrency), stderr=errors,
        )  # fmt: skip
        try:
            assert wait_until(lambda: len(sandbox_state(url)["users"]) >= 2, 30, 0.02)
            process.send_signal(signal.SIGINT)
            assert wait_until(lambda: STOPPING in errors.read_text(), 5, 0.01)
            # The stop is set: from here only the requests already on the wire may land (the
            # sandbox counts one when it answers it, after its latency).
            at_stop = sandbox_state(url)
            process.communicate(timeout=20)
            after = sandbox_state(url)
        finally:
            process.kill()
    said = errors.read_text(encoding="utf-8")
    assert process.returncode == 130, said
    # Before, the lanes waiting for a connection slot all went on: 6 requests after the stop
    # at --concurrency 1, 40+ at 8.
    started = after["request_count"] - at_stop["request_count"]
    assert started <= concurrency, f"{started} requests after the stop"
    assert writes(after) - writes(at_stop) <= concurrency
    filed = statuses(ledger)
    assert set(filed) <= {"delivered", "pending"}, filed
    assert filed["delivered"] <= writes(after)  # each delivered event made its write


def test_after_out_closes_no_new_request_starts(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "e.jsonl", lines_of(user_events(60, 2)))
    config = write_config(tmp_path / "c.json")
    ledger, errors = tmp_path / "l.db", tmp_path / "stderr.txt"
    with serve_in_thread(SandboxOptions(api_key=API_KEY, latency_ms=300)) as url:
        process = send_process(
            events, "--config", config, "--base-url", url, "--ledger", ledger, "--out", "-",
            "--concurrency", "4", stderr=errors,
        )  # fmt: skip
        assert process.stdout is not None
        try:
            first_two = [process.stdout.readline() for _ in range(2)]  # `| head -2`
            process.stdout.close()
            at_close = sandbox_state(url)["request_count"]
            code = process.wait(timeout=20)
            after = sandbox_state(url)["request_count"]
        finally:
            process.kill()
    said = errors.read_text(encoding="utf-8")
    assert all(line.startswith(b'{"key"') for line in first_two)
    assert code == 141, said
    # The run hears of the closed pipe at its next outcome; then only requests already on the
    # wire land. Before, the lanes read ahead went on: about 20 more requests here.
    assert after - at_close <= 2 * 4, f"{after - at_close} requests after --out - closed"
    assert set(statuses(ledger)) <= {"delivered", "pending"}
