"""`usercom serve`: a long-running User.com destination that takes events over HTTP, files them
in a ledger and delivers them; installed with the `cli` extra.

`ServeOptions` says what it runs with, `Service.open(options)` opens the ledgers and builds
the ASGI app (`service.app`), `serve(service, sock, announce)` runs it on uvicorn until SIGTERM.
"""

from pipeline.listening import ListenError, listening_socket
from pipeline.serve.options import (
    ServeConfigError,
    ServeOptions,
    Sources,
    create_ledger_folders,
    duration,
    ledger_paths,
    load_sources,
)
from pipeline.serve.server import serve
from pipeline.serve.service import Service

__all__ = [
    "ListenError",
    "ServeConfigError",
    "ServeOptions",
    "Service",
    "Sources",
    "create_ledger_folders",
    "duration",
    "ledger_paths",
    "listening_socket",
    "load_sources",
    "serve",
]
