"""The `usercom` command (install the `cli` extra)."""

from pipeline.cli.app import app, main

__all__ = ["app", "main"]
