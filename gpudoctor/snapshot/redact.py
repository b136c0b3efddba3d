"""Secret redaction for snapshot bundles.

What is redacted (each value becomes ``<redacted>``; names, keys and the file's layout stay, so a replay
parses the same structure):

- environment values whose NAME contains TOKEN, KEY, PASSWORD, SECRET or AUTH (case-insensitive):
  ``NAME=value`` assignments in any text (env files, systemd ``Environment=``, ``/proc/<pid>/environ``,
  CDI/OCI ``env`` lists, logs);
- JSON string values under such keys: docker ``config.json`` ``auths.*.auth`` / ``identitytoken``,
  ``HttpHeaders.Authorization``, and any ``"password"``, ``"*token*"``, ``"*secret*"`` key;
- TOML string values under such keys, and every value in a table whose last name is ``auth``
  (containerd's ``registry.configs."<host>".auth`` sections), inline tables included;
- ``Authorization:`` / ``Proxy-Authorization:`` header values in logs;
- the password of ``scheme://user:password@host`` URLs;
- ``--flag=value`` command-line values whose flag names TOKEN, PASSWORD or SECRET (KEY and AUTH flags
  name files and plugins, e.g. ``--tlskey``, ``--authorization-plugin``, and are kept).

Binary content (not UTF-8, or with control bytes other than tab, newlines and NUL separators) is left
alone: rewriting it would corrupt it, and the files gpudoctor reads that hold secrets are all text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

REDACTED = "<redacted>"

_SENSITIVE = re.compile(r"TOKEN|KEY|PASSWORD|SECRET|AUTH", re.IGNORECASE)
_SENSITIVE_FLAG = re.compile(r"TOKEN|PASSWORD|SECRET", re.IGNORECASE)

_JSON_PAIR = re.compile(r'"(?P<key>(?:[^"\\\n]|\\.){1,200})"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\\n]|\\.)*)"')
_TOML_PAIR = re.compile(
    r"""^(?P<pre>[ \t]*(?P<key>[A-Za-z0-9_-]+|"[^"\n]+"|'[^'\n]+')[ \t]*=[ \t]*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|\{.*\})""",
    re.MULTILINE,
)
_TOML_TABLE = re.compile(r"^[ \t]*\[\[?(?P<name>[^\]\n]+)\]\]?[ \t]*(?:#.*)?$", re.MULTILINE)
_TOML_STRING = re.compile(r""""(?:[^"\\\n]|\\.)*"|'[^'\n]*'""")
_AUTH_TABLE = re.compile(r"""(?:^|\.)[ \t]*(?:auth|"auth"|'auth')$""", re.IGNORECASE)
_HEADER = re.compile(r"(?P<pre>\b(?:Proxy-)?Authorization[ \t]*:[ \t]*)(?P<value>[^\r\n\"',}]+)", re.IGNORECASE)
_ENV_QUOTED = re.compile(r"""(?P<q>["'])(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>[^"'\n\0]*)(?P=q)""")
# The value is matched by a lookahead so that ``Environment=NAME=value`` still finds NAME.
_ENV_PLAIN = re.compile(r"""(?<![A-Za-z0-9_.\-/])(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?=(?P<value>[^\s"'\0,;&|]*))""")
_FLAG = re.compile(r"(?P<pre>--(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)=)(?P<value>[^\s\0\"']+)")
_URL_USERINFO = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@\"'\0]*:)(?P<value>[^/\s@\"'\0]+)(?=@)")


def sensitive_name(name: str) -> bool:
    """True for an environment variable or key name whose value is a secret (see the module docstring)."""
    return bool(_SENSITIVE.search(name))


@dataclass(frozen=True, slots=True, kw_only=True)
class Redaction:
    """One redacted value: `where` says where it was (``line 3``, ``auths.ghcr.io.auth``), `what` which rule."""

    where: str
    what: str

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "what": self.what}


def _line_of(text: str, offset: int) -> str:
    return f"line {text.count(chr(10), 0, offset) + 1}"


def _sub(pattern: re.Pattern[str], text: str, found: list[Redaction],
         decide: Callable[[re.Match[str]], str | None], value_group: str = "value") -> str:
    """Replace group `value_group` of each match for which `decide` returns a description."""
    out: list[str] = []
    last = 0
    for m in pattern.finditer(text):
        what = decide(m)
        value = m.group(value_group)
        if what is None or value in (REDACTED, f'"{REDACTED}"', f"'{REDACTED}'"):
            continue
        start, end = m.span(value_group)
        if start < last:  # inside a value already redacted
            continue
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
        found.append(Redaction(where=_line_of(text, start), what=what))
    out.append(text[last:])
    return "".join(out)


