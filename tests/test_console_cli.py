"""`usercom serve --console-token` / `USERCOM_CONSOLE_TOKEN`, and `make serve` (`usercom serve
--demo`) printing the console's URL and a demo token (DELIVERY §8)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from console_helpers import TOKEN
from serve_helpers import service_process

from pipeline.cli.checks import UsageError
from pipeline.cli.secrets import CONSOLE_TOKEN_ENV, console_secret


def test_the_console_token_comes_from_the_option_else_the_environment() -> None:
    assert console_secret("opt", {CONSOLE_TOKEN_ENV: "env"}) == "opt"
    assert console_secret(None, {CONSOLE_TOKEN_ENV: " env "}) == "env"
    assert console_secret(None, {}) is None


@pytest.mark.parametrize(("given", "env"), [(" ", {}), (None, {CONSOLE_TOKEN_ENV: ""})])
def test_an_empty_console_token_is_refused(given: str | None, env: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="empty"):
        console_secret(given, env)


def test_the_demo_prints_the_console_url_and_a_demo_token_that_signs_in(tmp_path: Path) -> None:
    with service_process("--demo", log=tmp_path / "log") as service:
        assert service.process is not None
        assert service.process.stdout is not None
        lines = [service.process.stdout.readline() for _ in range(5)]
        [shown] = [line for line in lines if "console: " in line]
        url = shown.split("console: ", 1)[1].split()[0]
        token = shown.rsplit("demo token ", 1)[1].rstrip(")\n")
        assert url == f"{service.url}/console/"
        assert len(token) >= 16
        answer = httpx.post(f"{url}signin", data={"token": token}, follow_redirects=False)
        assert answer.status_code == 303
        service.signal(signal.SIGTERM)
        assert service.wait(30) == 0


def test_a_console_token_of_the_operators_own_is_never_printed(tmp_path: Path) -> None:
    with service_process("--demo", "--console-token", TOKEN, log=tmp_path / "log") as service:
        assert service.process is not None
        assert service.process.stdout is not None
        lines = [service.process.stdout.readline() for _ in range(5)]
        assert any(f"{service.url}/console/" in line for line in lines)
        assert not any(TOKEN in line for line in lines)
        service.signal(signal.SIGTERM)
        assert service.wait(30) == 0
