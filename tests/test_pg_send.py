"""`usercom send --ledger postgresql://...` among other writers (DELIVERY §7): it delivers an
event only while it holds its user's lane, leaving the others' lanes to them (in order, said
in one line, exit 4 while they are unfinished); two sends at once keep to one rate budget."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from e2e_helpers import (
    API_KEY,
    CLI,
    REPO,
    cli_env,
    invoke_cli,
    lines_of,
    sandbox_process,
    sandbox_state,
    wait_until,
    write_config,
    write_lines,
)
from pg_server import Server

from pipeline.delivery.pg import PgLocation, open_reader_at
from pipeline.delivery.pg.ledger import Leasing, PgLedger
from pipeline.delivery.queue import Arrival
from pipeline.sandbox import SandboxOptions, serve_in_thread


def tracks(user: str, count: int) -> list[dict[str, Any]]:
    return [
        {"type": "track", "userId": user, "event": "E", "messageId": f"{user}-{n}"}
        for n in range(count)
    ]


def identify(user: str) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "messageId": f"{user}-i", "traits": {"n": 1}}


def create_user(url: str, user: str) -> None:
    answer = httpx.post(
        f"{url}/api/public/users/",
        json={"custom_id": user, "email": f"{user}@x.io"},
        headers={"Authorization": f"Token {API_KEY}", "Accept": "application/json; version=2"},
        timeout=10,
    )
    assert answer.status_code in (200, 201), answer.text


def answers(where: PgLocation) -> Counter[str]:
    seen: Counter[str] = Counter()
    with contextlib.closing(open_reader_at(where)) as book:
        for requests in book.request_logs():
            for text in requests:
                seen[text.rsplit("-> ", 1)[-1].split()[0]] += 1
    return seen


def close_after_events(url: str, count: int, writer: PgLedger) -> None:
    wait_until(lambda: len(sandbox_state(url)["events"]) >= count, timeout=60)
    writer.close()


def test_send_leaves_a_lane_another_instance_holds_to_it(
    tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    where = PgLocation(pg_server.uri, pg_schema)
    other = PgLedger.open_pg_writer(where, "acme", Leasing(claim_every=0.0))
    earlier = json.dumps({**tracks("held-user", 1)[0], "messageId": "earlier"}).encode()
    other.admit([Arrival("acme:earlier", "h", earlier)])
    other.commit()
    assert [q.row.key for q in other.take(0, 10)] == ["acme:earlier"]  # its lane now
    both = tracks("held-user", 2) + tracks("free-user", 2)
    events = write_lines(tmp_path / "e.jsonl", lines_of(both))
    config = write_config(tmp_path / "config.json")
    try:
        with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
            # The other instance stops (cleanly) while the send waits for what it left to it:
            # once free-user's events (after held-user's in the file) are delivered.
            stopping = threading.Thread(target=close_after_events, args=(url, 2, other))
            stopping.start()
            for user in ("held-user", "free-user"):
                create_user(url, user)
            ledger = ("--ledger", pg_server.uri, "--pg-schema", pg_schema)
            result = invoke_cli("send", events, "--config", config, "--base-url", url, *ledger)
            state = sandbox_state(url)
    finally:
        stopping.join()
        other.close()
    assert result.returncode == 4, result.stdout + result.stderr
    assert "2 events of users whose lane another instance held" in result.stderr
    assert "0 finished there, 2 still queued" in result.stderr
    assert len(state["events"]) == 2  # free-user's two; none of held-user's
    with contextlib.closing(open_reader_at(where)) as book:
        assert [r.key for r in book.unfinished()] == [
            "acme:earlier",
            "acme:held-user-0",
            "acme:held-user-1",
        ]


def test_two_sends_at_once_keep_to_one_budget(
    tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    config = write_config(tmp_path / "config.json")
    files = []
    for shard in range(2):
        users = [f"s{shard}-u{n}" for n in range(20)]
        lines = lines_of([identify(u) for u in users] + [t for u in users for t in tracks(u, 4)])
        files.append(write_lines(tmp_path / f"shard-{shard}.jsonl", lines))
    ledger = ["--ledger", pg_server.uri, "--pg-schema", pg_schema]
    log = tmp_path / "sandbox.log"
    with sandbox_process("--api-key", API_KEY, "--rate-limit", "40", log=log) as url:
        runs = [
            subprocess.Popen(
                [*CLI, "send", str(path), "--config", str(config), "--base-url", url, *ledger],
                cwd=REPO,
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for path in files
        ]
        for run in runs:
            _, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
        state = sandbox_state(url)
    assert len(state["users"]) == 40
    where = PgLocation(pg_server.uri, pg_schema)
    with contextlib.closing(open_reader_at(where)) as book:
        assert book.counts()["delivered"] == 200
    seen = answers(where)
    assert seen["429"] <= 0.03 * sum(seen.values()), seen
