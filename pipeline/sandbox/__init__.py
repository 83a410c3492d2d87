"""A local, in-memory simulator of User.com's public REST API (v2 field names).

``create_app(options)`` gives a Starlette app; ``serve_in_thread(options)`` serves one on a
loopback port for tests; ``SandboxOptions`` injects latency, throttling, 5xx and dropped
connections. ``GET /__sandbox__/state`` shows everything stored.
"""

from pipeline.sandbox.app import create_app, sandbox_state
from pipeline.sandbox.options import SandboxOptions
from pipeline.sandbox.server import run, serve_in_thread
from pipeline.sandbox.state import SandboxState

__all__ = [
    "SandboxOptions",
    "SandboxState",
    "create_app",
    "run",
    "sandbox_state",
    "serve_in_thread",
]
