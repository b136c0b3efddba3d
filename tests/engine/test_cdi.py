"""CDI specs: generation, the minimum cdiVersion, validation (against the CDI schema too) and the CLI."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpudoctor.commands.cdi import main as cdi_main
from gpudoctor.engine.cdi import (
    CdiError,
    build_spec,
    check_against_host,
    check_kind,
    check_spec,
    dump_spec,
    load_spec_text,
    minimum_version,
    write_spec,
)
from gpudoctor.engine.inventory import Inventory, discover
from tests.engine.engine_kit import SHARED, schema_validator
from tests.kit.driver_root import DriverRootInfo

CDI_SCHEMA = schema_validator(SHARED / "cdi", "schema.json")


def _schema_errors(spec: Any) -> list[str]:
    return [e.message for e in CDI_SCHEMA.iter_errors(spec)]


@pytest.fixture(scope="module")
def kit_spec(kit_inventory: Inventory) -> dict[str, Any]:
    return build_spec(kit_inventory)


def test_generated_spec_is_valid_cdi_0_5_0(kit_spec: dict[str, Any], kit_inventory: Inventory) -> None:
    assert _schema_errors(kit_spec) == []
    assert check_spec(kit_spec) == []
    # Device names that start with a digit and hostPath on nodes are 0.5.0 features; nothing newer is used,
    # so podman 4.3 (which knows up to 0.5.0) accepts it.
    assert kit_spec["cdiVersion"] == "0.5.0"
    assert kit_spec["kind"] == "nvidia.com/gpu"
    uuids = [g.uuid for g in kit_inventory.gpus]
    assert [d["name"] for d in kit_spec["devices"]] == ["0", "1", *uuids, "all"]


def test_devices_and_common_edits(kit_spec: dict[str, Any], kit_host: DriverRootInfo) -> None:
    devices = {d["name"]: d["containerEdits"] for d in kit_spec["devices"]}
    assert devices["1"]["deviceNodes"] == [
        {
            "path": "/dev/nvidia1",
            "hostPath": str(kit_host.root / "dev/nvidia1"),
            "type": "c",
            "major": 195,
            "minor": 1,
            "fileMode": 0o666,
            "permissions": "rw",
            "uid": 0,
            "gid": 0,
        }
    ]
    assert devices["all"]["deviceNodes"] == devices["0"]["deviceNodes"] + devices["1"]["deviceNodes"]
    common = kit_spec["containerEdits"]
    assert common["env"] == ["NVIDIA_VISIBLE_DEVICES=void"]
    assert {n["path"] for n in common["deviceNodes"]} == {
        "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
    }  # fmt: skip
    targets = {m["containerPath"] for m in common["mounts"]}
    # Every capability's files: a CDI device cannot know which capabilities the container wants.
    for path in (
        *kit_host.libraries.values(),
        *kit_host.binaries.values(),
        *kit_host.firmware,
        *kit_host.sockets,
    ):
        assert path in targets, path
    assert all("type" not in m for m in common["mounts"])
    for hook in common["hooks"]:
        assert hook["hookName"] == "createContainer"
        assert hook["env"] and hook["timeout"] > 0 and hook["path"].startswith("/")


@pytest.mark.parametrize(
    ("change", "version"),
    [
        (lambda s: None, "0.5.0"),
        (lambda s: _strip_050(s), "0.3.0"),
        (lambda s: _strip_050(s, mount_type="bind"), "0.4.0"),
        (lambda s: s.update(annotations={"a": "b"}), "0.6.0"),
        (lambda s: s["devices"][0].update(annotations={"a": "b"}), "0.6.0"),
        (lambda s: s.update(kind="nvidia.com/gpu.v2"), "0.6.0"),
        (lambda s: s["containerEdits"].update(additionalGids=[44]), "0.7.0"),
        (lambda s: s["devices"][0]["containerEdits"].update(intelRdt={"closID": "x"}), "0.7.0"),
        (lambda s: s["containerEdits"].update(netDevices=[{"hostInterfaceName": "e", "name": "f"}]), "1.1.0"),
        (lambda s: s["containerEdits"].update(intelRdt={"schemata": ["L3:0=f"]}), "1.1.0"),
    ],
)
def test_minimum_version_follows_the_cdi_rules(kit_spec: dict[str, Any], change: Any, version: str) -> None:
    spec = copy.deepcopy(kit_spec)
    change(spec)
    assert minimum_version(spec) == version


def _strip_050(spec: dict[str, Any], *, mount_type: str | None = None) -> None:
    """Remove the 0.5.0 features (digit-led names, hostPath); optionally give the first mount a type."""
    if mount_type:
        spec["containerEdits"]["mounts"][0]["type"] = mount_type
    spec["devices"] = [d for d in spec["devices"] if d["name"][0].isalpha()]
    for edits in [spec["containerEdits"], *(d["containerEdits"] for d in spec["devices"])]:
        for node in edits.get("deviceNodes", []):
            node.pop("hostPath", None)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.pop("kind"), "kind is required"),
        (lambda s: s.update(kind="nvidia"), "must be vendor/class"),
        (lambda s: s.update(kind="nvidia.com/gpu/x"), "must be vendor/class"),
        (lambda s: s.update(cdiVersion="0.9.9"), "not a released CDI version"),
        (lambda s: s.update(cdiVersion="0.4.0"), "too low for the fields used: they need at least 0.5.0"),
        (lambda s: s.update(devices=[]), "at least one device"),
        (lambda s: s["devices"][0].update(name="-bad"), "device name '-bad'"),
        (lambda s: s["devices"][1].update(name="0"), "appears twice"),
        (lambda s: s["devices"][0].pop("containerEdits"), "containerEdits is required"),
        (lambda s: s["containerEdits"]["deviceNodes"][0].update(major="195"), "major must be an integer"),
        (lambda s: s["containerEdits"]["deviceNodes"][0].pop("path"), "path must be an absolute path"),
        (lambda s: s["containerEdits"]["mounts"][0].pop("hostPath"), "hostPath is required"),
        (lambda s: s["containerEdits"]["hooks"][0].pop("hookName"), "hookName is required"),
        (lambda s: s["containerEdits"]["hooks"][0].update(timeout=0), "timeout must be an integer"),
        (lambda s: s["containerEdits"]["hooks"][0].update(args="x"), "args must be a list of strings"),
        (lambda s: s["containerEdits"].update(env=[1]), "env must be a list of strings"),
        (lambda s: s.update(extra=1), "unknown field(s) 'extra'"),
        (lambda s: s["containerEdits"]["deviceNodes"][0].update(uid=-1), "uid must be an integer"),
    ],
)
def test_check_spec_finds_problems(kit_spec: dict[str, Any], change: Any, problem: str) -> None:
    spec = copy.deepcopy(kit_spec)
    change(spec)
    problems = check_spec(spec)
    assert any(problem in p for p in problems), problems


def test_check_spec_is_at_least_as_strict_as_the_schema(kit_spec: dict[str, Any]) -> None:
    # Whatever the published schema rejects, check_spec rejects too (it ships inside the package).
    breakages = [
        lambda s: s.pop("cdiVersion"),
        lambda s: s.pop("devices"),
        lambda s: s["devices"][0].pop("name"),
        lambda s: s["containerEdits"]["mounts"][0].pop("containerPath"),
        lambda s: s["containerEdits"]["deviceNodes"][0].update(gid=2**32),
        lambda s: s["containerEdits"]["hooks"][0].update(env="PATH=/bin"),
        lambda s: s.update(annotations={"a": 1}),
        lambda s: s["containerEdits"].update(additionalGids=["x"]),
    ]
    for breakage in breakages:
        spec = copy.deepcopy(kit_spec)
        breakage(spec)
        assert _schema_errors(spec), breakage
        assert check_spec(spec), spec


def test_no_gpu_means_no_spec(tmp_path: Path) -> None:
    with pytest.raises(CdiError, match="no usable NVIDIA GPU"):
        build_spec(discover(str(tmp_path)))


def test_check_kind() -> None:
    assert check_kind("nvidia.com/gpu") is None
    assert check_kind("foo.bar.baz/foo-bar123.B_az") is None
    assert check_kind("vendor.com/foo/") is not None
    assert check_kind("-x.com/gpu") is not None


def test_yaml_and_json_round_trip(kit_spec: dict[str, Any]) -> None:
    assert load_spec_text(dump_spec(kit_spec, "yaml"), path="x.yaml") == kit_spec
    assert load_spec_text(dump_spec(kit_spec, "json"), path="x.json") == kit_spec
    # The names "0" and "1" must stay strings in YAML.
    assert yaml.safe_load(dump_spec(kit_spec, "yaml"))["devices"][0]["name"] == "0"


def test_write_spec_is_atomic_and_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "cdi" / "nvidia.yaml"
    write_spec(str(target), "first\n")
    old_umask = os.umask(0o077)
    try:
        write_spec(str(target), "second\n")
    finally:
        os.umask(old_umask)
    assert target.read_text() == "second\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["nvidia.yaml"]  # no temporary file left


def test_write_spec_failure_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CdiError, match="cannot write"):
        write_spec(str(blocker / "spec.yaml"), "x")


def test_check_against_host(
    kit_spec: dict[str, Any], kit_inventory: Inventory, kit_host: DriverRootInfo
) -> None:
    assert check_against_host(kit_spec, kit_inventory) == []
    stale = copy.deepcopy(kit_spec)
    node = stale["containerEdits"]["deviceNodes"][1]
    node["major"] = 500
    version = kit_host.spec.driver_version
    lib = stale["containerEdits"]["mounts"][0]
    lib["hostPath"] = lib["hostPath"].replace(version, "535.104.05")
    stale["devices"] = [d for d in stale["devices"] if d["name"] != "1"]
    problems = check_against_host(stale, kit_inventory)
    uvm = kit_inventory.node("nvidia-uvm")
    assert uvm is not None
    assert (
        f"{node['hostPath']} has major {uvm.major}, the spec says 500 (the driver was reloaded)" in problems
    )
    assert any("535.104.05" in p and "is missing" in p for p in problems)
    assert "GPU 1 is on the host but not in the spec" in problems


# ------------------------------------------------------------------------------------------------ the CLI


def test_cli_generate_writes_a_spec_podman_can_read(
    kit_host: DriverRootInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nvidia.yaml"
    assert cdi_main(["generate", "--driver-root", str(kit_host.root), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"wrote {out}: cdiVersion 0.5.0, kind nvidia.com/gpu, devices 0, 1," in err
    spec = yaml.safe_load(out.read_text())
    assert _schema_errors(spec) == [] and check_spec(spec) == []


def test_cli_generate_json_to_stdout(kit_host: DriverRootInfo, capsys: pytest.CaptureFixture[str]) -> None:
    assert cdi_main(["generate", "--driver-root", str(kit_host.root), "--format", "json", "--no-hooks"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert "hooks" not in spec["containerEdits"]
    assert _schema_errors(spec) == []


def test_cli_generate_without_gpus_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cdi_main(["generate", "--driver-root", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "no usable NVIDIA GPU" in err and "gpudoctor --check" in err
    assert "Traceback" not in err


def test_cli_list_and_validate(
    kit_host: DriverRootInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    good = spec_dir / "nvidia.yaml"
    assert cdi_main(["generate", "--driver-root", str(kit_host.root), "--output", str(good)]) == 0
    (spec_dir / "broken.json").write_text("{not json")
    capsys.readouterr()
    assert cdi_main(["list", "--spec-dir", str(spec_dir)]) == 1
    captured = capsys.readouterr()
    uuids = [g.uuid for g in kit_host.spec.gpus]
    assert captured.out.splitlines() == [f"nvidia.com/gpu={n}" for n in ["0", "1", *uuids, "all"]]
    assert "broken.json is not a valid CDI spec" in captured.err

    assert cdi_main(["validate", str(good), "--driver-root", str(kit_host.root)]) == 0
    assert f"matches driver {kit_host.spec.driver_version} on this host" in capsys.readouterr().out

    stale = yaml.safe_load(good.read_text())
    stale["devices"] = [d for d in stale["devices"] if d["name"] != "0"]
    bad = tmp_path / "stale.yaml"
    bad.write_text(yaml.safe_dump(stale))
    assert cdi_main(["validate", str(bad), "--driver-root", str(kit_host.root)]) == 1
    out = capsys.readouterr().out
    assert "GPU 0 is on the host but not in the spec" in out
    assert f"fix: regenerate it: gpudoctor cdi generate --output {bad}" in out


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cdi_main([]) == 2
    assert cdi_main(["generate", "--kind", "bad"]) == 2
    assert "must be vendor/class" in capsys.readouterr().err


def test_cli_through_the_gpudoctor_entry_point(kit_host: DriverRootInfo, tmp_path: Path) -> None:
    out = tmp_path / "spec.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpudoctor",
            "cdi",
            "generate",
            "--driver-root",
            str(kit_host.root),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _schema_errors(json.loads(out.read_text())) == []
