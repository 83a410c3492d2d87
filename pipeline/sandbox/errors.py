"""Errors the sandbox handlers raise, each carrying the HTTP answer User.com would give."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error answer: a status and a JSON body.

    >>> invalid("email", "Not a valid string.").body
    {'errors': {'email': ['Not a valid string.']}}
    """

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def not_found_body() -> dict[str, Any]:
    """The DRF-style 404 body."""
    return {"detail": "Not found."}


def not_found() -> ApiError:
    """The DRF-style 404 answer."""
    return ApiError(404, not_found_body())


def invalid(field: str, message: str) -> ApiError:
    """A 400 validation answer shaped ``{"errors": {field: [message]}}``."""
    return ApiError(400, {"errors": {field: [message]}})
