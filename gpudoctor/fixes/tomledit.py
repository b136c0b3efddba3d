"""Minimal textual edits of TOML files, so that every comment and every other line stays as it was.

Only what fixes need: set one string key inside a ``[table]``, and set a top-level array of strings
(containerd's ``imports``). Each edit is checked by parsing the result and comparing it with the intent.
Also a small serialiser for new files (containerd drop-ins), since the stdlib only reads TOML.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from gpudoctor.fixes.base import FixError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_HEADER = re.compile(r"^\s*\[(?!\[)\s*(.+?)\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_AT = re.compile(r"at line (\d+), column (\d+)")


def load_toml(text: str, *, path: str) -> dict[str, Any]:
    """Parse TOML; FixError naming ``path:line:column`` when it is invalid (the file is never touched)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _AT.search(msg)
        if m is not None:
            where = f"{path}:{m.group(1)}:{m.group(2)}"
        elif "end of document" in msg:
            where = f"{path}:{text.count(chr(10)) + 1}"
        else:
            where = path
        reason = re.sub(r"\s*\((?:at [^)]*)\)", "", msg).strip()
        raise FixError(
            f"{where}: not valid TOML: {reason}. gpudoctor will not edit a file it cannot parse; the file is "
            "unchanged. Fix it and run the fix again."
        ) from None


def _key_text(key: str) -> str:
    return key if _BARE.match(key) else basic_string(key)


