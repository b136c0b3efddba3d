"""The daemon.json editor: minimal textual edits that keep every other key, value, byte and position."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudoctor.fixes.base import FixError
from gpudoctor.fixes.jsonedit import JsonObjectEditor, load_json_object

PATH = "/etc/docker/daemon.json"
RUNTIME = "/usr/bin/nvidia-container-runtime"

# JSON values as dockerd's config holds them: no NaN/Infinity (not JSON), any nesting.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
runtime_entries = st.dictionaries(
    st.text(min_size=1, max_size=10),
    st.fixed_dictionaries(
        {"path": st.text(min_size=1, max_size=20)},
        optional={"runtimeArgs": st.lists(st.text(max_size=5), max_size=3)},
    ),
    max_size=3,
)
configs = st.dictionaries(st.text(max_size=12).filter(lambda k: k != "runtimes"), values, max_size=6).flatmap(
    lambda base: st.one_of(st.just(base), runtime_entries.map(lambda rts: {**base, "runtimes": rts}))
)
layouts = st.sampled_from([None, 0, 2, 4, "\t"])


def _dump(config: dict[str, Any], indent: int | str | None) -> str:
    return json.dumps(config, indent=indent, ensure_ascii=False) + "\n"


@settings(max_examples=200, deadline=None)
@given(config=configs, indent=layouts, name=st.sampled_from(["nvidia", "gpudoctor"]), default=st.booleans())
def test_merging_the_runtime_never_drops_or_changes_another_key(
    config: dict[str, Any], indent: int | str | None, name: str, default: bool
) -> None:
    text = _dump(config, indent)
    editor = JsonObjectEditor(text, path=PATH)
    editor.set(("runtimes", name, "path"), RUNTIME)
    if default:
        editor.set(("default-runtime",), name)
    result = json.loads(editor.text)
    for key, value in config.items():
        if key == "runtimes" or (key == "default-runtime" and default):
            continue
        assert result[key] == value
    # Key order: the original keys first, in their order; new keys after them.
    assert list(result)[: len(config)] == list(config)
    before_runtimes = config.get("runtimes", {})
    for rt_name, entry in before_runtimes.items():
        if rt_name != name:
            assert result["runtimes"][rt_name] == entry
    expected_entry = dict(before_runtimes.get(name, {}))
    expected_entry["path"] = RUNTIME
    assert result["runtimes"][name] == expected_entry
    if default:
        assert result["default-runtime"] == name
    else:
        assert result.get("default-runtime") == config.get("default-runtime")


@settings(max_examples=60, deadline=None)
@given(config=configs, indent=layouts)
def test_untouched_members_keep_their_exact_bytes(config: dict[str, Any], indent: int | str | None) -> None:
    config.pop("runtimes", None)
    text = _dump(config, indent)
    editor = JsonObjectEditor(text, path=PATH)
    editor.set(("runtimes", "nvidia", "path"), RUNTIME)
    # Everything before the closing brace of the original object is still there, byte for byte.
    body = text.rstrip()[:-1].rstrip()
    assert editor.text.startswith(body)


def test_numbers_and_escapes_are_not_rewritten() -> None:
    text = '{\n  "big": 1e400,\n  "precise": 0.10000000000000000555,\n  "esc": "\\u00e9\\/",\n  "n": -0\n}\n'
    editor = JsonObjectEditor(text, path=PATH)
    editor.set(("runtimes", "nvidia", "path"), RUNTIME)
    assert editor.text.startswith('{\n  "big": 1e400,\n  "precise": 0.10000000000000000555,\n  "esc": "\\u00e9\\/",\n  "n": -0,\n')


def test_existing_entry_keeps_its_other_fields() -> None:
    text = '{"runtimes": {"nvidia": {"path": "/old", "runtimeArgs": ["--debug"]}}}'
    editor = JsonObjectEditor(text, path=PATH)
    editor.set(("runtimes", "nvidia", "path"), RUNTIME)
    assert editor.text == '{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": ["--debug"]}}}'


def test_delete_removes_only_that_member() -> None:
    text = '{\n  "runtimes": {\n    "a": {"path": "/a"},\n    "b": {"path": "/b"},\n    "c": {"path": "/c"}\n  }\n}\n'
    for victim, survivors in (("a", ["b", "c"]), ("b", ["a", "c"]), ("c", ["a", "b"])):
        editor = JsonObjectEditor(text, path=PATH)
        assert editor.delete(("runtimes", victim))
        assert list(json.loads(editor.text)["runtimes"]) == survivors
    editor = JsonObjectEditor('{"runtimes": {"a": {"path": "/a"}}}', path=PATH)
    editor.delete(("runtimes", "a"))
    assert editor.text == '{"runtimes": {}}'
    assert not editor.delete(("runtimes", "zzz"))


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ('{\n  "a": 1,\n  "b": 2,\n}\n', ":4:1:", "Expecting property name"),
        ('{\n  "a": 1\n  "b": 2\n}\n', ":3:3:", "Expecting ',' delimiter"),
        ('{"a": NaN}', ":", "NaN is not valid JSON"),
        ('{"a": 1, "a": 2}', ":1:10:", "appears more than once"),
        ("[1, 2]", ":1:1:", "not an object"),
    ],
)
def test_invalid_json_is_refused_with_line_and_column(text: str, where: str, what: str) -> None:
    with pytest.raises(FixError) as info:
        load_json_object(text, path=PATH)
    message = str(info.value)
    assert message.startswith(PATH + where)
    assert what in message
    assert "unchanged" in message


def test_empty_and_bom_files() -> None:
    assert JsonObjectEditor("", path=PATH).data == {}
    editor = JsonObjectEditor('\ufeff{"a": 1}\n', path=PATH)
    editor.set(("runtimes", "nvidia", "path"), RUNTIME)
    assert editor.text.startswith('\ufeff{"a": 1, "runtimes"')
