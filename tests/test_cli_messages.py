"""What a new user reads (issue 7, item 8): help, version, config messages, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_helpers import RAW_CONFIG, invoke_cli, lines_of, write_config, write_lines

COMMANDS = ("send", "check", "failed", "requeue", "explain", "report", "sandbox", "demo")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_plain_and_speaks_the_users_language(command: str) -> None:
    shown = invoke_cli(command, "-h")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: ")
    for placeholder in ("<bool>", "<str>", "{", "SPEC"):
        assert placeholder not in shown.stdout, (placeholder, shown.stdout)


def test_version() -> None:
    shown = invoke_cli("--version")
    assert shown.returncode == 0
    assert shown.stdout.startswith("usercom ")


def test_a_number_where_a_key_belongs_is_named_as_such(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "e.jsonl", lines_of([{"type": "identify", "userId": "u"}]))
    config = write_config(tmp_path / "c.json", {**RAW_CONFIG, "apiKey": 12345})
    result = invoke_cli("send", events, "--config", config)
    assert result.returncode == 2
    assert "apiKey must be a string" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ignored_mapping_entries_are_warned_about(tmp_path: Path) -> None:
    raw = {
        **RAW_CONFIG,
        "userAttributesMapping": [{"from": "plan", "to": ""}, {"from": " ", "to": "x"}, "oops"],
    }
    config = write_config(tmp_path / "c.json", raw)
    events = write_lines(tmp_path / "e.jsonl", lines_of([{"type": "identify", "userId": "u"}]))
    result = invoke_cli("send", events, "--config", config, "--dry-run")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, result.stderr
    assert "userAttributesMapping entry 1 ('plan') is ignored: its 'to' is empty" in warnings[0]
    assert json.dumps(raw["apiKey"])[1:-1] not in result.stderr


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_the_sandbox_refuses_a_port_it_cannot_have(port: str) -> None:
    result = invoke_cli("sandbox", "--port", port)
    assert result.returncode == 2
    assert "--port must be from 0 to 65535" in result.stderr
    assert "Traceback" not in result.stderr
