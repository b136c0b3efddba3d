"""Small helpers shared by the parsers (not public API)."""

from __future__ import annotations

from typing import NoReturn

from gpudoctor.host.errors import ParseError

# Longest snippet of file content quoted in an error message.
_SNIPPET = 60


def fail(path: str, message: str, *, line: int | None = None, column: int | None = None) -> NoReturn:
    """Raise the ParseError every parser raises."""
    raise ParseError(path=path, message=message, line=line, column=column)


def snippet(text: str) -> str:
    """Quote file content for an error message: shortened and escaped, so it is always printable."""
    if len(text) > _SNIPPET:
        text = text[:_SNIPPET] + "..."
    # ascii() escapes control characters and lone surrogates, which would break a terminal or an encoder.
    return ascii(text)


def lines(text: str) -> list[str]:
    """Split on newlines only (kernel files use ``\\n``; str.splitlines also splits on \\x0c, \\u2028, ...)."""
    out = text.split("\n")
    if out and out[-1] == "":
        out.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in out]


def reject_nul(text: str, path: str) -> None:
    """Text files never contain NUL; one means a binary or truncated-and-padded file."""
    pos = text.find("\0")
    if pos >= 0:
        line = text.count("\n", 0, pos) + 1
        fail(path, "contains a NUL byte: not a text file", line=line)
