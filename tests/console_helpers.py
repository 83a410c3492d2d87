"""Shared pieces of the console tests: the service with a console token, and a failure to
fix (tracks of a user User.com does not have yet: rejected "no user found")."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
from serve_helpers import API_KEY, options

from pipeline.serve import ServeOptions

TOKEN = "console-TOKEN-5f1e9a7c3b"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE = "<script>alert('pwned')</script>"


def console_options(ledger: Path, sandbox: str, **tuning: Any) -> ServeOptions:
    return dataclasses.replace(options(ledger, sandbox, **tuning), console_token=TOKEN)


def create_user_in_sandbox(sandbox: str, user: str) -> None:
    """The fix for "no user found": the user now exists at User.com (the sandbox)."""
    answer = httpx.post(
        f"{sandbox}/api/public/users/",
        json={"custom_id": user, "email": f"{user}@example.com"},
        headers={"Authorization": f"Token {API_KEY}", "Accept": "*/*; version=2"},
        timeout=10,
    )
    assert answer.status_code in (200, 201), answer.text
