"""The service's secrets (write keys, transformer token): from the command line, a file or the
environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.cli.checks import UsageError

WRITE_KEYS_ENV = "USERCOM_WRITE_KEYS"
TRANSFORMER_TOKEN_ENV = "USERCOM_TRANSFORMER_TOKEN"
CONSOLE_TOKEN_ENV = "USERCOM_CONSOLE_TOKEN"


def _secret_lines(path: Path, option: str) -> list[str]:
    """The non-blank lines of a secrets file, `#` comments left out."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UsageError(f"cannot read {option} {path}: {reason}") from error
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def serve_secrets(
    write_keys: tuple[str, ...],
    write_key_file: Path | None,
    transformer_token: str | None,
    transformer_token_file: Path | None,
    env: Mapping[str, str],
) -> tuple[tuple[str, ...], str | None]:
    """The write keys and the transformer token, from the command line (which `ps` shows), a
    file, or the environment. Keys named on the command line or in --write-key-file replace
    $USERCOM_WRITE_KEYS (comma-separated); --transformer-token, then --transformer-token-file,
    replace $USERCOM_TRANSFORMER_TOKEN. A variable set but empty is refused, not read as "no
    key", which would open the service to anyone."""
    keys = list(write_keys)
    if write_key_file is not None:
        listed = _secret_lines(write_key_file, "--write-key-file")
        if not listed:
            raise UsageError(
                f"--write-key-file {write_key_file} holds no write key (one a line; # comments)"
            )
        keys += listed
    if write_key_file is None and not write_keys and WRITE_KEYS_ENV in env:
        keys = [key.strip() for key in env[WRITE_KEYS_ENV].split(",") if key.strip()]
        if not keys:
            raise UsageError(
                f"{WRITE_KEYS_ENV} is set but names no key: give keys separated by commas, or "
                "unset it"
            )
    token = transformer_token
    if token is None and transformer_token_file is not None:
        lines = _secret_lines(transformer_token_file, "--transformer-token-file")
        if not lines:
            raise UsageError(f"--transformer-token-file {transformer_token_file} is empty")
        token = lines[0]
    if token is None and TRANSFORMER_TOKEN_ENV in env:
        token = env[TRANSFORMER_TOKEN_ENV].strip()
        if not token:
            raise UsageError(f"{TRANSFORMER_TOKEN_ENV} is set but empty: give a token or unset it")
    return tuple(keys), token


def console_secret(token: str | None, env: Mapping[str, str]) -> str | None:
    """The console token: --console-token, else $USERCOM_CONSOLE_TOKEN; None: no console. An
    empty one is refused (it would let anyone in), as a variable set but empty is."""
    if token is None and CONSOLE_TOKEN_ENV in env:
        token = env[CONSOLE_TOKEN_ENV].strip()
        if not token:
            raise UsageError(f"{CONSOLE_TOKEN_ENV} is set but empty: give a token or unset it")
    if token is not None and not token.strip():
        raise UsageError("--console-token must not be empty")
    return None if token is None else token.strip()
