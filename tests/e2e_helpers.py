"""Shared pieces of the end-to-end tests: config, delivery runs, sandbox state, subprocesses.

Every test here talks to a real sandbox over loopback sockets: in a thread (``serve_in_thread``)
or, where a separate process is needed, ``python -m pipeline.cli sandbox --port 0``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from pipeline.core.config import Config, parse_config
from pipeline.delivery import DeliveryOptions, Incoming, Outcome, Summary, deliver, read_jsonl
from pipeline.delivery.loop import run as run_loop
from pipeline.testing.mix import standard_mix

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "pipeline" / "examples"
API_KEY = "e2e-SECRET-key-7f3a9c1b5d2e4f6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d"
SUBDOMAIN = "acme"
REAL_API = f"https://{SUBDOMAIN}.user.com/api/public/"
RAW_CONFIG: dict[str, Any] = {
    "apiKey": API_KEY,
    "appSubdomain": SUBDOMAIN,
    "userAttributesMapping": [{"from": "plan", "to": "subscription_plan"}],
    "userEvents": [
        {
            "rsEventName": "Order Completed",
            "userEventName": "order_completed",
            "eventProperties": [{"from": "price", "to": "value"}],
        }
    ],
    "companyAttributesMapping": [{"from": "industry", "to": "sector"}],
}
FAST = DeliveryOptions(concurrency=8, backoff_initial=0.01, backoff_max=0.05, max_seconds=15)
"""Small backoff so that retries cost milliseconds (429 answers still wait Retry-After: 1 s)."""
CLI = (sys.executable, "-m", "pipeline.cli")


def texts(outcome: Outcome) -> tuple[str, ...]:
    """An outcome's requests as `--out` and the ledger write them: `METHOD URL -> answer`."""
    return tuple(str(request) for request in outcome.requests)


def config() -> Config:
    """The test destination config, parsed."""
    return parse_config(RAW_CONFIG).unwrap()


def write_config(path: Path, raw: dict[str, Any] | None = None) -> Path:
    path.write_text(json.dumps(RAW_CONFIG if raw is None else raw), encoding="utf-8")
    return path


def key_of(message_id: str) -> str:
    """The ledger key of an event with a messageId (DELIVERY §4): the app, then the id."""
    return f"{SUBDOMAIN}:{message_id}"


def content_key(event: dict[str, Any]) -> str:
    """The key of an event without a messageId: the app and the SHA-256 of its canonical JSON
    (keys sorted, no insignificant whitespace, UTF-8)."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{SUBDOMAIN}:sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def raw_key(line: str | bytes) -> str:
    """The key of a line that is no event (not UTF-8, not JSON, not an object): its raw bytes."""
    data = line.encode() if isinstance(line, str) else line
    return f"{SUBDOMAIN}:sha256:{hashlib.sha256(data).hexdigest()}"


def lines_of(events: Iterable[dict[str, Any]]) -> list[str]:
    return [json.dumps(event) for event in events]


def mix_lines(users: int) -> list[str]:
    """The standard mix (1 identify, 6 tracks, 2 pages per user; a group every fifth user)."""
    return lines_of(standard_mix(users))


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@dataclass
class Delivered:
    """What one library-level run produced: the summary and the outcomes in arrival order."""

    summary: Summary
    heard: list[tuple[Incoming, Outcome]] = field(default_factory=list)

    @property
    def outcomes(self) -> list[Outcome]:
        return [outcome for _, outcome in self.heard]

    def by_key(self) -> dict[str, Outcome]:
        keyed = {outcome.key: outcome for outcome in self.outcomes}
        assert len(keyed) == len(self.outcomes), "two outcomes share a key"
        return keyed

    def statuses(self) -> Counter[str]:
        return Counter(outcome.status for outcome in self.outcomes)


def deliver_lines(
    lines: Sequence[str], base_url: str, options: DeliveryOptions = FAST, cfg: Config | None = None
) -> Delivered:
    """Run the delivery engine over JSONL lines against ``base_url`` (a sandbox).

    The run starts with its probe (the sandbox answers it) unless ``options.probe`` is off.
    """
    heard: list[tuple[Incoming, Outcome]] = []
    run_options = dataclasses.replace(options, base_url=base_url)

    def hear(incoming: Incoming, outcome: Outcome) -> None:
        heard.append((incoming, outcome))

    summary = run_loop(
        deliver(read_jsonl(lines, cfg or config()), cfg or config(), run_options, hear)
    )
    return Delivered(summary, heard)


def sandbox_state(base_url: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/__sandbox__/state", timeout=10)
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


def users_by_id(state: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {user["id"]: user for user in state["users"]}


def user_ids_by_custom_id(state: dict[str, Any]) -> dict[str, int]:
    return {user["custom_id"]: user["id"] for user in state["users"]}


def track_occurrences(state: dict[str, Any]) -> Counter[tuple[str, str, int]]:
    """(user custom_id, event name, data.position) -> how often the sandbox stored it."""
    owner = {user["id"]: user["custom_id"] for user in state["users"]}
    return Counter(
        (owner[event["user_id"]], event["name"], event["data"]["position"])
        for event in state["events"]
    )


def page_occurrences(state: dict[str, Any]) -> Counter[tuple[str, str]]:
    """(user custom_id, page path) -> how often the sandbox stored that site view."""
    owner = {user["user_key"]: user["custom_id"] for user in state["users"]}
    return Counter((owner[view["client_user"]], view["page_path"]) for view in state["site_views"])


def expected_tracks(lines: Iterable[str]) -> Counter[tuple[str, str, int]]:
    """The track occurrences a mix should leave, with the example config's rename applied."""
    renames = {"Order Completed": "order_completed"}
    found: Counter[tuple[str, str, int]] = Counter()
    for line in lines:
        event = json.loads(line)
        if event["type"] == "track":
            name = renames.get(event["event"], event["event"])
            found[(event["userId"], name, event["properties"]["position"])] += 1
    return found


