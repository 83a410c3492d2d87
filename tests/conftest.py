"""Fixtures the service's tests share (a test file that needs another sandbox defines its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import API_KEY

from pipeline.sandbox import SandboxOptions, serve_in_thread


@pytest.fixture
def sandbox() -> Iterator[str]:
    """A sandbox in a thread that accepts the service tests' API key."""
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        yield url


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """Where the service under test keeps its ledger."""
    return tmp_path / "serve.sqlite"
