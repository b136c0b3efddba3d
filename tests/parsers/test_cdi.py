"""CDI spec parsing (JSON and YAML), its helpers, and refusal of malformed or hostile specs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.cdi import (
    MAX_SPEC_BYTES,
    CdiMount,
    CdiSpec,
    all_host_paths,
    driver_versions_mentioned,
    parse_cdi_spec,
)
from tests.parsers.fuzzlib import FUZZ, mutated_text, parse_or_error, sample

YAML_PATH = "/etc/cdi/nvidia.yaml"
JSON_PATH = "/var/run/cdi/nvidia.json"


def test_nvidia_ctk_yaml_spec() -> None:
    spec = parse_cdi_spec(sample("cdi-nvidia-ctk.yaml"), path=YAML_PATH)
    assert (spec.cdi_version, spec.kind) == ("0.5.0", "example.com/device")
    assert [d.name for d in spec.devices] == ["0", "all"]
    assert spec.qualified_names == ("example.com/device=0", "example.com/device=all")
    gpu0 = spec.device("0")
    assert (
        gpu0 is not None and gpu0.device_nodes == ("/dev/nvidia0",) and gpu0.nodes[0].source == "/dev/nvidia0"
    )
    common = spec.common
    assert common.device_nodes == ("/dev/nvidiactl",)
    assert common.env == ("NVIDIA_CTK_LIBCUDA_DIR=/lib/x86_64-linux-gnu", "NVIDIA_VISIBLE_DEVICES=void")
    assert [h.args[1] for h in common.hooks] == [
        "create-symlinks",
        "enable-cuda-compat",
        "update-ldcache",
        "disable-device-node-modification",
    ]
    assert all(
        h.hook_name == "createContainer" and h.env == ("NVIDIA_CTK_DEBUG=false",) for h in common.hooks
    )
    assert common.mounts[0] == CdiMount(
        host_path="/lib/x86_64-linux-gnu/libcuda.so.999.88.77",
        container_path="/lib/x86_64-linux-gnu/libcuda.so.999.88.77",
        options=("ro", "nosuid", "nodev", "rbind", "rprivate"),
    )
    assert spec.annotations == {} and spec.raw["kind"] == "example.com/device"


def test_helpers_on_nvidia_ctk_spec() -> None:
    spec = parse_cdi_spec(sample("cdi-nvidia-ctk.yaml"), path=YAML_PATH)
    assert all_host_paths(spec) == {
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "/usr/bin/nvidia-cdi-hook",
        "/lib/x86_64-linux-gnu/libcuda.so.999.88.77",
        "/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.999.88.77",
    }
    assert driver_versions_mentioned(spec) == {"999.88.77"}


def test_json_spec_with_annotations_and_uuid_device() -> None:
    spec = parse_cdi_spec(sample("cdi-nvidia.json"), path=JSON_PATH)
    assert spec.kind == "nvidia.com/gpu" and spec.annotations == {"cdi.k8s.io/generated-by": "nvidia-ctk"}
    assert "nvidia.com/gpu=GPU-eaf23aa1-4d3d-596c-da66-b86b0e5db584" in spec.qualified_names
    assert spec == parse_cdi_spec(json.dumps(spec.raw), path=JSON_PATH)


def test_wsl_spec() -> None:
    spec = parse_cdi_spec(sample("cdi-wsl.yaml"), path=YAML_PATH)
    assert spec.devices[0].device_nodes == ("/dev/dxg",)
    assert "/usr/lib/wsl/lib/libdxcore.so" in all_host_paths(spec)
    assert driver_versions_mentioned(spec) == set()  # WSL's libcuda.so.1.1 is not a driver version


def test_versions_from_symlink_args_firmware_and_mixed_specs() -> None:
    text = """
cdiVersion: 0.6.0
kind: nvidia.com/gpu
devices:
  - name: all
    containerEdits:
      deviceNodes: [{path: /dev/nvidia0, major: 195, minor: 0, type: c, permissions: rw}]
containerEdits:
  hooks:
    - hookName: createContainer
      path: /usr/bin/nvidia-cdi-hook
      args: [nvidia-cdi-hook, create-symlinks, --link, libGLX_nvidia.so.550.54.14::/usr/lib/x86_64-linux-gnu/libGLX_indirect.so.0]
  mounts:
    - {hostPath: /lib/firmware/nvidia/550.54.14/gsp_ga10x.bin, containerPath: /lib/firmware/nvidia/550.54.14/gsp_ga10x.bin}
    - {hostPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.104.05, containerPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.104.05}
    - {hostPath: /usr/lib/x86_64-linux-gnu/libnvidia-egl-wayland.so.1.1.13, containerPath: /usr/lib/x86_64-linux-gnu/libnvidia-egl-wayland.so.1.1.13}
