"""Tools for testing pipelines built on usercom-pipeline.

- Hypothesis strategies (need `hypothesis`: `pip install hypothesis`, or the extra
  `usercom-pipeline[testing]`): `events()`, `valid_events()`, `configs()`, `valid_configs()`;
  see `pipeline.testing.strategies`.
- `FakeUserCom`: an in-process User.com (the sandbox's state, handlers and faults) that is both
  an `httpx.BaseTransport` and an `httpx.AsyncBaseTransport`; no socket, no extra dependency.
  `Received` is one request it saw; `FakeOptions` its keyword arguments; `SandboxOptions` and
  `ForcedStatus` the sandbox's options and forced answers it takes (from `pipeline.sandbox`).
  `Reply` and `Raise` are the answers of its route-override table (`routes=`, for the odd
  cases User.com would not produce on its own; see `pipeline.testing.routes`).
- `FakeClock`: virtual time for code that takes a clock and a sleep (the pacer); see
  `pipeline.testing.clock`.
- A pytest plugin (installed with the package, entry point `pytest11` `usercom`): the fixture
  `usercom_fake` gives each test a fresh `FakeUserCom`; see `pipeline.testing.plugin`.

Names are imported on first use, so `import pipeline.testing` needs nothing beyond a plain
install, and hypothesis only when a strategy is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.sandbox.options import ForcedStatus, SandboxOptions
    from pipeline.testing.clock import FakeClock
    from pipeline.testing.fake import FakeOptions, FakeUserCom, Received
    from pipeline.testing.routes import Raise, Reply
    from pipeline.testing.strategies import configs, events, valid_configs, valid_events

_WHERE = {
    "events": "pipeline.testing.strategies",
    "valid_events": "pipeline.testing.strategies",
    "configs": "pipeline.testing.strategies",
    "valid_configs": "pipeline.testing.strategies",
    "FakeUserCom": "pipeline.testing.fake",
    "FakeOptions": "pipeline.testing.fake",
    "Received": "pipeline.testing.fake",
    "Reply": "pipeline.testing.routes",
    "Raise": "pipeline.testing.routes",
    "FakeClock": "pipeline.testing.clock",
    "SandboxOptions": "pipeline.sandbox.options",
    "ForcedStatus": "pipeline.sandbox.options",
}

__all__ = [
    "FakeClock",
    "FakeOptions",
    "FakeUserCom",
    "ForcedStatus",
    "Raise",
    "Received",
    "Reply",
    "SandboxOptions",
    "configs",
    "events",
    "valid_configs",
    "valid_events",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
