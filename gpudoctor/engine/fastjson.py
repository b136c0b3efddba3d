"""JSON for the runtime shim's hot path, without ``import json``.

``import json`` loads ``re`` and ``enum`` (json.decoder compiles regular expressions at import time); in a
``python -I -S`` process that starts on every GPU container start, that import costs more than everything
else the shim does. The parsing and printing themselves live in CPython's C accelerator ``_json``, which
imports nothing: this module drives it directly, with the same semantics as ``json.loads`` /
``json.dumps(..., ensure_ascii=False, separators=(",", ":"), allow_nan=False)``. Where ``_json`` is not
available (another Python implementation) it falls back to the json module.

Errors are ValueError; very deep nesting raises RecursionError, as with json. The C scanner reports most
syntax errors through json.decoder.JSONDecodeError, which it only finds when json.decoder is already
imported, so on any failure the document is parsed again with the json module for the exact message:
only the error path pays for that import.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

try:
    import _json

    _HAVE_C = hasattr(_json, "make_scanner") and hasattr(_json, "make_encoder")
except ImportError:  # pragma: no cover - CPython always has it
    _HAVE_C = False

_WS = " \t\n\r"


class DecodeError(ValueError):
    """Malformed JSON: `msg` and the 1-based `lineno` / `colno` of the problem."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        self.msg = msg
        self.pos = pos
        self.lineno = doc.count("\n", 0, pos) + 1
        self.colno = pos - doc.rfind("\n", 0, pos)
        super().__init__(f"{msg}: line {self.lineno} column {self.colno} (char {pos})")


def _no_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not valid JSON", "", 0)


class _Context:
    """The attributes _json.make_scanner reads (those of json.JSONDecoder)."""

    __slots__ = (
        "strict",
        "object_hook",
        "object_pairs_hook",
        "parse_float",
        "parse_int",
        "parse_constant",
        "memo",
    )

    def __init__(
        self,
        object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None,
        parse_constant: Callable[[str], Any],
    ) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = object_pairs_hook
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = parse_constant
        self.memo: dict[str, str] = {}


def loads(
    text: str,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """Parse one JSON document (surrounding whitespace allowed). NaN/Infinity go to `parse_constant`,
    which by default rejects them."""
    constant = parse_constant or _no_constant
    if not _HAVE_C:
        import json

        return json.loads(text, object_pairs_hook=object_pairs_hook, parse_constant=constant)
    # typeshed types the context as a JSONDecoder; any object with these attributes works.
    scanner = _json.make_scanner(_Context(object_pairs_hook, constant))  # type: ignore[arg-type]
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = scanner(text, start)
    except StopIteration as exc:
        raise DecodeError("Expecting value", text, exc.value) from None
    except (SystemError, ValueError):
        # The hooks raise their own ValueErrors: let them through. Anything else is a syntax error the C
        # scanner could not describe without json.decoder; json describes it.
        import json

        return json.loads(text, object_pairs_hook=object_pairs_hook, parse_constant=constant)
    rest = len(text) - len(text.rstrip(_WS))
    if end != len(text) - rest:
        raise DecodeError("Extra data", text, end)
    return value


def _unserializable(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """Compact JSON text (``","`` and ``":"`` separators, non-ASCII kept, NaN refused), like container
    engines write it."""
    if not _HAVE_C:
        import json

        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    encode = _json.make_encoder(
        {}, _unserializable, _json.encode_basestring, None, ":", ",", False, False, False
    )
    return "".join(encode(value, 0))
