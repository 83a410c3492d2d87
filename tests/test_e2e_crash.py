"""A `usercom send` killed with SIGKILL mid-way, then re-run with the same ledger.

The sandbox runs in its own process (``usercom sandbox --port 0 --latency-ms 20``) so that it
outlives the killed sender and keeps what the first run wrote.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from e2e_helpers import (
    CLI,
    cli_env,
    deliver_lines,
    expected_memberships,
    expected_pages,
    expected_tracks,
    firms,
    memberships,
    mix_lines,
    page_occurrences,
    people,
    run_cli,
    sandbox_process,
    sandbox_state,
    table_value,
    track_occurrences,
    wait_until,
    write_config,
    write_lines,
)

from pipeline.delivery.ledger import Ledger, LedgerError
from pipeline.sandbox import SandboxOptions, serve_in_thread

CONCURRENCY = 4


def ledger_rows(path: Path) -> dict[str, int]:
    """Rows per status (none of 0), read with no lock while another process may be writing;
    {} before the ledger exists."""
    try:
        with Ledger.open_reader(path) as ledger:
            return {status: n for status, n in ledger.counts().items() if n}
    except LedgerError:  # no file yet, or a new one not yet written
        return {}


def test_sigkill_mid_run_then_resume_with_the_ledger_matches_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    lines = mix_lines(40)
    events = write_lines(tmp_path / "events.jsonl", lines)
    cfg = write_config(tmp_path / "config.json")
    ledger = tmp_path / "run.sqlite"

    with sandbox_process("--latency-ms", "20", "--seed", "4", log=tmp_path / "sandbox.log") as url:
        send = [
            *CLI,
            "send",
            str(events),
            "--config",
            str(cfg),
            "--base-url",
            url,
            "--ledger",
            str(ledger),
            "--concurrency",
            str(CONCURRENCY),
        ]
        with (tmp_path / "first.out").open("w") as out, (tmp_path / "first.err").open("w") as err:
            first = subprocess.Popen(send, stdout=out, stderr=err, env=cli_env())
            try:
                started = wait_until(
                    lambda: ledger_rows(ledger).get("delivered", 0) >= 60, timeout=20
                )
                first.send_signal(signal.SIGKILL)
                assert first.wait(10) == -signal.SIGKILL
            finally:
                if first.poll() is None:
                    first.kill()
                    first.wait(10)
        assert started, (tmp_path / "first.err").read_text()

        at_kill = ledger_rows(ledger)
        done_at_kill = at_kill.get("delivered", 0)
        assert 60 <= done_at_kill < len(lines), "the run was not interrupted mid-way"
        # Events are stored pending as they are read; the rest of the run never ended: nothing
        # is filed failed, held or rejected, and what was read but not finished stays pending.
        assert set(at_kill) <= {"delivered", "pending"}, at_kill
        partial = sandbox_state(url)
        assert 0 < len(partial["events"]) < expected_tracks(lines).total()

        second = run_cli(*send[len(CLI) :], timeout=60)
        assert second.returncode == 0, second.stdout + second.stderr
        assert int(table_value(second.stdout, "skipped (delivered earlier)")) == done_at_kill
        assert int(table_value(second.stdout, "delivered")) == len(lines) - done_at_kill
        assert int(table_value(second.stdout, "events sent this run")) == len(lines) - done_at_kill
        resumed = sandbox_state(url)

    assert ledger_rows(ledger) == {"delivered": len(lines)}

    with serve_in_thread(SandboxOptions(seed=4)) as fresh:
        reference = deliver_lines(lines, fresh)
        uninterrupted = sandbox_state(fresh)
    assert reference.statuses() == {"delivered": len(lines)}

    # Same users and companies (custom ids, emails, names, attributes, memberships) ...
    assert people(resumed) == people(uninterrupted)
    assert firms(resumed) == firms(uninterrupted)
    assert memberships(resumed) == expected_memberships(lines)
    assert len(resumed["users"]) == 40
    assert len(resumed["companies"]) == 7

    # ... and every event at least once; only the events in flight at the kill may be doubled.
    tracks, pages = track_occurrences(resumed), page_occurrences(resumed)
    assert set(tracks) == set(expected_tracks(lines))
    assert set(pages) == set(expected_pages(lines))
    doubled = (tracks - expected_tracks(lines)).total() + (pages - expected_pages(lines)).total()
    assert doubled <= CONCURRENCY
    assert track_occurrences(uninterrupted) == expected_tracks(lines)
    assert page_occurrences(uninterrupted) == expected_pages(lines)
