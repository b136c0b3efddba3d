"""config.json: strict reading, the edits runc applies, and the atomic rewrite."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.engine.inventory import Inventory
from gpudoctor.engine.oci import Bundle, SpecError, apply_edits, parse_config, serialize
from gpudoctor.engine.request import Request
from gpudoctor.engine.selection import select
from tests.engine.engine_kit import SHARED, docker_like_config, schema_validator

OCI_SCHEMA = schema_validator(SHARED / "oci-runtime-spec", "config-schema.json")


def _gpu_edits(inventory: Inventory, devices: tuple[str, ...] = ("0",)) -> Any:
    return select(
        inventory, Request(devices=devices, capabilities=frozenset({"utility", "compute"}), source="test")
    )


def test_edits_land_where_runc_applies_them(kit_inventory: Inventory) -> None:
    spec = docker_like_config(["NVIDIA_VISIBLE_DEVICES=0"])
    before = copy.deepcopy(spec)
    edits = _gpu_edits(kit_inventory)
    apply_edits(spec, edits)
    assert [e.message for e in OCI_SCHEMA.iter_errors(spec)] == []
    devices = {d["path"]: d for d in spec["linux"]["devices"]}
    assert devices["/dev/nvidia0"] == {
        "path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0, "fileMode": 0o666, "uid": 0, "gid": 0,
    }  # fmt: skip
    assert "/dev/nvidia1" not in devices
    rules = spec["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}  # docker's deny-all stays first
    assert {"allow": True, "type": "c", "major": 195, "minor": 0, "access": "rw"} in rules
    assert all("m" not in r["access"] for r in rules[1:])
    new_mounts = spec["mounts"][len(before["mounts"]) :]
    assert new_mounts and all(m["type"] == "bind" for m in new_mounts)
    assert all(
        m["options"][:2] == ["ro", "nosuid"] for m in new_mounts if not m["destination"].endswith("socket")
    )
    [hook] = spec["hooks"]["createContainer"]
    assert hook["args"][4:6] == ["hooks", "create-symlinks"] and "update-ldcache" in hook["args"]
    assert all(h["env"] for h in spec["hooks"]["createContainer"])
    # Nothing else changes: unknown fields, docker's mounts and env are kept as they were.
    assert spec["x-unknown-field"] == before["x-unknown-field"]
    assert spec["mounts"][: len(before["mounts"])] == before["mounts"]
    assert spec["process"] == before["process"]


def test_applying_twice_adds_nothing(kit_inventory: Inventory) -> None:
    spec = docker_like_config()
    edits = _gpu_edits(kit_inventory)
    apply_edits(spec, edits)
    once = copy.deepcopy(spec)
    apply_edits(spec, edits)
    assert spec == once


def test_a_users_own_mount_at_a_target_wins(kit_inventory: Inventory) -> None:
    spec = docker_like_config()
    mine = {
        "destination": "/usr/bin/nvidia-smi",
        "type": "bind",
        "source": "/opt/my-smi",
        "options": ["rbind"],
    }
    spec["mounts"].append(mine)
    apply_edits(spec, _gpu_edits(kit_inventory))
    assert [m for m in spec["mounts"] if m["destination"] == "/usr/bin/nvidia-smi"] == [mine]


def test_a_host_volume_over_a_target_dir_is_refused(kit_inventory: Inventory) -> None:
    spec = docker_like_config()
    spec["mounts"].append(
        {
            "destination": "/usr/lib/x86_64-linux-gnu/",
            "type": "bind",
            "source": "/srv/libs",
            "options": ["rbind"],
        }
    )
    with pytest.raises(
        SpecError, match="inside /usr/lib/x86_64-linux-gnu, which is a bind mount of '/srv/libs'"
    ):
        apply_edits(spec, _gpu_edits(kit_inventory))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not valid JSON"),
        (b'{"ociVersion": "1.0.2"', "not valid JSON"),
        (b"[]", "must hold a JSON object, not list"),
        (b'{"a": 1, "a": 2}', "has the key 'a' twice"),
        (b'{"process": {"env": [], "Env": ["NVIDIA_VISIBLE_DEVICES=all"]}}', "differ only in case"),
        (b'{"process": {"Env": ["NVIDIA_VISIBLE_DEVICES=all"]}}', "process.'Env' must be spelled 'env'"),
        (b'{"Mounts": []}', "'Mounts' must be spelled 'mounts'"),
        (b'{"x": NaN}', "contains NaN"),
        (b'{"x": -Infinity}', "contains -Infinity"),
        (b'\xef\xbb\xbf{"ociVersion": "1"}', "not valid JSON"),
        (b'{"x": "\xff"}', "is not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"process": {"env": "NVIDIA_VISIBLE_DEVICES=all"}}', "process.env must be a JSON array"),
        (b'{"process": {"env": [1]}}', "process.env must hold strings"),
        (b'{"linux": {"resources": {"devices": {}}}}', "linux.resources.devices must be a JSON array"),
        (b'{"hooks": {"createContainer": {}}}', "hooks.createContainer must be a JSON array"),
        (b'{"mounts": [1]}', "each mounts entry must be a JSON object"),
    ],
)
def test_hostile_config_json_is_rejected(data: bytes, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_config(data)
    assert message in str(exc.value)


def test_oversized_config_is_rejected_before_parsing() -> None:
    with pytest.raises(SpecError, match="larger than 16 MiB"):
        parse_config(b" " * (16 * 1024 * 1024 + 1))


def test_a_lone_surrogate_cannot_be_written_back() -> None:
    spec = parse_config(b'{"process": {"env": ["X=\\ud800"]}}')
    with pytest.raises(SpecError, match="lone UTF-16 surrogate"):
        serialize(spec)


def test_unicode_and_big_numbers_round_trip() -> None:
    data = '{"a":"caf\u00e9 \u2603","uid":4294967296,"f":1.5,"n":null}'.encode()
    assert serialize(parse_config(data)) == data


def _bundle(tmp_path: Path, spec: dict[str, Any], mode: int = 0o640) -> Path:
    bundle = tmp_path / "bundle with spaces"
    bundle.mkdir()
    config = bundle / "config.json"
    config.write_text(json.dumps(spec))
    config.chmod(mode)
    return bundle


def test_bundle_rewrite_is_atomic_keeps_mode_and_a_backup(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, docker_like_config())
    config = bundle / "config.json"
    original = config.read_bytes()
    old_inode = config.stat().st_ino
    old_umask = os.umask(0o077)
    try:
        with Bundle(str(bundle)) as b:
            data, st = b.read_config()
            b.write_config(b'{"new":true}', st)
    finally:
        os.umask(old_umask)
    assert data == original
    assert config.read_bytes() == b'{"new":true}'
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert config.stat().st_ino != old_inode  # a new file, never written in place
    assert sorted(os.listdir(bundle)) == ["config.json", "config.json.gpudoctor-orig"]
    backup = bundle / "config.json.gpudoctor-orig"
    assert backup.read_bytes() == original and backup.stat().st_ino == old_inode


def test_bundle_refuses_a_symlinked_config(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    os.symlink(secret, bundle / "config.json")
    with Bundle(str(bundle)) as b, pytest.raises(SpecError, match="cannot open"):
        b.read_config()


def test_bundle_refuses_a_fifo_config(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    os.mkfifo(bundle / "config.json")
    with Bundle(str(bundle)) as b, pytest.raises(SpecError, match="not a regular file"):
        b.read_config()


def test_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot open the bundle directory"):
        Bundle(str(tmp_path / "nope"))