def _toml_auth_tables(text: str, found: list[Redaction]) -> str:
    """Every string value inside a ``[... .auth]`` table (containerd registry credentials)."""
    tables = list(_TOML_TABLE.finditer(text))
    if not tables:
        return text
    pieces: list[str] = []
    last = 0
    for i, t in enumerate(tables):
        name = t.group("name").strip()
        if not _AUTH_TABLE.search(name):
            continue
        body_start = t.end()
        body_end = tables[i + 1].start() if i + 1 < len(tables) else len(text)
        body = text[body_start:body_end]
        new_body = _TOML_PAIR.sub(partial(_redact_in_table, text=text, base=body_start, found=found,
                                          what=f"TOML [{name}]"), body)
        pieces.append(text[last:body_start])
        pieces.append(new_body)
        last = body_end
    pieces.append(text[last:])
    return "".join(pieces)


def _redact_in_table(m: re.Match[str], *, text: str, base: int, found: list[Redaction], what: str) -> str:
    return _redact_toml_value(m, text, base, found, what)


def _redact_toml_value(m: re.Match[str], text: str, base: int, found: list[Redaction], what: str) -> str:
    value = m.group("value")
    if value.startswith("{"):
        new = _TOML_STRING.sub(f'"{REDACTED}"', value)
    elif value in (f'"{REDACTED}"', f"'{REDACTED}'"):
        return m.group(0)
    else:
        new = f'"{REDACTED}"'
    if new == value:
        return m.group(0)
    found.append(Redaction(where=_line_of(text, base + m.start("value")), what=f"{what} {m.group('key')}"))
    return m.group("pre") + new


def _toml_keys(text: str, found: list[Redaction]) -> str:
    def repl(m: re.Match[str]) -> str:
        key = m.group("key").strip("\"'")
        if not sensitive_name(key):
            return m.group(0)
        return _redact_toml_value(m, text, 0, found, "TOML key")

    return _TOML_PAIR.sub(repl, text)


def is_text(data: bytes) -> bool:
    """UTF-8 with no control bytes except tab, CR, LF and NUL (the separator of /proc cmdline/environ)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\r\n\0" or ord(c) == 127 for c in text)


def redact_text(text: str) -> tuple[str, list[Redaction]]:
    """Apply every rule of the module docstring to `text`; returns the new text and what was redacted."""
    found: list[Redaction] = []
    text = _sub(_JSON_PAIR, text, found,
                lambda m: f"JSON key {m.group('key')}" if sensitive_name(m.group("key")) else None)
    text = _toml_auth_tables(text, found)
    text = _toml_keys(text, found)
    text = _sub(_HEADER, text, found, lambda m: "Authorization header")
    text = _sub(_ENV_QUOTED, text, found,
                lambda m: f"environment value {m.group('name')}" if sensitive_name(m.group("name")) else None)
    text = _sub(_ENV_PLAIN, text, found,
                lambda m: f"environment value {m.group('name')}"
                if sensitive_name(m.group("name")) and m.group("value") else None)
    text = _sub(_FLAG, text, found,
                lambda m: f"command-line flag --{m.group('name')}" if _SENSITIVE_FLAG.search(m.group("name")) else None)
    text = _sub(_URL_USERINFO, text, found, lambda m: "URL password")
    return text, found


def redact_bytes(data: bytes) -> tuple[bytes, list[Redaction]]:
    """redact_text for file contents; binary content comes back unchanged."""
    if not is_text(data):
        return data, []
    text, found = redact_text(data.decode("utf-8"))
    return (text.encode("utf-8"), found) if found else (data, [])


def redact_env(env: Mapping[str, str]) -> tuple[dict[str, str], list[Redaction]]:
    """An environment with the values of sensitive names (and URL passwords) redacted."""
    out: dict[str, str] = {}
    found: list[Redaction] = []
    for name, value in env.items():
        if sensitive_name(name):
            out[name] = REDACTED
            found.append(Redaction(where=name, what=f"environment value {name}"))
            continue
        new, more = redact_text(value)
        out[name] = new
        found += [Redaction(where=name, what=r.what) for r in more]
    return out, found


def redact_data(obj: Any, path: str = "") -> tuple[Any, list[Redaction]]:
    """Structured redaction of JSON-able data: string values under sensitive keys, and every string through
    redact_text. `where` in the result is the dotted key path."""
    found: list[Redaction] = []
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and sensitive_name(key) and isinstance(value, str) and value != REDACTED:
                out[key] = REDACTED
                found.append(Redaction(where=sub, what=f"key {key}"))
                continue
            out[key], more = redact_data(value, sub)
            found += more
        return out, found
    if isinstance(obj, list):
        items: list[Any] = []
        for i, value in enumerate(obj):
            new, more = redact_data(value, f"{path}[{i}]")
            items.append(new)
            found += more
        return items, found
    if isinstance(obj, str):
        new_text, more = redact_text(obj)
        return new_text, [Redaction(where=path or "(value)", what=r.what) for r in more]
    return obj, found