def basic_string(value: str) -> str:
    """A TOML basic string for `value`."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _header_name(line: str) -> str | None:
    m = _HEADER.match(line)
    if m is None:
        return None
    try:
        parsed = tomllib.loads(f"[{m.group(1)}]\n")
    except tomllib.TOMLDecodeError:
        return None
    parts: list[str] = []
    node: Any = parsed
    while isinstance(node, dict) and len(node) == 1:
        key = next(iter(node))
        parts.append(key)
        node = node[key]
    return ".".join(parts)


def _string_value_span(line: str, key: str) -> tuple[int, int] | None:
    """Span of the string value of ``key = "..."`` on this line, or None when the line is not that."""
    m = re.match(r"^\s*(?:" + re.escape(key) + r"|\"" + re.escape(key) + r"\"|'" + re.escape(key) + r"')\s*=\s*",
                 line)
    if m is None:
        return None
    rest = line[m.end():]
    v = re.match(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'", rest)
    if v is None:
        return m.end(), len(line.rstrip())
    return m.end(), m.end() + v.end()


def set_table_string(text: str, table: str, key: str, value: str, *, path: str) -> str:
    """Set ``[table] key = "value"`` with the smallest textual change; return the new text.

    An existing line keeps its indentation and trailing comment. A missing key goes right after a
    commented-out ``#key = ...`` line of the table (where a person looks for it) or after the header.
    A missing table is appended. Raises FixError when the table is defined some other way (dotted keys,
    inline table), where a textual edit cannot be made safely.
    """
    data = load_toml(text, path=path)
    current = data.get(table)
    if current is not None and not isinstance(current, dict):
        raise FixError(f"{path}: {table} is not a table; the file is unchanged")
    lines = text.split("\n")
    header_at = None
    for i, line in enumerate(lines):
        if _header_name(line) == table:
            header_at = i
            break
    new_line = f"{_key_text(key)} = {basic_string(value)}"
    if header_at is None:
        if current is not None:
            raise FixError(
                f"{path}: [{table}] is written as dotted keys or an inline table; gpudoctor edits only "
                f"[{table}] sections. Set {key} = {basic_string(value)} there by hand."
            )
        sep = "" if text.endswith("\n") or not text else "\n"
        blank = "\n" if text.strip() else ""
        result = f"{text}{sep}{blank}[{table}]\n{new_line}\n"
    else:
        end = next((j for j in range(header_at + 1, len(lines)) if _ANY_HEADER.match(lines[j])), len(lines))
        done = False
        for j in range(header_at + 1, end):
            span = _string_value_span(lines[j], key)
            if span is not None:
                lines[j] = lines[j][:span[0]] + basic_string(value) + lines[j][span[1]:]
                done = True
                break
        if not done:
            commented = next(
                (j for j in range(header_at + 1, end) if re.match(r"^\s*#\s*" + re.escape(key) + r"\s*=", lines[j])),
                None,
            )
            at = commented if commented is not None else header_at
            nxt = lines[at + 1] if at + 1 < end else ""
            indent = _indent_of(nxt) if nxt.strip() else ""
            lines.insert(at + 1, indent + new_line)
        result = "\n".join(lines)
    expect = copy.deepcopy(data)
    expect.setdefault(table, {})[key] = value
    if load_toml(result, path=path) != expect:
        raise FixError(f"internal error: editing {path} would change more than [{table}] {key}; nothing was written")
    return result


def _top_level_end(lines: Sequence[str]) -> int:
    return next((i for i, line in enumerate(lines) if _ANY_HEADER.match(line)), len(lines))


def _array_span(text: str, start: int) -> tuple[int, int]:
    """For the array starting at text[start] == '[': (index just past its ']', end of its last value).

    The last value's end is where new values can be appended so that comments inside stay in place;
    it is start + 1 for an empty array.
    """
    depth = 0
    i = start
    last_value_end = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "#":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        if ch in "\"'":
            if text.startswith(ch * 3, i):
                i = text.find(ch * 3, i + 3) + 3
            else:
                j = i + 1
                while j < len(text) and text[j] != ch:
                    j += 2 if ch == '"' and text[j] == "\\" else 1
                i = j + 1
            if depth == 1:
                last_value_end = i
            continue
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i + 1, last_value_end
        elif depth == 1 and ch not in " \t\r\n,":
            last_value_end = i + 1
        i += 1
    return len(text), last_value_end


def set_top_level_string_array(text: str, key: str, values: Sequence[str], *, path: str, after_key: str | None = None) -> str:
    """Set a top-level ``key = ["...", ...]`` with the smallest textual change; return the new text.

    An existing array is replaced in place (its line's comment stays when the array fits on the line).
    A missing key goes after `after_key`'s line when that is top level, else before the first table.
    """
    data = load_toml(text, path=path)
    rendered = "[" + ", ".join(basic_string(v) for v in values) + "]"
    lines = text.split("\n")
    top_end = _top_level_end(lines)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    result = None
    for i in range(top_end):
        m = re.match(r"^(\s*(?:" + re.escape(key) + r"|\"" + re.escape(key) + r"\")\s*=\s*)", lines[i])
        if m is None:
            continue
        value_start = offsets[i] + m.end()
        if text[value_start:value_start + 1] != "[":
            raise FixError(f"{path}:{i + 1}: {key} is not an array; the file is unchanged")
        value_end, last_end = _array_span(text, value_start)
        existing = data.get(key)
        if isinstance(existing, list) and list(values[: len(existing)]) == existing and existing:
            # Only appending: add after the last value, so comments and layout inside the array stay.
            added = "".join(", " + basic_string(v) for v in values[len(existing):])
            result = text[:last_end] + added + text[last_end:]
        else:
            result = text[:value_start] + rendered + text[value_end:]
        break
    if result is None:
        insert_at = None
        if after_key is not None:
            for i in range(top_end):
                if re.match(r"^\s*" + re.escape(after_key) + r"\s*=", lines[i]):
                    insert_at = i + 1
                    break
        if insert_at is None:
            # Next to the other top-level keys: above the blank lines that precede the first table.
            insert_at = top_end
            while insert_at > 0 and not lines[insert_at - 1].strip():
                insert_at -= 1
        lines.insert(insert_at, f"{_key_text(key)} = {rendered}")
        result = "\n".join(lines)
    expect = copy.deepcopy(data)
    expect[key] = list(values)
    if load_toml(result, path=path) != expect:
        raise FixError(f"internal error: editing {path} would change more than {key}; nothing was written")
    return result


# -- writing new files ---------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return basic_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key_text(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps(data: Mapping[str, Any]) -> str:
    """Serialise nested tables of scalars and arrays (what containerd configs hold) as TOML.

    Tables are written as ``[a.b.c]`` sections in insertion order. The result is parsed back and must
    equal `data`.
    """
    out: list[str] = []

    def emit(table: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
        indent = ""
        if prefix and (scalars or not tables):
            if out:
                out.append("")
            out.append(indent + "[" + ".".join(_key_text(p) for p in prefix) + "]")
        for k, v in scalars:
            out.append(f"{indent}{_key_text(k)} = {_value(v)}")
        for k, v in tables:
            emit(v, (*prefix, k))

    emit(data, ())
    text = "\n".join(out) + "\n"
    if tomllib.loads(text) != _plain(data):
        raise ValueError("internal error: TOML serialisation does not round-trip")
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
