"""Minimal textual edits of a JSON object file (daemon.json), so that everything else keeps its bytes.

Re-serialising a config re-sorts or re-formats it and can alter numbers (``1e400``) or escapes. Instead
the editor finds the byte span of each member with the stdlib scanner and replaces or inserts only what
changes, copying the file's own indentation. After every edit the result is parsed again and compared
with what was intended, so a bug here can never write a file that means something else.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpudoctor.fixes.base import FixError

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_BOM = "\ufeff"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _where(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def load_json_object(text: str, *, path: str) -> dict[str, Any]:
    """Parse `text` as one JSON object; an empty file is ``{}``.

    Raises FixError naming ``path:line:column`` for invalid JSON, a duplicate key, a non-standard
    constant (NaN, Infinity) or a top level that is not an object.
    """
    body = text[1:] if text.startswith(_BOM) else text
    if not body.strip():
        return {}
    offset = len(text) - len(body)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise _DuplicateKey(key)
            seen[key] = value
        return seen

    try:
        data = json.loads(body, object_pairs_hook=pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        line, col = _where(text, exc.pos + offset)
        raise FixError(
            f"{path}:{line}:{col}: not valid JSON: {exc.msg}. gpudoctor will not edit a file it cannot "
            f"parse; the file is unchanged. Fix it (python3 -m json.tool {path} shows the error) and run "
            "the fix again."
        ) from None
    except _DuplicateKey as exc:
        line, col = _find_key(text, exc.key)
        raise FixError(
            f"{path}:{line}:{col}: the key {json.dumps(exc.key)} appears more than once; gpudoctor will not "
            "guess which one the daemon uses. The file is unchanged; remove the duplicate and run the fix again."
        ) from None
    except ValueError as exc:
        raise FixError(f"{path}: not valid JSON: {exc}. The file is unchanged.") from None
    if not isinstance(data, dict):
        raise FixError(
            f"{path}:1:1: the top level is a JSON {type(data).__name__}, not an object; the file is unchanged."
        )
    return data


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _find_key(text: str, key: str) -> tuple[int, int]:
    needle = json.dumps(key)
    first = text.find(needle)
    second = text.find(needle, first + 1) if first >= 0 else -1
    return _where(text, second if second >= 0 else max(first, 0))


@dataclass(slots=True, frozen=True)
class _Member:
    key: str
    key_start: int
    value_start: int
    value_end: int


@dataclass(slots=True, frozen=True)
class _Object:
    open: int
    close: int
    members: tuple[_Member, ...]


def _skip_ws(text: str, pos: int) -> int:
    m = _WS.match(text, pos)
    return m.end() if m else pos


def _scan_object(text: str, pos: int) -> _Object:
    """Spans of the object starting at `pos` (text is already known to be valid JSON)."""
    assert text[pos] == "{"
    members: list[_Member] = []
    i = _skip_ws(text, pos + 1)
    if text[i] == "}":
        return _Object(open=pos, close=i, members=())
    while True:
        key_start = i
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _skip_ws(text, i)
        assert text[i] == ":"
        i = _skip_ws(text, i + 1)
        value_start = i
        _value, i = _DECODER.raw_decode(text, i)
        members.append(_Member(key=key, key_start=key_start, value_start=value_start, value_end=i))
        i = _skip_ws(text, i)
        if text[i] == "}":
            return _Object(open=pos, close=i, members=tuple(members))
        assert text[i] == ","
        i = _skip_ws(text, i + 1)


def _line_indent(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    m = re.match(r"[ \t]*", text[start:])
    return m.group(0) if m else ""


class JsonObjectEditor:
    """Edits one JSON object text in place. `text` may be empty (a new file)."""

    def __init__(self, text: str, *, path: str) -> None:
        self.path = path
        self.original = text
        self.data = load_json_object(text, path=path)
        if not text.lstrip(_BOM).strip():
            text = (_BOM if text.startswith(_BOM) else "") + "{}\n"
        self.text = text
        self.unit = self._detect_unit()

    def _detect_unit(self) -> str:
        root = self._root()
        if root.members and "\n" in self.text[root.open:root.members[0].key_start]:
            indent = _line_indent(self.text, root.members[0].key_start)
            if indent:
                return indent
        return "  "

    def _root(self) -> _Object:
        return _scan_object(self.text, _skip_ws(self.text, len(_BOM) if self.text.startswith(_BOM) else 0))

    def _multiline(self, obj: _Object) -> bool:
        if obj.members:
            return "\n" in self.text[obj.open:obj.members[0].key_start]
        # An empty object: follow the file's style (a pretty file gets pretty members).
        return "\n" in self.text.strip() or obj.open == self._root().open

    def _render(self, value: Any, indent: str, multiline: bool) -> str:
        if not multiline:
            return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        rendered = json.dumps(value, ensure_ascii=False, indent=self.unit)
        return rendered.replace("\n", "\n" + indent)

    def get(self, keys: Sequence[str]) -> Any:
        node: Any = self.data
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def set(self, keys: Sequence[str], value: Any) -> None:
        """Set ``obj[k0][k1]...[kn] = value``, creating missing objects. Intermediate non-objects are replaced."""
        if not keys:
            raise ValueError("empty key path")
        obj = self._root()
        for depth, key in enumerate(keys):
            member = next((m for m in obj.members if m.key == key), None)
            rest = keys[depth + 1:]
            nested: Any = value
            for k in reversed(rest):
                nested = {k: nested}
            if member is None:
                self._insert(obj, key, nested)
                break
            if not rest or self.text[member.value_start] != "{":
                self._replace(member, nested, obj)
                break
            obj = _scan_object(self.text, member.value_start)
        self._check(keys, value)

    def delete(self, keys: Sequence[str]) -> bool:
        """Remove ``obj[k0]...[kn]`` (and the comma that went with it); False when it is not there."""
        obj = self._root()
        for depth, key in enumerate(keys):
            index = next((i for i, m in enumerate(obj.members) if m.key == key), None)
            if index is None:
                return False
            member = obj.members[index]
            if depth < len(keys) - 1:
                if self.text[member.value_start] != "{":
                    return False
                obj = _scan_object(self.text, member.value_start)
                continue
            if len(obj.members) == 1:
                start, end = obj.open + 1, obj.close
            elif index + 1 < len(obj.members):
                start, end = member.key_start, obj.members[index + 1].key_start
            else:
                start, end = obj.members[index - 1].value_end, member.value_end
            self.text = self.text[:start] + self.text[end:]
        expect = copy.deepcopy(self.data)
        node = expect
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
        got = load_json_object(self.text, path=self.path)
        if got != expect:
            raise FixError(f"internal error: editing {self.path} would change more than {'.'.join(keys)}; "
                           "nothing was written")
        self.data = got
        return True

    def _replace(self, member: _Member, value: Any, parent: _Object) -> None:
        indent = _line_indent(self.text, member.key_start)
        rendered = self._render(value, indent, self._multiline(parent))
        self.text = self.text[:member.value_start] + rendered + self.text[member.value_end:]

    def _insert(self, obj: _Object, key: str, value: Any) -> None:
        multiline = self._multiline(obj)
        if obj.members:
            first = obj.members[0]
            indent = _line_indent(self.text, first.key_start) if multiline else ""
            lead = self.text[obj.open + 1:first.key_start]
            member = json.dumps(key, ensure_ascii=False) + ": " + self._render(value, indent, multiline)
            sep = "," + (lead if multiline else " ")
            at = obj.members[-1].value_end
            self.text = self.text[:at] + sep + member + self.text[at:]
            return
        base = _line_indent(self.text, obj.open)
        if multiline:
            indent = base + self.unit
            member = json.dumps(key, ensure_ascii=False) + ": " + self._render(value, indent, True)
            body = "\n" + indent + member + "\n" + base
        else:
            body = json.dumps(key, ensure_ascii=False) + ": " + self._render(value, "", False)
        self.text = self.text[:obj.open + 1] + body + self.text[obj.close:]

    def _check(self, keys: Sequence[str], value: Any) -> None:
        # The edit must mean exactly "set this one path": parse the result and compare with the intent.
        expect = copy.deepcopy(self.data)
        node = expect
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
        got = load_json_object(self.text, path=self.path)
        if got != expect or list(got) != list(expect):
            raise FixError(f"internal error: editing {self.path} would change more than {'.'.join(keys)}; "
                           "nothing was written")
        self.data = got
