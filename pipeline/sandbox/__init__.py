"""A local, in-memory simulator of User.com's public REST API (v2 field names).

``create_app(options)`` gives a Starlette app; ``serve_in_thread(options)`` serves one on a
loopback port for tests; ``SandboxOptions`` sets the API key, the spelling of the user key
(``user_key_field``), what unknown user attributes do (``unknown_attributes``), and injects
latency, throttling, 5xx and dropped connections; ``ForcedStatus`` rules
(``parse_forced("POST /events/=503x3")``) force statuses. Answers follow the documented API
(/work/shared/usercom-api.md); each handler says where its shape comes from.
``GET /__sandbox__/state`` shows everything stored. ``python -m pipeline.sandbox --help`` serves
one standalone.

The request handling itself (``PublicApi``, pipeline.sandbox.api) is plain Python; Starlette
and uvicorn (the ``cli`` extra) are imported only when ``create_app``, ``sandbox_state``,
``run`` or ``serve_in_thread`` is first used, so the state, the options and
``PublicApi`` work in a plain install (``pipeline.testing.FakeUserCom`` is built on them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.listening import ListenError
from pipeline.sandbox.answers import Answer
from pipeline.sandbox.api import PublicApi
from pipeline.sandbox.options import ForcedStatus, SandboxOptions, parse_forced
from pipeline.sandbox.state import SandboxState

if TYPE_CHECKING:
    from pipeline.sandbox.app import create_app, sandbox_state
    from pipeline.sandbox.server import run, serve_in_thread

_NEEDS_SERVER = {
    "create_app": "pipeline.sandbox.app",
    "sandbox_state": "pipeline.sandbox.app",
    "run": "pipeline.sandbox.server",
    "serve_in_thread": "pipeline.sandbox.server",
}

__all__ = [
    "Answer",
    "ForcedStatus",
    "ListenError",
    "PublicApi",
    "SandboxOptions",
    "SandboxState",
    "create_app",
    "parse_forced",
    "run",
    "sandbox_state",
    "serve_in_thread",
]


def __getattr__(name: str) -> Any:
    """Import the Starlette / uvicorn parts on first use (they need the ``cli`` extra)."""
    module = _NEEDS_SERVER.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline.sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
