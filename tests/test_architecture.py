"""The shape of the package (DESIGN §1-§2): effects live in a few modules, the API is listed.

Every module of `pipeline/` is parsed with `ast` (never imported) and checked for I/O, clock,
randomness and HTTP-client use. Only the modules in EFFECT_MODULES may have them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import pipeline

PACKAGE = Path(pipeline.__file__).resolve().parent

# Modules allowed to do I/O (paths relative to pipeline/; "dir/*" is everything under dir/).
# Extend this list deliberately: everything else must stay pure (DESIGN §1).
EFFECT_MODULES: tuple[str, ...] = (
    "runner.py",  # the effect runner: the only place that sends requests
    "compat.py",  # hands the shared client or a transport to the runner
    "destination.py",  # owns one pooled client per Destination
    "shared_client.py",  # the one shared client of the module-level API
    "listening.py",  # the listening socket of the sandbox and the service
    "cli/*",  # the `usercom` command
    "delivery/*",  # the delivery engine (retries, rate limits, clocks)
    "testing/*",  # test helpers
    "sandbox/*",  # the local User.com simulator
    "serve/*",  # the live service: sockets, the ledger thread, clocks
    "console/app.py",  # the service's web console: its clock, its readers of the ledgers
)

# What counts as an effect.
HTTPX_CLIENT_CLASSES = frozenset({"Client", "AsyncClient", "HTTPTransport", "AsyncHTTPTransport"})
FORBIDDEN_MODULES = frozenset(
    {"socket", "sqlite3", "subprocess", "urllib.request", "random", "time"}
)
FORBIDDEN_CALLS = frozenset({"open"})
CLOCK_ATTRIBUTES = frozenset({"now", "utcnow", "today"})
CLOCK_OWNERS = frozenset({"datetime", "date"})


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"pipeline/{self.module}:{self.line}: {self.what}"


def _matches(entry: str, module: str) -> bool:
    return module.startswith(entry[:-1]) if entry.endswith("/*") else module == entry


def allowed(module: str) -> bool:
    return any(_matches(entry, module) for entry in EFFECT_MODULES)


def modules() -> list[str]:
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _forbidden_module(name: str) -> bool:
    return any(name == banned or name.startswith(f"{banned}.") for banned in FORBIDDEN_MODULES)


def violations(source: str, module: str) -> Iterator[Violation]:
    """Every effect in one module's source."""
    tree = ast.parse(source, filename=module)
    httpx_names = {"httpx"} | {
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "httpx" and alias.asname
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _forbidden_module(alias.name):
                    yield Violation(module, node.lineno, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _forbidden_module(node.module) or _forbidden_module(full):
                    yield Violation(module, node.lineno, f"from {node.module} import {alias.name}")
                if node.module.split(".")[0] == "httpx" and alias.name in HTTPX_CLIENT_CLASSES:
                    yield Violation(module, node.lineno, f"from httpx import {alias.name}")
        elif isinstance(node, ast.Attribute):
            owner = _dotted(node.value)
            if owner in httpx_names and node.attr in HTTPX_CLIENT_CLASSES:
                yield Violation(module, node.lineno, f"{owner}.{node.attr}")
            clock = owner is not None and owner.split(".")[-1] in CLOCK_OWNERS
            if clock and node.attr in CLOCK_ATTRIBUTES:
                yield Violation(module, node.lineno, f"{owner}.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            yield Violation(module, node.lineno, f"{node.func.id}(…)")


@pytest.mark.parametrize("module", [m for m in modules() if not allowed(m)])
def test_pure_modules_have_no_effects(module: str) -> None:
    source = (PACKAGE / module).read_text(encoding="utf-8")
    found = [str(v) for v in violations(source, module)]
    assert not found, "effects outside EFFECT_MODULES:\n" + "\n".join(found)


def test_every_allow_list_entry_names_something() -> None:
    """A stale entry would silently allow effects in a module added later under its name."""
    all_modules = modules()
    for entry in EFFECT_MODULES:
        assert any(_matches(entry, m) for m in all_modules), entry


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import httpx\nhttpx.Client()", ["httpx.Client"]),
        ("import httpx as h\nh.AsyncClient", ["h.AsyncClient"]),
        ("from httpx import Client", ["from httpx import Client"]),
        ("import socket", ["import socket"]),
        ("import sqlite3", ["import sqlite3"]),
        ("import subprocess", ["import subprocess"]),
        ("import urllib.request", ["import urllib.request"]),
        ("from urllib import request", ["from urllib import request"]),
        ("from urllib.request import urlopen", ["from urllib.request import urlopen"]),
        ("import random", ["import random"]),
        ("from random import choice", ["from random import choice"]),
        ("import time", ["import time"]),
        ("from time import monotonic", ["from time import monotonic"]),
        ("open('x')", ["open(…)"]),
        ("from datetime import datetime\ndatetime.now()", ["datetime.now"]),
        ("import datetime\ndatetime.datetime.now(tz=None)", ["datetime.datetime.now"]),
        ("import datetime\ndatetime.date.today()", ["datetime.date.today"]),
        # Pure uses stay allowed:
        ("import httpx\ndef f(t: httpx.BaseTransport) -> httpx.Request: ...", []),
        ("from urllib.parse import quote", []),
        ("from datetime import UTC, datetime\ndatetime.fromisoformat('2024-01-01')", []),
        ("import datetime as dt\nx = dt.timedelta(1)", []),
    ],
)
def test_the_checker_sees_effects(source: str, expected: list[str]) -> None:
    assert [v.what for v in violations(source, "example.py")] == expected


def test_all_names_exist_sorted_and_unique() -> None:
    names = pipeline.__all__
    missing = [name for name in names if not hasattr(pipeline, name)]
    assert not missing, f"__all__ lists names pipeline does not have: {missing}"
    # isort style, as ruff keeps it: CONSTANTS, then Classes, then functions.
    assert names == sorted(names, key=lambda n: (not n.isupper(), n)), "__all__ must be sorted"
    assert len(names) == len(set(names)), "pipeline.__all__ has duplicates"


def test_the_package_ships_py_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()
