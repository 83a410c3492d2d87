"""`usercom serve` as a process (DELIVERY §6): options, signals, crashes, several apps, and the
operator commands on its ledger. Each test that serves runs `python -m pipeline.cli serve ...`;
a refusal before serving, and the operator commands reading its ledger, run in this process."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import invoke_cli
from serve_helpers import (
    API_KEY,
    CLI,
    RAW_CONFIG,
    REPO,
    SUBDOMAIN,
    WRITE_KEY,
    cli_env,
    health,
    identify,
    ledger_counts,
    ledger_rows,
    post,
    sandbox_state,
    service_process,
    track,
    tracks_by_user,
    wait_until,
    with_key,
    write_config,
)

from pipeline.sandbox import SandboxOptions, serve_in_thread


def run_cli(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_in_thread(SandboxOptions(api_key=API_KEY, latency_ms=2)) as url:
        yield url


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--base-url", "http://127.0.0.1:1/api/public"], "--base-url must be an origin"),
        (["--give-up-after", "soon"], "--give-up-after must be a duration"),
        (["--max-outage", "-3"], "--max-outage must be a duration"),
        (["--concurrency", "0"], "--concurrency must be an integer"),
        (["--rate", "0"], "--rate must be a finite number"),
        (["--max-queued", "0"], "--max-queued must be an integer >= 1"),
        (["--keep-days", "-1"], "--keep-days must be a duration like 7d or 36h"),
        (["--port", "70000"], "--port must be from 0 to 65535"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, extra: list[str], words: str) -> None:
    config = write_config(tmp_path / "config.json")
    done = invoke_cli("serve", "--config", config, "--ledger", tmp_path / "l.sqlite", *extra)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "l.sqlite").exists()


def test_config_problems_are_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"appSubdomain": "acme"}))
    done = invoke_cli("serve", "--config", bad, "--ledger", tmp_path / "l.sqlite")
    assert done.returncode == 2
    assert "API Key is required" in done.stderr
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"sources": [{"writeKey": "a", "destination": RAW_CONFIG}]}))
    done = invoke_cli("serve", "--config", sources, "--ledger", tmp_path / "d", "--write-key", "x")
    assert done.returncode == 2
    assert "remove --write-key" in done.stderr
    foreign = tmp_path / "notes.txt"
    foreign.write_text("my notes")
    done = invoke_cli("serve", "--config", write_config(tmp_path / "c.json"), "--ledger", foreign)
    assert done.returncode == 2
    assert "not a ledger" in done.stderr
    assert foreign.read_text() == "my notes"


def test_a_second_service_on_the_same_ledger_is_refused(tmp_path: Path, sandbox: str) -> None:
    config = write_config(tmp_path / "config.json")
    ledger = tmp_path / "serve.sqlite"
    args = ("--config", config, "--ledger", ledger, "--base-url", sandbox)
    with service_process(*args, "--write-key", WRITE_KEY, log=tmp_path / "log"):
        done = run_cli("serve", *args, "--port", "0")
        assert done.returncode == 2
        assert "ledger in use by pid" in done.stderr


def test_sigterm_stops_accepting_and_exits_0_keeping_queued_events(
    tmp_path: Path, sandbox: str
) -> None:
    ledger = tmp_path / "serve.sqlite"
    wrong = write_config(tmp_path / "wrong.json", with_key(RAW_CONFIG, "w" * 64))
    right = write_config(tmp_path / "right.json")
    common = ("--ledger", ledger, "--base-url", sandbox, "--write-key", WRITE_KEY)
    log = tmp_path / "log"
    with service_process("--config", wrong, *common, log=log) as service:
        batch = [identify("u1"), track("u1", 1), track("u1", 2)]
        assert post(service.url, "/v1/batch", {"batch": batch}).status_code == 200
        assert wait_until(lambda: health(service.url)["paused"] is not None)
        service.signal(signal.SIGTERM)
        assert service.wait(30) == 0
    text = log.read_text()
    assert "event=delivery_paused" in text
    assert "event=service_stopped" in text
    assert "w" * 64 not in text
    assert ledger_counts(ledger)["pending"] == 3
    # A restart with the corrected config delivers what was queued.
    with service_process("--config", right, *common, log=log) as service:
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 3, timeout=30)
        service.signal(signal.SIGTERM)
        assert service.wait(30) == 0
    assert tracks_by_user(sandbox_state(sandbox)) == {"u1": [1, 2]}


def stream(
    url: str, users: int, rounds: int, acked: list[dict[str, Any]], stop: threading.Event
) -> None:
    """Post batches (one event per user per round) until told to stop or refused."""
    for round_ in range(rounds):
        if stop.is_set():
            return
        batch: list[dict[str, Any]] = []
        for n in range(users):
            user = f"c-{n}"
            if round_ == 0:
                batch.append(identify(user))
            elif round_ % 7 == 0 and n % 3 == 0:
                batch.append(
                    {
                        "type": "group",
                        "messageId": f"{user}-group-{round_}",
                        "userId": user,
                        "groupId": f"firm-{n % 4}",
                        "traits": {"name": f"Firm {n % 4}"},
                    }
                )
            else:
                batch.append(track(user, round_))
        try:
            answer = post(url, "/v1/batch", {"batch": batch}, timeout=5)
        except Exception:  # noqa: BLE001 - the service was killed mid-request: not acknowledged
            return
        if answer.status_code != 200:
            return
        acked.extend(batch)


def test_sigkill_right_after_200s_loses_nothing_acknowledged(tmp_path: Path) -> None:
    ledger = tmp_path / "serve.sqlite"
    config = write_config(tmp_path / "config.json")
    log = tmp_path / "log"
    with serve_in_thread(SandboxOptions(api_key=API_KEY, latency_ms=5)) as sandbox:
        args = ("--config", config, "--ledger", ledger, "--base-url", sandbox)
        acked: list[dict[str, Any]] = []
        with service_process(*args, "--write-key", WRITE_KEY, log=log) as service:
            stop = threading.Event()
            sender = threading.Thread(target=stream, args=(service.url, 20, 60, acked, stop))
            sender.start()
            assert wait_until(lambda: len(acked) >= 300, timeout=30)
            service.signal(signal.SIGKILL)  # mid-stream, deliveries in flight
            service.wait(10)
            stop.set()
            sender.join(10)
        delivered_before = ledger_counts(ledger)["delivered"]
        assert delivered_before < len(acked)  # the kill left work for the restart
        with service_process(*args, "--write-key", WRITE_KEY, log=log) as service:
            assert wait_until(lambda: health(service.url)["queued"] == 0, timeout=60)
        counts = ledger_counts(ledger)
        assert counts["rejected"] == counts["failed"] == counts["held"] == 0, counts
        keys = {row.key: row.status for row in ledger_rows(ledger)}
        for event in acked:
            assert keys[f"{SUBDOMAIN}:{event['messageId']}"] == "delivered"
        state = sandbox_state(sandbox)
        # No user or company created twice.
        assert not [c for c, n in Counter(u["custom_id"] for u in state["users"]).items() if n > 1]
        assert not [
            c for c, n in Counter(f["custom_id"] for f in state["companies"]).items() if n > 1
        ]
        # Every acknowledged track is there, each user's in order (a write in flight at the
        # kill may repeat: at least once).
        positions = tracks_by_user(state)
        for user, seen in positions.items():
            assert seen == sorted(seen), user
            expected = sorted(
                {
                    e["properties"]["position"]
                    for e in acked
                    if e["type"] == "track" and e["userId"] == user
                }
            )
            assert sorted(set(seen)) == expected, user


def test_several_apps_each_with_its_ledger_and_write_keys(tmp_path: Path) -> None:
    other = {"apiKey": "o" * 64, "appSubdomain": "other"}
    config = tmp_path / "sources.json"
    config.write_text(
        json.dumps(
            {
                "sources": [
                    {"writeKey": "wk-web", "destination": RAW_CONFIG},
                    {"writeKey": "wk-app", "destination": {"Config": RAW_CONFIG}},
                    {"writeKey": "wk-other", "destination": other},
                ]
            }
        )
    )
    folder = tmp_path / "ledgers"
    with (
        serve_in_thread(SandboxOptions()) as sandbox,
        service_process(
            "--config", config, "--ledger", folder, "--base-url", sandbox, log=tmp_path / "log"
        ) as service,
    ):
        assert post(service.url, "/v1/identify", identify("web-1"), key="wk-web").is_success
        assert post(service.url, "/v1/identify", identify("app-1"), key="wk-app").is_success
        assert post(service.url, "/v1/identify", identify("oth-1"), key="wk-other").is_success
        assert post(service.url, "/v1/identify", identify("x"), key="wk-none").status_code == 401
        assert wait_until(lambda: health(service.url)["queued"] == 0)
        shown = health(service.url)
        assert set(shown["apps"]) == {"acme", "other"}
    assert sorted(p.name for p in folder.glob("*.sqlite")) == ["acme.sqlite", "other.sqlite"]
    assert ledger_counts(folder / "acme.sqlite")["delivered"] == 2
    assert ledger_counts(folder / "other.sqlite")["delivered"] == 1


def test_report_failed_and_explain_read_the_service_ledger_while_it_runs(
    tmp_path: Path, sandbox: str
) -> None:
    ledger = tmp_path / "serve.sqlite"
    config = write_config(tmp_path / "config.json")
    args = ("--config", config, "--ledger", ledger, "--base-url", sandbox, "--write-key", WRITE_KEY)
    with service_process(*args, log=tmp_path / "log") as service:
        batch = [
            identify("u1"),
            track("u1", 1),
            {"type": "page", "userId": "u1", "messageId": "p1"},
        ]
        assert post(service.url, "/v1/batch", {"batch": batch}).is_success
        assert wait_until(lambda: health(service.url)["queued"] == 0)
        report = invoke_cli("report", ledger, "--json")
        assert report.returncode == 0, report.stderr
        summed = json.loads(report.stdout)
        assert summed["counts"]["delivered"] == 2
        assert summed["counts"]["rejected"] == 1
        rejected = invoke_cli("failed", ledger, "--rejected")
        assert rejected.returncode == 0
        (line,) = rejected.stdout.splitlines()
        assert json.loads(line)["messageId"] == "p1"
        story = invoke_cli("explain", "u1-track-1", "--ledger", ledger)
        assert story.returncode == 0, story.stderr
        assert "delivered" in story.stdout
        assert "users-by-id/u1/events/" in story.stdout
        assert API_KEY not in story.stdout + report.stdout


def test_the_demo_serves_in_front_of_its_own_sandbox(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with service_process("--demo", log=log) as service:
        assert service.process is not None
        assert service.process.stdout is not None
        shown = service.process.stdout.readline()
        assert "sandbox User.com: http://127.0.0.1:" in shown
        sandbox = shown.split("sandbox User.com: ", 1)[1].split()[0]
        tried = service.process.stdout.readline()
        assert "curl -u demo-write-key:" in tried
        service.process.stdout.readline()  # health and metrics
        kept = service.process.stdout.readline()
        assert "ledger: " in kept
        ledger = kept.split("ledger: ", 1)[1].split()[0]
        assert invoke_cli("report", ledger).returncode == 0
        event = {"userId": "u-1", "traits": {"email": "ada@example.com"}}
        assert post(service.url, "/v1/identify", event, key="demo-write-key").status_code == 200
        assert wait_until(lambda: sandbox_state(sandbox)["users"] != [])
        assert sandbox_state(sandbox)["users"][0]["custom_id"] == "u-1"
        service.signal(signal.SIGTERM)
        assert service.wait(30) == 0
