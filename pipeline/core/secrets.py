"""Blanking a secret out of text that may quote it, whole or in part.

An answer that quotes the API key cut short (a proxy's error page, a gateway that logs the
first 40 characters of the Authorization header) leaks most of it just as surely as a whole
echo. So every stretch of `SECRET_RUN` or more consecutive characters of the key is blanked;
shorter stretches are left, since any text shares a few characters with any key by chance.

A gateway may also show the key encoded: base64 (Basic auth, a logged header), hex, upper or
lower case, reversed. Each such form of the key is blanked by the same rule (`key_forms`).
"""

from __future__ import annotations

import base64
import sys

SECRET_RUN = 16


def key_forms(secret: str) -> tuple[str, ...]:
    """`secret` and the forms a gateway may show it in: upper and lower case, reversed, hex
    (lower and upper case), base64, standard and URL-safe, at each of the three places the key
    can start within the bytes encoded ("u:KEY" in Basic auth shifts it off the 3-byte grid),
    base32 at each of its five places, and every byte percent-encoded. Unpadded base64 or
    base32 is a piece of the padded form, so it is blanked with it.

    >>> key_forms("abcdef")[:4]
    ('abcdef', 'ABCDEF', 'fedcba', '616263646566')
    >>> [form for form in key_forms("abcdef") if form.startswith("YW")]
    ['YWJjZGVm']
    """
    raw = secret.encode("utf-8", errors="surrogatepass")
    forms = [secret, secret.upper(), secret.lower(), secret[::-1], raw.hex(), raw.hex().upper()]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift, mixed in ((0, 0), (1, 2), (2, 3)):
            # `shift` bytes before the key: the first `mixed` characters hold their bits too.
            forms.append(encode(bytes(shift) + raw).decode("ascii")[mixed:])
    # Base32 groups 5 bytes into 8 characters, so the key can start at 5 places in its grid.
    for shift, mixed in ((0, 0), (1, 2), (2, 4), (3, 5), (4, 7)):
        forms.append(base64.b32encode(bytes(shift) + raw).decode("ascii")[mixed:])
    if raw:  # every byte percent-encoded, as a URL-encoding gateway may log it
        escaped = "%" + raw.hex("%")
        forms += [escaped.upper(), escaped]
    return tuple(dict.fromkeys(form for form in forms if form))


class Secret:
    """A key, and its `key_forms` worked out on first need, then kept: most answers hold no
    string long enough to quote a piece of it, and the rest of one event's answers (or of one
    app's) reuse them. Two threads may both work them out once; the value is the same."""

    __slots__ = ("_forms", "value")

    def __init__(self, value: str) -> None:
        self.value = value
        self._forms: tuple[str, ...] | None = None

    @property
    def forms(self) -> tuple[str, ...]:
        if self._forms is None:
            self._forms = key_forms(self.value)
        return self._forms

    @property
    def shortest(self) -> int:
        """The length of the shortest text `blank_runs` could change."""
        return min(SECRET_RUN, len(self.value)) if self.value else sys.maxsize

    def could_quote(self, text: str) -> bool:
        """Whether `text` is long enough to hold a stretch `blank_runs` would blank."""
        return len(text) >= self.shortest

    def __repr__(self) -> str:
        return f"Secret(…({len(self.value)} chars))"


def blank_runs(
    text: str,
    secret: str,
    marker: str,
    run: int = SECRET_RUN,
    forms: tuple[str, ...] | None = None,
) -> str:
    """`text` with every stretch of at least `run` consecutive characters of `secret` (all of
    it when it is shorter), or of any of its `key_forms`, replaced by `marker`. A caller
    blanking many strings passes `forms` (`key_forms(secret)`) worked out once.

    >>> key = "0123456789abcdefghijKLMNOPQRSTUV"
    >>> blank_runs("token 0123456789abcdefghij... was refused", key, "<apiKey>")
    'token <apiKey>... was refused'
    >>> blank_runs("x 89abcdefghijKLMNOP y 0123456789ab", key, "#")
    'x # y 0123456789ab'
    >>> blank_runs("nothing to see", "", "#")
    'nothing to see'
    >>> blank_runs("Basic " + base64.b64encode(b"u:" + key.encode()).decode(), key, "#")
    'Basic dTo#'
    """
    if not secret or len(text) < min(run, len(secret)):
        return text
    shown = key_forms(secret) if forms is None else forms
    spans = _merged(_all_stretches(text, shown, run))
    if not spans:
        return text
    kept: list[str] = []
    done = 0
    for low, high in spans:
        kept += [text[done:low], marker]
        done = high
    kept.append(text[done:])
    return "".join(kept)


# Joins the forms of a key so that one scan finds a piece of any of them. A stretch of text
# across it would be the end of one form, NUL, the start of another: blanking that too is
# no loss.
_APART = "\x00"


def _all_stretches(text: str, forms: tuple[str, ...], run: int) -> list[tuple[int, int]]:
    if all(len(form) >= run and _APART not in form for form in forms):
        return _stretches(text, _APART.join(forms), run)
    found: list[tuple[int, int]] = []
    for form in forms:  # a key shorter than `run`: each form is blanked only whole
        need = min(run, len(form))
        if len(text) >= need:
            found += _stretches(text, form, need)
    return found


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
