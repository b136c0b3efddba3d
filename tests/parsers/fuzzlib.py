"""Helpers for the parser tests: sample loading, the "ParseError or a result" contract, and mutation strategies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gpudoctor.host.errors import ParseError

SAMPLES = Path(__file__).parent / "samples"

# Moderate example counts keep the suite quick on shared CPUs; no deadline, since tests never time anything.
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

T = TypeVar("T")


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def parse_or_error(
    parse: Callable[..., T], data: Any, *, path: str, expected: type | tuple[type, ...]
) -> T | None:
    """Call `parse`; it must return an `expected` instance or raise a ParseError that names `path`.

    Any other exception propagates and fails the test.
    """
    try:
        result = parse(data, path=path)
    except ParseError as exc:
        assert exc.path == path
        assert path in str(exc)
        return None
    assert isinstance(result, expected), (
        f"{getattr(parse, '__name__', parse)!r} returned {type(result).__name__}"
    )
    return result


_JUNK = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["\n", ":", " ", "\t", "=", '"', "'", "[", "]", "{", "}", "#", "-", "0x", "\\", "\x00", "*", "&a", "*a"]
)


@st.composite
def mutated_text(draw: st.DrawFn, text: str, *, max_ops: int = 3) -> str:
    """`text` with a few random edits: deletions, insertions, replacements, duplicated or swapped lines,
    truncation. Keeps most of the structure, so parsers get past their first check."""
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "dup_line", "swap_lines", "truncate"]))
        n = len(text)
        if op == "truncate":
            text = text[: draw(st.integers(0, n))]
            continue
        if op in ("dup_line", "swap_lines"):
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
            continue
        start = draw(st.integers(0, n))
        end = draw(st.integers(start, min(n, start + 16)))
        if op == "delete":
            text = text[:start] + text[end:]
        elif op == "insert":
            text = text[:start] + draw(_JUNK) + text[start:]
        else:
            text = text[:start] + draw(_JUNK) + text[end:]
    return text


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, *, max_ops: int = 4) -> bytes:
    """`data` with random byte flips, overwritten 32-bit words (offsets, counts), insertions and truncation."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["flip", "word", "insert", "truncate", "delete"]))
        n = len(buf)
        if op == "truncate":
            del buf[draw(st.integers(0, n)) :]
        elif op == "flip" and n:
            i = draw(st.integers(0, n - 1))
            buf[i] = draw(st.integers(0, 255))
        elif op == "word" and n >= 4:
            i = draw(st.integers(0, (n - 4) // 4)) * 4
            word = draw(
                st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, n, n - 1, n + 1]) | st.integers(0, 2**32 - 1)
            )
            buf[i : i + 4] = word.to_bytes(4, "little")
        elif op == "insert":
            i = draw(st.integers(0, n))
            buf[i:i] = draw(st.binary(max_size=16))
        elif op == "delete" and n:
            i = draw(st.integers(0, n - 1))
            del buf[i : i + draw(st.integers(1, 16))]
    return bytes(buf)
