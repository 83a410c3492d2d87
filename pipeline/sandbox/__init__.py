"""A local, in-memory simulator of User.com's public REST API (v2 field names).

``create_app(options)`` gives a Starlette app; ``serve_in_thread(options)`` serves one on a
loopback port for tests; ``SandboxOptions`` sets the API key, the spelling of the user key
(``user_key_field``), what unknown user attributes do (``unknown_attributes``), and injects
latency, throttling, 5xx and dropped connections; ``ForcedStatus`` rules
(``parse_forced("POST /events/=503x3")``) force statuses. Answers follow the documented API
(/work/shared/usercom-api.md); each handler says where its shape comes from.
``GET /__sandbox__/state`` shows everything stored. ``python -m pipeline.sandbox --help`` serves
one standalone.
"""

from pipeline.sandbox.app import create_app, sandbox_state
from pipeline.sandbox.options import ForcedStatus, SandboxOptions, parse_forced
from pipeline.sandbox.server import ListenError, run, serve_in_thread
from pipeline.sandbox.state import SandboxState

__all__ = [
    "ForcedStatus",
    "ListenError",
    "SandboxOptions",
    "SandboxState",
    "create_app",
    "parse_forced",
    "run",
    "sandbox_state",
    "serve_in_thread",
]
