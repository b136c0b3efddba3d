"""The GPU request grammar: NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES and cdi.k8s.io annotations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudoctor.engine.request import (
    CAPABILITIES,
    DEFAULT_CAPABILITIES,
    MAX_VALUE_LEN,
    Request,
    RequestError,
    env_values,
    parse_capabilities,
    parse_visible_devices,
    request_from_config,
)

UUID0 = "GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13"
UUID1 = "GPU-c4e2a9b7-13f5-4d08-a6c2-7b9e1f3d5a28"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("void", None),
        ("0,void", None),  # void anywhere wins, as in nvidia-container-toolkit
        ("none", ()),
        ("all", ("all",)),
        ("0,all", ("all",)),
        ("0", ("0",)),
        ("1,0", ("1", "0")),
        ("0,0,1", ("0", "1")),
        ("007", ("7",)),
        (UUID0, (UUID0,)),
        (f"1,{UUID0}", ("1", UUID0)),
        ("nvidia.com/gpu=0", ("0",)),
        ("nvidia.com/gpu=all", ("all",)),
        (f"nvidia.com/gpu={UUID1}", (UUID1,)),
    ],
)
def test_visible_devices_grammar(value: str | None, expected: tuple[str, ...] | None) -> None:
    assert parse_visible_devices(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("../x", "'../x' is not a GPU index"),
        ("0/../../x", "is not a GPU index"),
        ("0,../x", "'../x' is not a GPU index"),
        ("all\n", "non-ASCII or control characters"),
        (" 0", "is not a GPU index"),
        ("-1", "is not a GPU index"),
        ("0x1", "is not a GPU index"),
        ("\u0663", "non-ASCII"),  # ARABIC-INDIC DIGIT THREE: int() would accept it
        ("\u00b2", "non-ASCII"),  # SUPERSCRIPT TWO: str.isdigit() is True for it
        ("0,,1", "empty element"),
        ("0,", "empty element"),
        ("none,0", "'none' cannot be combined"),
        ("12345", "is not a GPU index"),
        ("MIG-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13", "MIG device"),
        ("0:1", "MIG device"),
        ("vendor.com/fpga=0", "CDI device of another kind"),
        ("GPU-", "is not a GPU index"),
        (f"{UUID0}/../..", "is not a GPU index"),
    ],
)
def test_hostile_visible_devices_are_rejected_with_the_value(value: str, message: str) -> None:
    with pytest.raises(RequestError, match="NVIDIA_VISIBLE_DEVICES") as exc:
        parse_visible_devices(value)
    assert message in str(exc.value)


def test_a_huge_value_is_rejected_without_echoing_it() -> None:
    value = "0," * (1024 * 1024 // 2)
    with pytest.raises(RequestError) as exc:
        parse_visible_devices(value)
    assert f"the limit is {MAX_VALUE_LEN}" in str(exc.value)
    assert len(str(exc.value)) < 200


def test_a_long_bad_token_is_quoted_shortened() -> None:
    with pytest.raises(RequestError) as exc:
        parse_visible_devices("x" * 1000)
    assert "(1000 characters)" in str(exc.value)
    assert len(str(exc.value)) < 300


@given(st.text(max_size=80))
def test_any_text_is_parsed_or_rejected_cleanly(value: str) -> None:
    try:
        devices = parse_visible_devices(value)
    except RequestError:
        return
    # Whatever is accepted is normalised to names that can only match discovered devices.
    for name in devices or ():
        assert name == "all" or (name.isascii() and name.isdigit()) or name.startswith("GPU-")
        assert "/" not in name and "." not in name


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_CAPABILITIES),
        ("", DEFAULT_CAPABILITIES),
        ("all", CAPABILITIES),
        ("utility", frozenset({"utility"})),
        ("compute,video", frozenset({"compute", "video"})),
        ("graphics,all", CAPABILITIES),
    ],
)
def test_capabilities(value: str | None, expected: frozenset[str]) -> None:
    assert parse_capabilities(value) == expected


@pytest.mark.parametrize("value", ["compute,bogus", "COMPUTE", "compute ", "comp\u00fcte"])
def test_unknown_capabilities_are_rejected(value: str) -> None:
    with pytest.raises(RequestError, match="NVIDIA_DRIVER_CAPABILITIES"):
        parse_capabilities(value)


def test_env_values_reject_a_variable_set_twice() -> None:
    env = ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=all"]
    with pytest.raises(RequestError, match="set twice"):
        env_values(env)


def test_env_values_ignore_other_and_malformed_entries() -> None:
    assert env_values(["FOO", "=x", "NVIDIA_VISIBLE_DEVICESX=1", "NVIDIA_VISIBLE_DEVICES=1"]) == {
        "NVIDIA_VISIBLE_DEVICES": "1"
    }


def test_env_values_reject_non_strings() -> None:
    with pytest.raises(RequestError, match="not a KEY=VALUE string"):
        env_values(["A=b", 7])


def test_request_from_env() -> None:
    request = request_from_config(["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_DRIVER_CAPABILITIES=utility"])
    assert request == Request(
        devices=("1",), capabilities=frozenset({"utility"}), source="NVIDIA_VISIBLE_DEVICES"
    )


def test_no_request_ignores_bad_capabilities() -> None:
    # Nothing is attached, so a capability typo in an image that asks for no GPU must not break it.
    assert request_from_config(["NVIDIA_DRIVER_CAPABILITIES=bogus"]) is None
    assert request_from_config(["NVIDIA_VISIBLE_DEVICES=void", "NVIDIA_DRIVER_CAPABILITIES=bogus"]) is None


def test_annotations_take_precedence_and_get_every_capability() -> None:
    request = request_from_config(
        ["NVIDIA_VISIBLE_DEVICES=all"],
        {"cdi.k8s.io/gpu": f"nvidia.com/gpu=1,nvidia.com/gpu={UUID0}", "other": "x"},
    )
    assert request is not None
    assert request.devices == ("1", UUID0)
    assert request.capabilities == CAPABILITIES


def test_annotations_of_other_vendors_are_not_ours() -> None:
    request = request_from_config(["NVIDIA_VISIBLE_DEVICES=0"], {"cdi.k8s.io/fpga": "vendor.com/fpga=0"})
    assert request is not None and request.devices == ("0",) and request.source == "NVIDIA_VISIBLE_DEVICES"


def test_hostile_annotation_is_rejected() -> None:
    with pytest.raises(RequestError, match="annotation cdi.k8s.io/x"):
        request_from_config([], {"cdi.k8s.io/x": "nvidia.com/gpu=../../dev/sda"})
