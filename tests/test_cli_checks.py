"""`usercom send`'s option checks (pipeline.cli.checks): normalized values or one-line errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.cli.checks import (
    UsageError,
    concurrency,
    events_source,
    ledger_path,
    origin,
    out_path,
    rate,
)

# --base-url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("https://h/", "https://h"),
        ("https://acme.user.com", "https://acme.user.com"),
        ("HTTPS://Acme.User.com:443/", "https://acme.user.com:443"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("http://[0:0::1]/", "http://[::1]"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://h:65535", "http://h:65535"),
        ("http://sandbox_1.internal", "http://sandbox_1.internal"),
        ("http://bücher.example", "http://bücher.example"),
    ],
)
def test_origin_accepts_and_normalizes(raw: str, expected: str) -> None:
    assert origin(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("http://[::1", "with the IPv6 address closed by ']', like http://[::1]:8000"),
        ("http://[::1]x", "only ':port' after the IPv6 address"),
        ("http://[nope]:80", "valid IPv6 address in brackets"),
        ("http://::1:8000", "IPv6 address in brackets"),
        ("garbage", "starting with http:// or https://"),
        ("", "with no spaces or control characters"),
        ("127.0.0.1:8000", "starting with http:// or https://"),
        ("http://127.0.0.1:8000/api/public", "with no path (/api/public is added for you)"),
        ("https://acme.user.com/api/public/", "with no path"),
        ("http://h//", "with no path"),
        ("http://h?x=1", "with no query"),
        ("http://h/?", "with no query"),
        ("http://h/#top", "with no fragment"),
        ("ftp://x", "with the scheme http or https"),
        ("file:///etc/passwd", "with the scheme http or https"),
        ("http://h:0", "with a port from 1 to 65535"),
        ("http://h:70000", "with a port from 1 to 65535"),
        ("http://h:", "with a port from 1 to 65535"),
        ("http://h:80a", "with a port from 1 to 65535"),
        ("http://h:-1", "with a port from 1 to 65535"),
        ("http://user:pw@h", "with no user name or password"),
        ("http://@h", "with no user name or password"),
        ("http://", "with a host"),
        ("http:///path", "with a host"),
        ("http://:8000", "with a valid host name"),
        ("http://-h-", "with a valid host name"),
        ("http://a..b", "with a valid host name"),
        ("http://h]", "with a valid host name"),
        (" http://h", "with no spaces or control characters"),
        ("http://h\n", "with no spaces or control characters"),
    ],
)
def test_origin_refuses_with_one_line_naming_problem_and_fix(raw: str, problem: str) -> None:
    with pytest.raises(UsageError) as refused:
        origin(raw)
    message = str(refused.value)
    assert message.startswith("--base-url must be an origin like https://host[:port], ")
    assert problem in message
    assert message.endswith(f": got {raw!r}")
    assert "\n" not in message


def test_origin_message_for_a_path() -> None:
    with pytest.raises(UsageError, match=r"^--base-url must be an origin") as refused:
        origin("http://x/api/public")
    assert str(refused.value) == (
        "--base-url must be an origin like https://host[:port], with no path "
        "(/api/public is added for you): got 'http://x/api/public'"
    )


# --rate and --concurrency


@pytest.mark.parametrize(("raw", "expected"), [(None, None), (0.1, 0.1), (10, 10.0), (1e6, 1e6)])
def test_rate_accepts(raw: float | None, expected: float | None) -> None:
    assert rate(raw) == expected


@pytest.mark.parametrize("raw", [float("inf"), float("-inf"), float("nan"), 0, 0.0, -1, -0.5])
def test_rate_refuses(raw: float) -> None:
    with pytest.raises(UsageError, match=r"^--rate must be a finite number .* > 0.*: got "):
        rate(raw)


@pytest.mark.parametrize("raw", [1, 8, 1024])
def test_concurrency_accepts(raw: int) -> None:
    assert concurrency(raw) == raw


@pytest.mark.parametrize("raw", [0, -1, 1025, 10**9])
def test_concurrency_refuses(raw: int) -> None:
    with pytest.raises(UsageError) as refused:
        concurrency(raw)
    assert str(refused.value) == f"--concurrency must be an integer from 1 to 1024: got {raw}"


# --out


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "track"}\n')
    return path


def test_out_accepts_stdout_none_and_new_or_existing_files(events: Path, tmp_path: Path) -> None:
    assert out_path(None, str(events)) is None
    assert out_path(Path("-"), str(events)) == Path("-")
    assert out_path(Path("-"), "-") == Path("-")
    new = tmp_path / "outcomes.jsonl"
    assert out_path(new, str(events)) == new
    new.write_text("")
    assert out_path(new, str(events)) == new
    assert out_path(new, "-") == new


def test_out_relative_to_the_current_folder(
    events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert out_path(Path("outcomes.jsonl"), str(events)) == Path("outcomes.jsonl")
    with pytest.raises(UsageError, match="is the input file"):
        out_path(Path("events.jsonl"), str(events))


@pytest.mark.parametrize(
    "same",
    [
        lambda events: events,  # the same path
        lambda events: events.parent / "." / events.name,  # spelled differently
        lambda events: events.parent / "sub" / ".." / events.name,
    ],
)
def test_out_refuses_the_input_file(events: Path, same: Callable[[Path], Path]) -> None:
    (events.parent / "sub").mkdir()
    out = same(events)
    with pytest.raises(UsageError) as refused:
        out_path(out, str(events))
    assert str(refused.value) == (
        f"--out is the input file {str(events)!r}: writing it would destroy the events; "
        "choose another path"
    )


def test_out_refuses_the_input_file_through_a_symlink(events: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.jsonl"
    link.symlink_to(events)
    with pytest.raises(UsageError, match="is the input file"):
        out_path(link, str(events))
    with pytest.raises(UsageError, match="is the input file"):
        out_path(events, str(link))


def test_out_refuses_a_hard_link_to_the_input(events: Path, tmp_path: Path) -> None:
    hard = tmp_path / "hard.jsonl"
    os.link(events, hard)
    with pytest.raises(UsageError, match="is the input file"):
        out_path(hard, str(events))


def test_out_refuses_a_missing_folder(events: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(UsageError) as refused:
        out_path(missing / "outcomes.jsonl", str(events))
    assert str(refused.value) == (
        f"--out's folder does not exist: {str(missing)!r} (create it first)"
    )


def test_out_refuses_a_folder_and_a_file_as_folder(events: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--out is a folder: give a file path, like "):
        out_path(tmp_path, str(events))
    with pytest.raises(UsageError) as refused:
        out_path(events / "outcomes.jsonl", "-")
    assert str(refused.value) == f"--out's folder is a file, not a folder: {str(events)!r}"


def test_out_refuses_an_unwritable_folder_or_file(
    events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # os.access, not chmod: root (as in containers) may write anywhere.
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    existing = tmp_path / "existing.jsonl"
    existing.write_text("")
    real_access = os.access

    def access(path: object, mode: int) -> bool:
        if Path(str(path)) in (readonly, existing) and mode & os.W_OK:
            return False
        return real_access(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(UsageError) as refused:
        out_path(readonly / "outcomes.jsonl", str(events))
    assert str(refused.value) == f"--out's folder is not writable: {str(readonly)!r}"
    with pytest.raises(UsageError, match=r"^--out exists and is not writable"):
        out_path(existing, str(events))


# --ledger


def test_ledger_accepts_none_and_a_file_in_an_existing_folder(tmp_path: Path) -> None:
    assert ledger_path(None) is None
    assert ledger_path(tmp_path / "send.ledger") == tmp_path / "send.ledger"
    (tmp_path / "send.ledger").write_bytes(b"")
    assert ledger_path(tmp_path / "send.ledger") == tmp_path / "send.ledger"


def test_ledger_refuses_a_missing_folder_and_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as refused:
        ledger_path(tmp_path / "missing" / "send.ledger")
    assert str(refused.value) == (
        f"--ledger's folder does not exist: {str(tmp_path / 'missing')!r} (create it first)"
    )
    with pytest.raises(UsageError, match=r"^--ledger is a folder: give a file path, like "):
        ledger_path(tmp_path)


# EVENTS


def test_events_source_accepts_stdin_and_a_readable_file(events: Path) -> None:
    assert events_source("-") == "-"
    assert events_source(str(events)) == str(events)


def test_events_source_refuses(events: Path, tmp_path: Path) -> None:
    cases = {
        str(tmp_path / "nope.jsonl"): "EVENTS file not found: ",
        str(tmp_path): "EVENTS is a folder, not a file: ",
        "/dev/null": "EVENTS is not a regular file: ",
    }
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases[str(fifo)] = "EVENTS is not a regular file: "
    for raw, start in cases.items():
        with pytest.raises(UsageError) as refused:
            events_source(raw)
        assert str(refused.value).startswith(f"{start}{raw!r}")


def test_events_source_refuses_an_unreadable_file(
    events: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.R_OK)
    with pytest.raises(UsageError, match=r"^EVENTS is not readable: "):
        events_source(str(events))