def expected_pages(lines: Iterable[str]) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for line in lines:
        event = json.loads(line)
        if event["type"] == "page":
            found[(event["userId"], event["context"]["page"]["path"])] += 1
    return found


def expected_memberships(lines: Iterable[str]) -> dict[str, set[str]]:
    """company custom_id -> custom_ids of the users whose group call names it."""
    members: dict[str, set[str]] = {}
    for line in lines:
        event = json.loads(line)
        if event["type"] == "group":
            members.setdefault(str(event["groupId"]), set()).add(str(event["userId"]))
    return members


def people(state: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Users as comparable facts (no generated ids, keys or times), sorted."""
    return sorted(
        (
            user["custom_id"],
            user["email"],
            user["name"],
            user["gender"],
            user.get("subscription_plan"),
            user.get("age"),
            tuple(sorted(company["name"] for company in user["companies"])),
        )
        for user in state["users"]
    )


def firms(state: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Companies as comparable facts: custom id, name, attributes and member custom_ids."""
    owner = {user["id"]: user["custom_id"] for user in state["users"]}
    return sorted(
        (
            company["custom_id"],
            company["name"],
            company["address"],
            company.get("sector"),
            tuple(sorted(owner[member] for member in company["employees"])),
        )
        for company in state["companies"]
    )


def memberships(state: dict[str, Any]) -> dict[str, set[str]]:
    owner = {user["id"]: user["custom_id"] for user in state["users"]}
    return {
        company["custom_id"]: {owner[member] for member in company["employees"]}
        for company in state["companies"]
    }


# Wide, colourless, UTF-8 output from rich, so that tables are easy to read back.
CLI_ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "PYTHONIOENCODING": "utf-8"}


def cli_env() -> dict[str, str]:
    return {**os.environ, **CLI_ENV}


class Finished(Protocol):
    """What a finished command tells: a `subprocess.CompletedProcess` or an `Invoked`."""

    @property
    def returncode(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


@dataclass(frozen=True)
class Invoked:
    """A command run in this process, told as `subprocess.run` tells one."""

    returncode: int
    stdout: str
    stderr: str


def invoke_cli(*args: str | Path, stdin: str | None = None) -> Invoked:
    """Run `usercom ARGS` in this process (typer's CliRunner) as `run_cli` runs it in another:
    same environment, same folder, stdout and stderr apart. An exception the command lets
    escape fails the test (a process would have printed a traceback)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    with contextlib.chdir(REPO):
        result = CliRunner().invoke(
            app,
            [str(arg) for arg in args],
            input=stdin,
            env=CLI_ENV,
            prog_name="usercom",
            catch_exceptions=False,
        )
    return Invoked(result.exit_code, result.stdout, result.stderr)


def run_cli(
    *args: str | Path, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pipeline.cli ARGS`` to completion; output captured as text."""
    return subprocess.run(
        [*CLI, *(str(arg) for arg in args)],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=cli_env(),
        cwd=REPO,
        check=False,
    )


def table_value(output: str, label: str) -> str:
    """The value of one row (``│ label │ value │``) of a rich summary table."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.replace("|", "│").split("│")]
        cells = [cell for cell in cells if cell]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no {label!r} row in:\n{output}")


def read_outcomes(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    assert all(isinstance(row, dict) for row in rows)
    return rows


@contextmanager
def sandbox_process(*options: str, log: Path, startup_s: float = 15) -> Iterator[str]:
    """``usercom sandbox --port 0 OPTIONS`` in its own process; yields its base URL."""
    with log.open("w", encoding="utf-8") as errors:
        process = subprocess.Popen(
            [*CLI, "sandbox", "--port", "0", *options],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=cli_env(),
            cwd=REPO,
        )
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], startup_s)
            assert ready, f"the sandbox did not start: {log.read_text()}"
            line = process.stdout.readline().strip()
            prefix = "sandbox listening on "
            assert line.startswith(prefix), f"unexpected first line {line!r}"
            url = line.removeprefix(prefix)
            assert url.startswith("http://127.0.0.1:"), url
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def wait_until(check: Callable[[], object], timeout: float, step: float = 0.01) -> bool:
    """Poll ``check()`` until it is truthy or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return bool(check())
