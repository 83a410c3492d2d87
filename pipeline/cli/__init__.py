"""The `usercom` command (install the `cli` extra: ``pip install 'usercom-pipeline[cli]'``).

Without the extra, `main` (the `usercom` entry point) prints one line saying how to install it
and exits with status 2; `app` is then not defined.
"""

from __future__ import annotations

import sys

# Top-level packages that only the `cli` extra brings (click comes with typer).
CLI_EXTRA = frozenset({"click", "typer", "rich", "starlette", "uvicorn", "prometheus_client"})
INSTALL_HINT = "usercom needs the cli extra: pip install 'usercom-pipeline[cli]'"


def missing_extra(error: ImportError) -> bool:
    """Whether `error` comes from a package of the `cli` extra that is not installed."""
    return (error.name or "").partition(".")[0] in CLI_EXTRA


try:
    from pipeline.cli.app import app, main
except ImportError as error:
    if not missing_extra(error):
        raise

    def main() -> None:
        """The `usercom` entry point without the `cli` extra: say how to install it."""
        print(INSTALL_HINT, file=sys.stderr)
        raise SystemExit(2)


__all__ = ["app", "main"]
