"""Client data on the terminal is inert (issue 13, item 15 kinds): a messageId, an error
quoting a client value or a path holding ESC, C0, DEL or C1 controls reaches stderr/stdout
with those characters shown as visible escapes, never as an OSC 8 link or a DCS query."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from e2e_helpers import API_KEY, config, write_config
from rich.console import Console
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.cli.plain import plain
from pipeline.cli.sending import Tally, final_words, run_send, summary_table
from pipeline.delivery import DeliveryOptions, Outcome, Summary
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.serve.logs import line
from pipeline.testing import FakeUserCom

FAST = DeliveryOptions(concurrency=2, backoff_initial=0.01, backoff_max=0.02, max_seconds=10)
OSC8 = "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\"
DCS = "\x1bP1$qm\x1b\\"


def raw_controls(text: str) -> list[str]:
    """The terminal-active sequences client data could start: ESC ] (OSC), ESC P (DCS), C1."""
    found = [seq for seq in ("\x1b]", "\x1bP", "\x1b\\", "\x07") if seq in text]
    return found + [char for char in text if 0x80 <= ord(char) < 0xA0]


def test_every_control_character_is_shown_as_a_visible_escape() -> None:
    assert plain(OSC8) == "\\x1b]8;;https://evil.example\\x1b\\click\\x1b]8;;\\x1b\\"
    assert plain(DCS) == "\\x1bP1$qm\\x1b\\"
    assert plain("a\x00b\x7fc\x85d\x9be\u202ef") == "a\\x00b\\x7fc\\x85d\\x9be\\u202ef"
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        shown = plain(chr(code))
        assert shown == f"\\x{code:02x}", (code, shown)
        assert shown.isprintable()
    assert plain("plain text, é € 日本") == "plain text, é € 日本"


def terminal() -> tuple[Console, io.StringIO]:
    written = io.StringIO()
    return Console(file=written, force_terminal=True, width=400, color_system=None), written


def send_on_a_terminal(lines: list[dict[str, Any]], err: Console) -> Summary:
    source = io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode())
    summary, _tally = run_send(
        source, config(), ledger=None, options=FAST, sink=None, err=err,
        total=len(lines), retry_rejected=False, transport=FakeUserCom(api_key=API_KEY),
    )  # fmt: skip
    return summary


def test_a_message_id_with_an_osc_8_link_or_dcs_query_is_inert_on_the_bar() -> None:
    err, written = terminal()
    # No user id, email or anonymousId: rejected, and the bar names its key.
    events = [
        {"type": "track", "event": "Seen", "messageId": f"a{OSC8}"},
        {"type": "track", "event": "Seen", "messageId": f"b{DCS}"},
    ]
    summary = send_on_a_terminal(events, err)
    assert summary.counts["rejected"] == 2
    shown = written.getvalue()
    assert not raw_controls(shown), shown
    assert "\\x1b]8;;https://evil.example" in shown or "\\x1bP1$qm" in shown


def test_the_summary_and_final_words_show_client_values_inert() -> None:
    summary = Summary()
    summary.add(Outcome("acme:m1", "rejected", error=f"User.com refused {OSC8} and {DCS}"))
    summary.fault = f"User.com answered a redirect (302) for /users-by-id/{OSC8}/events/"
    err, written = terminal()
    err.print(summary_table(summary, "usercom send"))
    for words in final_words(summary, Tally(), has_ledger=True):
        err.print(words, highlight=False, markup=False)
    shown = written.getvalue()
    assert not raw_controls(shown), shown
    assert "\\x1b]8;;https://evil.example" in shown
    assert "\\x1bP1$qm" in shown


def test_a_path_with_controls_is_inert_in_a_refusal_and_a_notice(tmp_path: Path) -> None:
    # A file name cannot hold "/": the link here points nowhere, and is still a link.
    link = "\x1b]8;;evil\x1b\\click\x1b]8;;\x1b\\"
    config_path = tmp_path / f"c{link}{DCS}.json"
    config_path.write_text(json.dumps({"apiKey": API_KEY}), encoding="utf-8")
    empty = tmp_path / f"e{link}.jsonl"
    empty.write_text("", encoding="utf-8")
    refused = CliRunner().invoke(app, ["send", str(empty), "--config", str(config_path)])
    assert refused.exit_code == 2, refused.output
    good = write_config(tmp_path / "good.json")
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        nothing = CliRunner().invoke(
            app, ["send", str(empty), "--config", str(good), "--base-url", url]
        )
    assert nothing.exit_code == 0, nothing.output
    for shown in (refused.output, nothing.output):
        assert not raw_controls(shown), shown
        assert "\\x1b]8;;evil" in shown, shown


def test_the_service_log_line_shows_del_c1_and_bidi_as_json_escapes() -> None:
    # json.dumps escapes C0 only: DEL, C1 (0x9b is CSI) and bidi overrides would pass as they
    # are. The value stays a JSON string that reads back to what the client sent.
    error = f"bad id a{OSC8}\x7f\x9b31m\u202eb"
    shown = line("event_rejected", error=error)
    assert not raw_controls(shown), shown
    assert "\x7f" not in shown, shown
    assert "\u202e" not in shown, shown
    assert json.loads(shown.removeprefix("event=event_rejected error=")) == error
