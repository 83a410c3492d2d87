"""`usercom serve`'s smaller doors (issue 13.8): what a foreign web page can send, write keys
that can never authenticate, and keys kept off the command line (where `ps` shows them)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import (
    RAW_CONFIG,
    Running,
    identify,
    ledger_counts,
    options,
    post,
    service_in_thread,
    service_process,
    write_config,
)
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.serve import ServeConfigError
from pipeline.serve.options import parse_sources


@pytest.fixture
def open_service(sandbox: str, tmp_path: Path) -> Iterator[Running]:
    with service_in_thread(options(tmp_path / "serve.sqlite", sandbox, write_keys=())) as running:
        yield running


FORM_TYPES = ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"]


@pytest.mark.parametrize("content_type", [*FORM_TYPES, "multipart/form-data; boundary=x"])
@pytest.mark.parametrize("path", ["/v1/identify", "/v1/batch", "/webhook"])
def test_what_a_web_page_can_post_without_asking_is_refused_415(
    open_service: Running, tmp_path: Path, content_type: str, path: str
) -> None:
    event = identify("u1")
    body = {"batch": [event]} if path == "/v1/batch" else event
    answer = post(
        open_service.url,
        path,
        key=None,
        content=json.dumps(body).encode(),
        headers={"Content-Type": content_type},
    )
    assert answer.status_code == 415, answer.text
    assert "application/json" in answer.json()["message"]
    assert sum(ledger_counts(tmp_path / "serve.sqlite").values()) == 0


def test_the_transformer_api_refuses_form_types_too(open_service: Running) -> None:
    answer = post(
        open_service.url,
        "/v0/destinations/user",
        key=None,
        content=b"[]",
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status_code == 415


def test_with_no_write_key_a_foreign_page_is_refused_by_its_origin(
    open_service: Running, tmp_path: Path
) -> None:
    page = {"Origin": "https://evil.example"}
    answer = post(open_service.url, "/v1/identify", identify("u1"), key=None, headers=page)
    assert answer.status_code == 403, answer.text
    assert "--write-key" in answer.json()["message"]
    answer = post(open_service.url, "/v0/destinations/user", [], key=None, headers=page)
    assert answer.status_code == 403
    assert sum(ledger_counts(tmp_path / "serve.sqlite").values()) == 0
    # JSON without an Origin (an SDK, curl, a server) is what the open mode is for.
    assert post(open_service.url, "/v1/identify", identify("u1"), key=None).status_code == 200


def test_with_write_keys_json_from_a_page_with_the_key_is_accepted(
    sandbox: str, tmp_path: Path
) -> None:
    with service_in_thread(options(tmp_path / "serve.sqlite", sandbox)) as running:
        headers = {"Origin": "https://shop.example"}
        answer = post(running.url, "/v1/identify", identify("u1"), headers=headers)
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("key", ["wk:1", ":", "a:"])
def test_a_write_key_with_a_colon_is_refused_at_start(key: str) -> None:
    with pytest.raises(ServeConfigError, match="':'"):
        parse_sources(RAW_CONFIG, (key,), "test")
    raw = {"sources": [{"writeKey": key, "destination": RAW_CONFIG}]}
    with pytest.raises(ServeConfigError, match="':'"):
        parse_sources(raw, (), "test")


def _serve_fails(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `usercom serve` in-process up to its checks; its one-line refusal."""
    config = write_config(tmp_path / "config.json")
    ledger = tmp_path / "serve.sqlite"
    # --port -1 is refused after every check of the secrets and the config: should one of
    # those pass by mistake, the command still stops instead of serving.
    result = CliRunner().invoke(
        app,
        ["serve", "--config", str(config), "--ledger", str(ledger), *args, "--port", "-1"],
        env=env,
    )
    assert result.exit_code == 2, result.output
    assert not ledger.exists()
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_the_command_refuses_a_colon_key_in_one_line(tmp_path: Path) -> None:
    shown = _serve_fails(tmp_path, "--write-key", "wk:1")
    assert "':'" in shown
    assert "wk:1" not in shown


def test_write_keys_and_the_token_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    from pipeline.cli.secrets import serve_secrets

    keys = tmp_path / "keys"
    keys.write_text("# one key a line\nwk-file-1\n\n  wk-file-2  \n", encoding="utf-8")
    token = tmp_path / "token"
    token.write_text("t0ken\n", encoding="utf-8")
    env = {"USERCOM_WRITE_KEYS": "wk-env-1, wk-env-2", "USERCOM_TRANSFORMER_TOKEN": "env-t"}
    assert serve_secrets((), None, None, None, env) == (("wk-env-1", "wk-env-2"), "env-t")
    assert serve_secrets(("wk-cli",), keys, None, None, env) == (
        ("wk-cli", "wk-file-1", "wk-file-2"),
        "env-t",
    )
    assert serve_secrets((), None, "cli-t", None, env) == (("wk-env-1", "wk-env-2"), "cli-t")
    assert serve_secrets((), None, None, token, {}) == ((), "t0ken")
    assert serve_secrets((), None, None, None, {}) == ((), None)


def test_an_unreadable_or_empty_key_file_is_one_line(tmp_path: Path) -> None:
    shown = _serve_fails(tmp_path, "--write-key-file", str(tmp_path / "missing"))
    assert "cannot read --write-key-file" in shown
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    assert "holds no write key" in _serve_fails(tmp_path, "--write-key-file", str(empty))
    assert "':'" in _serve_fails(tmp_path, env={"USERCOM_WRITE_KEYS": "a:b"})
    assert "names no key" in _serve_fails(tmp_path, env={"USERCOM_WRITE_KEYS": " , "})


# --- a failed start leaves nothing behind (issue 14.12) ------------------------------------


def _start_fails(tmp_path: Path, ledger: Path, *args: str) -> str:
    config = write_config(tmp_path / "config.json")
    before = set(tmp_path.rglob("*"))
    result = CliRunner().invoke(
        app, ["serve", "--config", str(config), "--ledger", str(ledger), *args]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert set(tmp_path.rglob("*")) == before  # no ledger, no lock file, no folder
    return lines[0]


@pytest.mark.parametrize("ledger_name", ["serve.sqlite", "a-folder"])
def test_a_port_in_use_stops_the_start_before_any_ledger_is_made(
    tmp_path: Path, ledger_name: str
) -> None:
    if ledger_name == "a-folder":  # then the ledger would be a-folder/acme.sqlite
        (tmp_path / ledger_name).mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        shown = _start_fails(tmp_path, tmp_path / ledger_name, "--port", port)
    assert f"port {port} on 127.0.0.1 is in use" in shown


def test_a_host_that_cannot_be_listened_on_stops_the_start_before_any_ledger_is_made(
    tmp_path: Path,
) -> None:
    shown = _start_fails(tmp_path, tmp_path / "serve.sqlite", "--host", "192.0.2.1", "--port", "0")
    assert "cannot listen on 192.0.2.1:0" in shown


def test_the_demo_never_prints_a_write_key_of_the_operator(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("wk-operator-secret\n", encoding="utf-8")
    with service_process("--demo", "--write-key-file", keys, log=tmp_path / "log") as service:
        assert service.process is not None
        assert service.process.stdout is not None
        shown = service.process.stdout.readline() + service.process.stdout.readline()
        assert "curl -u $WRITE_KEY:" in shown
        assert "wk-operator-secret" not in shown + (tmp_path / "log").read_text()
        event = identify("u1")
        assert post(service.url, "/v1/identify", event, key="wk-operator-secret").is_success
