"""Blanking a secret out of text that may quote it, whole or in part.

An answer that quotes the API key cut short (a proxy's error page, a gateway that logs the
first 40 characters of the Authorization header) leaks most of it just as surely as a whole
echo. So every stretch of `SECRET_RUN` or more consecutive characters of the key is blanked;
shorter stretches are left, since any text shares a few characters with any key by chance.
"""

from __future__ import annotations

SECRET_RUN = 16


def blank_runs(text: str, secret: str, marker: str, run: int = SECRET_RUN) -> str:
    """`text` with every stretch of at least `run` consecutive characters of `secret` (all of
    it when it is shorter) replaced by `marker`.

    >>> key = "0123456789abcdefghijKLMNOPQRSTUV"
    >>> blank_runs("token 0123456789abcdefghij... was refused", key, "<apiKey>")
    'token <apiKey>... was refused'
    >>> blank_runs("x 89abcdefghijKLMNOP y 0123456789ab", key, "#")
    'x # y 0123456789ab'
    >>> blank_runs("nothing to see", "", "#")
    'nothing to see'
    """
    need = min(run, len(secret))
    if need == 0 or len(text) < need:
        return text
    spans = _merged(_stretches(text, secret, need))
    kept: list[str] = []
    done = 0
    for low, high in spans:
        kept += [text[done:low], marker]
        done = high
    kept.append(text[done:])
    return "".join(kept)


def _longest_from(text: str, start: int, secret: str) -> int:
    """How many characters from `start` on are, together, a piece of `secret`."""
    length = 0
    while start + length < len(text) and text[start : start + length + 1] in secret:
        length += 1
    return length


def _stretches(text: str, secret: str, need: int) -> list[tuple[int, int]]:
    """Each (start, end) from which `need` or more characters are a piece of `secret`.

    Every stretch of `need` characters holds a whole aligned window of `width`, so only
    windows found in the secret are looked at, and only the starts that could reach them."""
    width = (need + 1) // 2
    found: list[tuple[int, int]] = []
    for window in range(0, len(text) - width + 1, width):
        if text[window : window + width] not in secret:
            continue
        for start in range(max(0, window + width - need), window + 1):
            length = _longest_from(text, start, secret)
            if length >= need:
                found.append((start, start + length))
    return found


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged
