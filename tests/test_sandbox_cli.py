"""``python -m pipeline.sandbox`` as other harnesses run it: a subprocess on a loopback port."""

from __future__ import annotations

import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
KEY = "k" * 40
AUTH = {"Authorization": f"Token {KEY}"}
API = "/api/public"
BANNER = "sandbox listening on http://127.0.0.1:"
STARTUP_TIMEOUT_S = 20.0
COMMAND = [sys.executable, "-m", "pipeline.sandbox"]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(process: subprocess.Popen[str]) -> str:
    """The first stdout line, waiting at most STARTUP_TIMEOUT_S; '' when the process ended."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(STARTUP_TIMEOUT_S):
            process.kill()
            pytest.fail(f"no banner within {STARTUP_TIMEOUT_S} s")
    return process.stdout.readline()


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    """Send `sig`, wait for the exit; the exit status and stderr."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=STARTUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, err


@contextmanager
def sandbox(*args: str) -> Iterator[httpx.Client]:
    """A sandbox subprocess on a free port (with `args`); a client with the right key."""
    process = _start("--port", "0", "--api-key", KEY, *args)
    try:
        line = _first_line(process)
        if not line.startswith(BANNER):
            process.kill()
            pytest.fail(f"no banner but {line!r}; stderr: {process.communicate()[1]}")
        port = int(line.removeprefix(BANNER).strip())
        assert 0 < port <= 65535
        with httpx.Client(base_url=line.removeprefix("sandbox listening on ").strip()) as client:
            client.headers.update(AUTH)
            yield client
    finally:
        status, err = _stop(process)
    assert status == 130, err
    assert "Traceback" not in err, err


def _run_to_exit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], cwd=ROOT, capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S
    )


def _assert_usage_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("python -m pipeline.sandbox: error: ")
    for word in words:
        assert word in lines[0]


def test_forced_status_for_the_first_n_requests_then_normal_handling() -> None:
    with sandbox("--force", "POST /users/update_or_create/=503x2") as client:
        url = f"{API}/users/update_or_create/"
        answers = [client.post(url, json={"custom_id": "ann"}) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [503, 503, 201]
        assert answers[0].json() == {"detail": "Service unavailable."}
        assert client.post(url, json={"custom_id": "ann"}).status_code == 200
        users = client.get("/__sandbox__/state").json()["users"]
        assert [user["custom_id"] for user in users] == ["ann"]


def test_forced_status_only_for_its_method() -> None:
    with sandbox("--force", "GET /users-by-id/=500x3", "--force", "events-create=504") as client:
        assert client.put(f"{API}/users-by-id/nobody/", json={}).status_code == 404
        gets = [client.get(f"{API}/users-by-id/nobody/").status_code for _ in range(4)]
        assert gets == [500, 500, 500, 404]
        for _ in range(2):
            timed_out = client.post(f"{API}/events/", json={"user_id": 1, "name": "x"})
            assert timed_out.status_code == 504
            assert timed_out.json() == {"detail": "Gateway timeout."}


def test_forced_redirect_has_a_location() -> None:
    with sandbox("--force", "/users/search/=302x1") as client:
        moved = client.get(f"{API}/users/search/?key=abc")
        assert moved.status_code == 302
        assert moved.headers["location"] == f"{API}/users/search/?key=abc"
        assert client.get(f"{API}/users/search/?key=abc").status_code == 404


def test_wrong_or_missing_api_key_is_401() -> None:
    with sandbox() as client:
        url = f"{API}/users/search/?key=abc"
        wrong = client.get(url, headers={"Authorization": "Token not-the-key"})
        assert wrong.status_code == 401
        assert wrong.json() == {"detail": "Invalid token."}
        missing = httpx.get(f"{client.base_url}{url}")
        assert missing.status_code == 401
        assert client.get(url).status_code == 404  # the right key: no such user


def test_user_key_field_and_unknown_attributes_options() -> None:
    with sandbox("--user-key-field", "key", "--unknown-attributes", "reject") as client:
        refused = client.post(f"{API}/users/", json={"custom_id": "ann", "plan": "pro"})
        assert refused.status_code == 400
        assert list(refused.json()["errors"]) == ["plan"]
        upsert = client.post(f"{API}/users/update_or_create/", json={"custom_id": "ann"})
        assert upsert.status_code == 201
        assert upsert.json() == {"created": True, "id": 1}
        user = client.get(f"{API}/users-by-id/ann/").json()
        assert "user_key" not in user
        found = client.get(f"{API}/users/search/", params={"key": user["key"]})
        assert found.json()["id"] == 1
    with sandbox("--unknown-attributes", "ignore") as client:
        created = client.post(f"{API}/users/", json={"plan": "pro"})
        assert created.status_code == 201
        assert "plan" not in created.json()
        assert "user_key" in created.json()


def test_events_by_custom_id_over_a_socket() -> None:
    with sandbox() as client:
        client.post(f"{API}/users/", json={"custom_id": "ann"})
        answer = client.post(f"{API}/users-by-id/ann/events/", json={"name": "buy"})
        assert (answer.status_code, answer.json()) == (201, {"id": 1, "created": True})
        missing = client.post(f"{API}/users-by-id/bob/events/", json={"name": "buy"})
        assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})
        events = client.get("/__sandbox__/state").json()["events"]
        assert [(event["user_id"], event["name"]) for event in events] == [(1, "buy")]


@pytest.mark.parametrize("port", ["70000", "65536", "-1"])
def test_out_of_range_port_exits_2_with_one_line(port: str) -> None:
    _assert_usage_error(_run_to_exit("--port", port), "--port", "0..65535", port)


def test_port_in_use_exits_2_with_one_line() -> None:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        _assert_usage_error(_run_to_exit("--port", port), f"port {port}", "in use")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "abc"], ["--port", "abc"]),
        (["--force", "users-by-id"], ["bad --force 'users-by-id'", "ROUTE=STATUS"]),
        (["--force", "nowhere=500"], ["unknown route 'nowhere'"]),
        (["--error-rate", "2"], ["--error-rate", "between 0 and 1"]),
        (["--latency-ms", "nan"], ["--latency-ms"]),
        (["--rate-limit", "0"], ["--rate-limit", "> 0"]),
        (["--user-key-field", "userKey"], ["--user-key-field", "userKey", "user_key"]),
        (["--unknown-attributes", "drop"], ["--unknown-attributes", "drop", "reject"]),
        (["--no-such-option"], ["--no-such-option"]),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], words: list[str]) -> None:
    _assert_usage_error(_run_to_exit("--port", "0", *args), *words)


def test_sigterm_exits_143_quietly() -> None:
    process = _start("--port", "0")
    assert _first_line(process).startswith(BANNER)
    status, err = _stop(process, signal.SIGTERM)
    assert status == 143
    assert "Traceback" not in err


def test_banner_comes_only_once_the_port_accepts_connections() -> None:
    process = _start("--port", "0")
    try:
        line = _first_line(process)
        started = time.monotonic()
        answer = httpx.get(
            line.removeprefix("sandbox listening on ").strip() + "/__sandbox__/state"
        )
        assert answer.status_code == 200
        assert time.monotonic() - started < 5
    finally:
        status, err = _stop(process)
    assert status == 130
    assert "Traceback" not in err