"""
    spec = parse_cdi_spec(text, path=YAML_PATH)
    node = spec.devices[0].nodes[0]
    assert (node.major, node.minor, node.type, node.permissions, node.host_path) == (195, 0, "c", "rw", None)
    assert driver_versions_mentioned(spec) == {"550.54.14", "535.104.05"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "file is empty"),
        ("- just\n- a list\n", "the spec must be an object"),
        ("kind: nvidia.com/gpu\ndevices: [{name: all}]\n", "spec.cdiVersion is required"),
        (
            "cdiVersion: 0.6\nkind: nvidia.com/gpu\ndevices: [{name: all}]\n",
            "spec.cdiVersion must be a string",
        ),
        ("cdiVersion: 0.6.0\nkind: gpu\ndevices: [{name: all}]\n", "is not of the form vendor.com/class"),
        ("cdiVersion: 0.6.0\nkind: nvidia.com/gpu\n", "spec.devices is required"),
        ("cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: []\n", "at least one device"),
        ("cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: [{name: -bad}]\n", "not a valid CDI device name"),
        ("cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: [{name: a}, {name: a}]\n", "defined twice"),
        (
            "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: [{name: a, containerEdits: {mounts: [{hostPath: /x}]}}]\n",
            "spec.devices[0].containerEdits.mounts[0].containerPath is required",
        ),
        (
            "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: [{name: a, containerEdits: {env: [1]}}]\n",
            "spec.devices[0].containerEdits.env[0] must be a string",
        ),
        (
            "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: [{name: a, containerEdits: {deviceNodes: [{path: /dev/x, major: c}]}}]\n",
            "major must be an integer",
        ),
        (
            "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: [{name: a}]\nannotations: {x: 1}\n",
            "annotations.x must be a string",
        ),
        (
            "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: [{name: a}]\nx: 2024-13-45\n",
            "invalid YAML value",
        ),
    ],
)
def test_invalid_specs(text: str, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_cdi_spec(text, path=YAML_PATH)
    assert info.value.path == YAML_PATH
    assert needle in info.value.message


def test_syntax_errors_have_positions() -> None:
    with pytest.raises(ParseError) as info:
        parse_cdi_spec('{"cdiVersion": "0.6.0",\n "kind": }', path=JSON_PATH)
    assert (info.value.line, info.value.column) == (2, 10) and "invalid JSON" in info.value.message
    with pytest.raises(ParseError) as info:
        parse_cdi_spec("cdiVersion: 0.6.0\nkind: [nvidia.com/gpu\ndevices: []\n", path=YAML_PATH)
    assert info.value.line is not None and "invalid YAML" in info.value.message


def test_alias_bomb_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    with pytest.raises(ParseError, match="aliases") as info:
        parse_cdi_spec(bomb, path=YAML_PATH)
    assert info.value.line == 2


def test_size_cap_and_python_tags() -> None:
    with pytest.raises(ParseError, match="are refused"):
        parse_cdi_spec("#" * (MAX_SPEC_BYTES + 1), path=YAML_PATH)
    with pytest.raises(ParseError, match="invalid YAML"):
        parse_cdi_spec("!!python/object/apply:os.system ['true']\n", path=YAML_PATH)


# ---------------------------------------------------------------------------------------------- fuzz


@FUZZ
@given(st.text())
def test_fuzz_cdi_text(text: str) -> None:
    parse_or_error(parse_cdi_spec, text, path=YAML_PATH, expected=CdiSpec)


@FUZZ
@given(
    st.sampled_from(["cdi-nvidia-ctk.yaml", "cdi-nvidia.json", "cdi-wsl.yaml"]).flatmap(
        lambda n: mutated_text(sample(n), max_ops=2)
    )
)
def test_fuzz_cdi_mutations(text: str) -> None:
    spec = parse_or_error(parse_cdi_spec, text, path=YAML_PATH, expected=CdiSpec)
    if spec is not None:
        assert all(isinstance(p, str) for p in all_host_paths(spec))
        assert all(v[0].isdigit() for v in driver_versions_mentioned(spec))
