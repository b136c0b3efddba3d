"""fastjson behaves like the json module (it drives the same C accelerator without importing json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudoctor.engine import fastjson

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_dumps_matches_json(value: Any) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    assert fastjson.dumps(value) == expected


@given(json_values, st.sampled_from(["", " ", "\n\t "]))
def test_loads_round_trips(value: Any, ws: str) -> None:
    assert fastjson.loads(ws + json.dumps(value, indent=1) + ws) == value


@settings(max_examples=300)
@given(st.text(alphabet='{}[]",:0123456789.eE+-tfnrulas \\\n\x01NaInfy', max_size=30))
def test_loads_accepts_exactly_what_json_accepts(text: str) -> None:
    def parse(fn: Any) -> tuple[str, Any]:
        try:
            return "ok", fn(text)
        except (ValueError, RecursionError):
            return "error", None

    def strict_json(t: str) -> Any:
        return json.loads(t, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))

    assert parse(fastjson.loads) == parse(strict_json)


def test_pairs_hook_and_constants() -> None:
    seen: list[list[tuple[str, Any]]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen.append(items)
        return dict(items)

    assert fastjson.loads('{"a": {"b": 1}, "a": 2}', object_pairs_hook=pairs) == {"a": 2}
    assert seen == [[("b", 1)], [("a", {"b": 1}), ("a", 2)]]
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        fastjson.loads("[NaN]")
    assert fastjson.loads("[Infinity]", parse_constant=lambda n: n) == ["Infinity"]


@pytest.mark.parametrize("bad", ["", "{", '{"a":1} x', "[1,]", '"\x01"', "\ufeff{}"])
def test_errors_are_value_errors_with_a_position(bad: str) -> None:
    with pytest.raises(ValueError) as exc:
        fastjson.loads(bad)
    assert getattr(exc.value, "lineno", None) == 1


def test_deep_nesting_is_a_recursion_error() -> None:
    with pytest.raises(RecursionError):
        fastjson.loads("[" * 100_000 + "]" * 100_000)


def test_dumps_refuses_nan_and_objects() -> None:
    with pytest.raises(ValueError):
        fastjson.dumps([float("nan")])
    with pytest.raises(TypeError, match="not JSON serializable"):
        fastjson.dumps({"a": object()})


def test_it_does_not_import_json() -> None:
    package_parent = str(Path(fastjson.__file__).parents[2])
    code = (
        "import sys; sys.path.append(sys.argv[1]); from gpudoctor.engine import fastjson;"
        "fastjson.dumps(fastjson.loads('{\"a\": [1, 2.5, null]}'));"
        "print('json' in sys.modules, 're' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, package_parent], capture_output=True, text=True
    )
    assert done.stdout.split() == ["False", "False"], done.stderr
