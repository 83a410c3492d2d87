"""Client data made inert for the terminal.

A messageId, a userId quoted in an error, a file name: any of them may hold ESC, C0 or C1
controls. Printed as they are, they open OSC 8 links ("click here"), send DCS queries whose
answer the terminal types back as input, move the cursor or hide part of a line. Everything
the human output shows of such data goes through `plain` first; the JSONL of `--out` and
`failed` is data and keeps it as it is.
"""

from __future__ import annotations

from typing import Final

# Bidirectional overrides and isolates could make a line read differently than it is.
_BIDI: Final = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))


def plain(text: str) -> str:
    """`text` with every C0 control (ESC, tab and newline too), DEL, C1 control and bidi
    override shown as a visible escape, so it can never act on the terminal.

    >>> plain("a\\x1b]8;;https://evil.example\\x1b\\\\b\\tc\\x9b\\u202e")
    'a\\\\x1b]8;;https://evil.example\\\\x1b\\\\b\\\\x09c\\\\x9b\\\\u202e'
    """
    if text.isprintable() and not any(ord(char) in _BIDI for char in text):
        return text
    out: list[str] = []
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif code in _BIDI:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)
