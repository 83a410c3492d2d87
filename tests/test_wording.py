"""Wordings a new user meets first (issue 14.9, 14.16): configs, non-object messages, help.

In process: the pure config parser, `Destination`, and typer's CliRunner.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY
from returns.result import Success
from typer.testing import CliRunner

import pipeline
from pipeline.cli.app import app
from pipeline.core.config import Config, parse_config
from pipeline.testing import FakeUserCom

CONFIG = {"apiKey": KEY, "appSubdomain": "acme"}


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(arg) for arg in args])


# --- configs (14.9) ------------------------------------------------------------------------------


def test_a_config_that_is_not_json_says_so_with_where(tmp_path: Path) -> None:
    config = tmp_path / "badcfg.json"
    config.write_text('{"apiKey": "k",\n', encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n", encoding="utf-8")
    for command in (("check",), ("send", events)):
        result = run(*command, "--config", config)
        assert result.exit_code == 2, result.output
        assert f"config {config} is not valid JSON (line 2 column 1)" in result.output
        assert "Expecting" not in result.output


def test_a_config_file_that_is_missing_says_so_plainly(tmp_path: Path) -> None:
    result = run("check", "--config", tmp_path / "nowhere.json")
    assert result.exit_code == 2
    assert f"cannot read config {tmp_path / 'nowhere.json'}: No such file or directory" in (
        result.output
    )
    assert "Errno" not in result.output


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("notadict", "Destination config must be an object with apiKey and appSubdomain; got str"),
        ([1, 2], "Destination config must be an object with apiKey and appSubdomain; got list"),
        (None, "Destination config is missing: give an object with apiKey and appSubdomain"),
    ],
)
def test_a_config_that_is_not_an_object_says_what_was_given(given: object, message: str) -> None:
    with pytest.raises(pipeline.ConfigError) as refused:
        pipeline.Destination(given)  # type: ignore[arg-type]
    assert str(refused.value) == message
    assert "notadict" not in str(refused.value)  # never echoed: it could be the key


def test_parse_config_takes_the_config_wrapper_as_destination_send_and_serve_do() -> None:
    wrapped = parse_config({"Config": CONFIG})
    assert wrapped == parse_config(CONFIG)
    assert isinstance(wrapped, Success)
    assert isinstance(wrapped.unwrap(), Config)
    assert pipeline.Destination({"Config": CONFIG}).config == wrapped.unwrap()


# --- a message that is not an object (14.9) ------------------------------------------------------


@pytest.mark.parametrize("message", ["string", None, [1], 5])
def test_plan_and_deliver_refuse_a_non_object_alike(message: Any) -> None:
    with pipeline.Destination(CONFIG, transport=FakeUserCom()) as destination:
        planned = destination.plan(message)
        outcome = destination.deliver(message)
    assert isinstance(planned, pipeline.PipelineError)
    assert outcome.status == "rejected"
    assert outcome.error == planned.message == "Event type is required"


def test_adeliver_refuses_a_non_object_as_plan_does() -> None:
    import asyncio

    async def adeliver() -> pipeline.Outcome:
        async with pipeline.Destination(CONFIG, transport=FakeUserCom()) as destination:
            return await destination.adeliver("string")  # type: ignore[arg-type]

    assert asyncio.run(adeliver()).error == "Event type is required"


def test_json_of_the_config_example_still_parses() -> None:
    example = Path(pipeline.__file__).parent / "examples" / "config.json"
    assert isinstance(parse_config(json.loads(example.read_text())), Success)


def test_serve_says_the_same_of_a_config_that_is_not_json(tmp_path: Path) -> None:
    from pipeline.serve.options import ServeConfigError, load_sources

    config = tmp_path / "badcfg.json"
    config.write_text('{"apiKey": "k",\n', encoding="utf-8")
    with pytest.raises(ServeConfigError) as refused:
        load_sources(config)
    assert str(refused.value) == f"config {config} is not valid JSON (line 2 column 1)"


# --- help (14.16) --------------------------------------------------------------------------------

COMMANDS = ("send", "sandbox", "serve", "demo", "check", "failed", "requeue", "explain", "report")


def command_list(output: str) -> dict[str, str]:
    """Each command of `usercom --help` and its description, wrapped lines joined."""
    listed: dict[str, str] = {}
    name = ""
    for line in output.partition("Commands:\n")[2].splitlines():
        first, _, rest = line.strip().partition(" ")
        if line.startswith("  ") and not line.startswith("   ") and first in COMMANDS:
            name = first
            listed[name] = rest.strip()
        elif name and line.strip():
            listed[name] += " " + line.strip()
    return listed


@pytest.mark.parametrize("columns", ["50", "80", "120"])
def test_the_command_list_gives_whole_sentences_at_any_width(columns: str) -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": columns})
    assert result.exit_code == 0
    listed = command_list(result.stdout)
    assert sorted(listed) == sorted(COMMANDS)
    for name, words in listed.items():
        assert "..." not in words, (name, words)
        assert words.endswith("."), (name, words)
        assert len(words) <= 64, (name, words)  # one line at 80 columns


def test_a_bare_usercom_prints_help_to_stdout_and_exits_0() -> None:
    result = CliRunner().invoke(app, [], prog_name="usercom")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: usercom [OPTIONS] COMMAND [ARGS]...")
    assert "Commands:" in result.stdout
    assert result.stderr == ""


def test_serve_help_says_config_and_ledger_are_needed_without_demo() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if "  --" in line}
    for option in ("--config", "--ledger"):
        assert "required unless --demo" in lines[option], lines[option]


def test_the_force_error_spells_the_syntax_as_the_help_does() -> None:
    help_text = CliRunner().invoke(app, ["sandbox", "--help"], env={"COLUMNS": "200"}).stdout
    assert "[METHOD ]ROUTE=STATUS[xN]" in help_text
    result = CliRunner().invoke(app, ["sandbox", "--force", "bad"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: bad --force 'bad': expected [METHOD ]ROUTE=STATUS[xN], "
        "like 'POST /users/update_or_create/=503x180'"
    )


def test_an_error_with_brackets_is_printed_as_written(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG), encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "--config", str(config), "--base-url", "x[b]"])
    assert result.exit_code == 2
    assert "got 'x[b]'" in result.stderr


# --- make demo at 80 columns (14.17) -------------------------------------------------------------


def test_the_demo_fits_80_columns_and_lists_company_members_plainly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(Path(pipeline.__file__).parent.parent)  # where `make demo` runs
    result = CliRunner().invoke(app, ["demo"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert lines[0].startswith("sandbox on http://127.0.0.1:")
    assert lines[1] == "sending pipeline/examples/events.jsonl as https://demo.user.com/api/public"
    companies = [line for line in lines if "company-1" in line or "company-2" in line]
    assert [cell.split("│")[4].strip() for cell in companies] == ["5", "10"]
    assert "[5]" not in result.stdout
    assert "member user ids" in result.stdout


def test_a_source_without_destination_says_what_to_give_not_where_a_spec_says_it() -> None:
    from pipeline.serve.options import ServeConfigError, parse_sources

    with pytest.raises(ServeConfigError) as refused:
        parse_sources({"sources": [{"writeKey": "wk"}]}, (), "config c.json")
    assert str(refused.value) == (
        "config c.json: source 1 has no destination: give it one app's apiKey, appSubdomain "
        "and mappings"
    )


# --- click's own usage errors are one line too (issue 14 follow-up) -----------------------------


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (
            ("serve", "--max-connections", "many"),
            "invalid value for '--max-connections': 'many' is not a valid",
        ),
        (("send", "x", "--rate", "abc"), "invalid value for '--rate': 'abc' is not a valid"),
        (("serve", "--max-queued", "1e3"), "invalid value for '--max-queued': '1e3' is not a"),
        (("send", "--concurency", "4"), "no such option: --concurency"),
        (("send",), "missing argument 'EVENTS'"),
        (("report",), "missing argument 'LEDGER'"),
        (("send", "x", "--rate"), "option '--rate' requires an argument"),
        (("sandbox", "--port", "x"), "invalid value for '--port': 'x' is not a valid integer"),
    ],
)
def test_a_usage_error_of_a_command_is_one_line_naming_its_help(
    args: tuple[str, ...], what: str
) -> None:
    result = CliRunner().invoke(app, list(args), prog_name="usercom", env={"COLUMNS": "80"})
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {what}"), line
    assert line.endswith(f"; see usercom {args[0]} --help"), line
    assert "Usage:" not in line
    assert "Try '" not in line


def test_an_unknown_flag_keeps_clicks_did_you_mean_hint() -> None:
    result = CliRunner().invoke(app, ["send", "--concurency", "4"], prog_name="usercom")
    assert result.exit_code == 2
    assert "--concurrency" in result.stderr.strip()


def test_a_usage_error_before_the_command_names_the_top_level_help() -> None:
    for args in (["sendd"], ["--bogus"]):
        result = CliRunner().invoke(app, args, prog_name="usercom")
        assert result.exit_code == 2, result.output
        [line] = result.stderr.splitlines()
        assert line.startswith("error: no such "), line
        assert line.endswith("; see usercom --help"), line
    assert "did you mean 'send'?" in CliRunner().invoke(app, ["sendd"]).stderr.lower()


def test_the_help_of_a_command_is_still_shown_whole() -> None:
    result = CliRunner().invoke(app, ["send", "--help"], prog_name="usercom")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: usercom send [OPTIONS] EVENTS")


# --- what help() and --help show describe in place, not by a spec's section number -------------


@pytest.mark.parametrize(
    "module", ["pipeline", "pipeline.compat", "pipeline.serve", "pipeline.testing"]
)
def test_a_public_modules_help_does_not_point_to_a_spec_section(module: str) -> None:
    text = importlib.import_module(module).__doc__ or ""
    assert "§" not in text, text
    assert "SPEC" not in text, text


def test_the_package_help_says_what_the_drop_in_functions_replace() -> None:
    assert "rudder-transformer" in (pipeline.__doc__ or "")


def test_the_sandbox_module_help_calls_a_force_value_a_rule() -> None:
    from pipeline.sandbox.__main__ import parser

    shown = parser().format_help()
    assert "--force RULE" in shown
    assert "SPEC" not in shown


# --- the report's title at 80 columns keeps the ledger's path whole -----------------------------


def test_the_report_title_keeps_the_ledger_path_whole_at_80_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.delivery.ledger import Ledger

    monkeypatch.chdir(tmp_path)
    ledger = Path("ledgers-kept-for-a-few-weeks-by-the-ops-team") / "demo.sqlite"
    ledger.parent.mkdir()
    with Ledger.open_writer(ledger, "acme") as writer:
        writer.enqueue("acme:m1", "h1", b"{}")
    result = CliRunner().invoke(app, ["report", str(ledger)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert any(str(ledger) in line for line in lines[:3]), lines[:3]


# --- explain labels each answer for what it means on its route ---------------------------------


def test_explain_labels_the_custom_id_event_routes_404_as_a_user_not_found_there(
    tmp_path: Path,
) -> None:
    from pipeline.delivery.ledger import Ledger

    base = "https://acme.user.com/api/public"
    requests = [
        f"POST {base}/users-by-id/u1/events/ -> 404",
        f"GET {base}/users-by-id/u1/ -> 200",
        f"POST {base}/events/ -> 201",
    ]
    ledger = tmp_path / "run.sqlite"
    with Ledger.open_writer(ledger, "acme") as writer:
        writer.enqueue("acme:t1", "h1", b"{}")
        writer.record("acme:t1", "delivered", 1, requests, None, [])
    result = CliRunner().invoke(app, ["explain", "t1", "--ledger", str(ledger)])
    assert result.exit_code == 0, result.output
    [first] = [line for line in result.stdout.splitlines() if "/users-by-id/u1/events/" in line]
    assert "no such route" not in first, first
    assert first.endswith("(user not found by this custom_id: falls back to the lookup)"), first


def test_a_404_is_no_such_route_only_where_the_route_itself_is_missing() -> None:
    from pipeline.cli.ledger_views import gloss
    from pipeline.delivery.outcome import Exchange

    base = "https://acme.user.com/api/public"
    assert gloss(Exchange.read(f"POST {base}/events/ -> 404")) == "no such route"
    assert gloss(Exchange.read(f"GET {base}/users-by-id/u1/ -> 404")) == "not found"
    assert gloss(Exchange.read(f"PUT {base}/users/7/ -> 404")) == "not found"
    assert gloss(Exchange.read(f"POST {base}/users-by-id/u1/events/ -> 404")) == (
        "user not found by this custom_id: falls back to the lookup"
    )
