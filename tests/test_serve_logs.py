"""`usercom serve`'s stderr is one log (issue 14.18): logfmt lines only, each warning once.

The service is a process (it runs until SIGTERM), so the start-up warnings are read from a
real one; which warnings there are, and that each is told once, is pure and tested here too.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from serve_helpers import RAW_CONFIG, WRITE_KEY, service_process, write_config

from pipeline.serve.logs import ignored_entries

BAD_MAPPING = {"userAttributesMapping": [{"from": "plan", "to": ""}]}
NOTE = "userAttributesMapping entry 1 ('plan') is ignored: its 'to' is empty"


def stderr_of(tmp_path: Path, *args: str | Path) -> list[str]:
    log = tmp_path / "stderr.log"
    with service_process(*args, "--ledger", tmp_path / "ledgers", log=log) as service:
        service.signal(signal.SIGTERM)
        assert service.wait(30) == 0
    return [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_one_note_of_several_apps_is_one_warning_naming_them() -> None:
    notes = {"acme": (NOTE, "other"), "beta": (NOTE,), "gamma": ()}
    assert ignored_entries(notes) == [(NOTE, "acme,beta"), ("other", "acme")]


def test_start_up_warnings_are_logfmt_lines_like_the_rest(tmp_path: Path) -> None:
    (tmp_path / "ledgers").mkdir()
    config = write_config(tmp_path / "config.json", {**RAW_CONFIG, **BAD_MAPPING})
    lines = stderr_of(tmp_path, "--config", config)
    assert lines, "expected the start-up warnings"
    assert all(line.startswith("ts=") and " level=" in line for line in lines), lines
    [ignored] = [line for line in lines if "event=config_entry_ignored" in line]
    assert " level=warning " in ignored
    assert f'apps=acme note="{NOTE}"' in ignored
    [open_ingest] = [line for line in lines if "event=ingest_open" in line]
    assert "no --write-key: anyone who can reach 127.0.0.1 may send events" in open_ingest


def test_a_mapping_shared_by_several_sources_is_warned_about_once(tmp_path: Path) -> None:
    sources = [
        {"writeKey": f"{WRITE_KEY}-{app}", "destination": {**RAW_CONFIG, **BAD_MAPPING, **sub}}
        for app, sub in (("a", {"appSubdomain": "acme"}), ("b", {"appSubdomain": "beta"}))
    ]
    config = tmp_path / "sources.json"
    config.write_text(json.dumps({"sources": sources}), encoding="utf-8")
    lines = stderr_of(tmp_path, "--config", config)
    assert all(line.startswith("ts=") for line in lines), lines
    [ignored] = [line for line in lines if "event=config_entry_ignored" in line]
    assert "apps=acme,beta" in ignored
