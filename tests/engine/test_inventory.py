"""Discovery against simulated host drivers (tests.kit): nodes, GPUs, libraries, files and their failures."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from gpudoctor.engine.inventory import DiscoveryError, Inventory, discover
from tests.kit.driver_root import DriverRootInfo
from tests.kit.spec import GSP_FIRMWARE, KIT_BINARIES, KIT_LIBRARIES, KitSpec, fake_gpus, kit_majors

MakeKit = Callable[..., DriverRootInfo]


def test_gpus_come_from_proc_in_bus_order(kit_host: DriverRootInfo, kit_inventory: Inventory) -> None:
    spec = kit_host.spec
    assert [(g.index, g.minor, g.uuid) for g in kit_inventory.gpus] == [
        (g.index, g.minor, g.uuid) for g in spec.gpus
    ]
    gpu = kit_inventory.gpus[1]
    assert gpu.name == spec.gpus[1].name
    assert gpu.pci_bus_id == spec.gpus[1].sysfs_bus_id
    assert (gpu.node.path, gpu.node.major, gpu.node.minor) == ("/dev/nvidia1", 195, 1)
    assert gpu.node.host_path == str(kit_host.root / "dev/nvidia1")
    assert kit_inventory.driver_version == spec.driver_version
    assert kit_inventory.warnings == ()


def test_control_nodes_carry_their_majors_and_capabilities(kit_inventory: Inventory) -> None:
    uvm = kit_majors()["nvidia-uvm"]
    nodes = {n.name: (n.major, n.minor, n.capability, n.mode) for n in kit_inventory.nodes}
    assert nodes["nvidiactl"] == (195, 255, "", 0o666)
    assert nodes["nvidia-uvm"] == (uvm, 0, "compute", 0o666)
    assert nodes["nvidia-uvm-tools"] == (uvm, 1, "compute", 0o666)
    assert nodes["nvidia-modeset"] == (195, 254, "display", 0o666)
    # MIG capability nodes are known but never attached to whole-GPU containers.
    assert {k: v[2] for k, v in nodes.items() if k.startswith("nvidia-caps/")} == {
        "nvidia-caps/nvidia-cap1": "mig",
        "nvidia-caps/nvidia-cap2": "mig",
    }


def test_every_kit_library_is_found_with_its_capability(
    kit_host: DriverRootInfo, kit_inventory: Inventory
) -> None:
    version = kit_host.spec.driver_version
    libs = {f.container_path: f for f in kit_inventory.files_of("library")}
    expected = {kit_host.libraries["libnvidia-ml.so.1"]: ("utility", "libnvidia-ml.so.1")}
    for lib in KIT_LIBRARIES:
        soname = lib.soname_for(version)
        expected[kit_host.libraries[soname]] = (lib.capability, soname)
    assert set(libs) == set(expected)
    for path, (capability, soname) in expected.items():
        assert libs[path].capability == capability, path
        assert libs[path].host_path == str(kit_host.root) + path
        assert path.endswith(f".so.{version}")
        # The soname is recorded when it differs from the file name and the cache lists it; vdpau/ is not in
        # the driver root's ld.so.conf, so that one is found by name only (ldconfig makes its link later).
        if soname != os.path.basename(path) and "/vdpau/" not in path:
            assert libs[path].soname == soname, path


def test_binaries_firmware_and_ipc(kit_host: DriverRootInfo, kit_inventory: Inventory) -> None:
    binaries = {f.container_path: f.capability for f in kit_inventory.files_of("binary")}
    assert binaries == {f"/usr/bin/{name}": cap for name, cap in KIT_BINARIES.items()}
    firmware = {f.container_path for f in kit_inventory.files_of("firmware")}
    assert firmware == {f"/lib/firmware/nvidia/{kit_host.spec.driver_version}/{n}" for n in GSP_FIRMWARE}
    ipc = kit_inventory.files_of("ipc")
    assert [(f.container_path, f.capability) for f in ipc] == [("/run/nvidia-persistenced/socket", "utility")]


def test_inventory_round_trips_through_json(kit_inventory: Inventory) -> None:
    import json

    again = Inventory.from_dict(json.loads(json.dumps(kit_inventory.to_dict())))
    assert again == kit_inventory


def test_a_library_of_another_driver_version_is_never_taken(make_kit: MakeKit) -> None:
    info = make_kit()
    libdir = info.root / info.libdir.lstrip("/")
    stale = libdir / "libcuda.so.535.104.05"
    shutil.copyfile(libdir / f"libcuda.so.{info.spec.driver_version}", stale)
    inv = discover(str(info.root))
    paths = {f.container_path for f in inv.files_of("library")}
    assert f"{info.libdir}/libcuda.so.535.104.05" not in paths
    assert f"{info.libdir}/libcuda.so.{info.spec.driver_version}" in paths


def test_without_ld_so_cache_the_lib_dirs_are_searched(make_kit: MakeKit) -> None:
    info = make_kit(ldconfig=False)
    inv = discover(str(info.root))
    assert any("ld.so.cache is missing" in w for w in inv.warnings)
    names = {os.path.basename(f.container_path) for f in inv.files_of("library")}
    assert f"libnvidia-ml.so.{info.spec.driver_version}" in names
    assert f"libcuda.so.{info.spec.driver_version}" in names


def test_a_corrupt_ld_so_cache_is_a_warning_not_a_crash(make_kit: MakeKit) -> None:
    info = make_kit()
    (info.root / "etc/ld.so.cache").write_bytes(b"glibc-ld.so.cache1.1" + b"\xff" * 40)
    inv = discover(str(info.root))
    assert any("ld.so.cache" in w for w in inv.warnings)
    assert inv.files_of("library")  # found by the directory search instead


def test_a_symlinked_device_node_is_refused(make_kit: MakeKit, tmp_path: Path) -> None:
    info = make_kit()
    node = info.root / "dev/nvidia1"
    node.unlink()
    os.symlink("/dev/null", node)
    inv = discover(str(info.root))
    assert [g.minor for g in inv.gpus] == [0]
    assert any("/dev/nvidia1 is a symlink" in w for w in inv.warnings)


def test_a_node_with_a_stale_major_is_refused(make_kit: MakeKit) -> None:
    info = make_kit(uvm_nodes=False)
    node = info.root / "dev/nvidia-uvm"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(500, 0))  # /proc/devices says 508
    inv = discover(str(info.root))
    assert inv.node("nvidia-uvm") is None
    assert any("has major 500 but /proc/devices gives 508" in w for w in inv.warnings)


def test_an_excluded_gpu_is_left_out_and_indices_stay_dense(make_kit: MakeKit) -> None:
    from tests.engine.engine_kit import write_proc

    spec = KitSpec(gpus=fake_gpus(3))
    info = make_kit(spec)
    write_proc(info.root, spec, excluded=frozenset({1}))
    inv = discover(str(info.root))
    assert [(g.index, g.uuid) for g in inv.gpus] == [(0, spec.gpus[0].uuid), (1, spec.gpus[2].uuid)]
    assert any("excluded" in w for w in inv.warnings)


def test_without_proc_the_gpus_come_from_the_nodes(make_kit: MakeKit) -> None:
    info = make_kit()
    shutil.rmtree(info.root / "proc")
    inv = discover(str(info.root))
    assert [(g.index, g.minor, g.uuid) for g in inv.gpus] == [(0, 0, None), (1, 1, None)]
    # The version is then read from the library names.
    assert inv.driver_version == info.spec.driver_version


def test_separate_dev_root(make_kit: MakeKit, tmp_path: Path) -> None:
    info = make_kit()
    dev_root = tmp_path / "devroot"
    dev_root.mkdir()
    shutil.move(str(info.root / "dev"), dev_root / "dev")
    shutil.move(str(info.root / "proc"), dev_root / "proc")
    inv = discover(str(info.root), str(dev_root))
    assert [g.node.host_path for g in inv.gpus] == [
        str(dev_root / "dev/nvidia0"),
        str(dev_root / "dev/nvidia1"),
    ]
    assert inv.files_of("library")[0].host_path.startswith(str(info.root) + "/")


def test_driver_root_symlinks_resolve_inside_the_root(make_kit: MakeKit, tmp_path: Path) -> None:
    info = make_kit()
    # An absolute link inside a driver container's root means that root's /usr/bin, never the host's.
    smi = info.root / "usr/bin/nvidia-smi"
    real = info.root / "opt/nvidia/nvidia-smi"
    real.parent.mkdir(parents=True)
    shutil.move(str(smi), real)
    os.symlink("/opt/nvidia/nvidia-smi", smi)
    inv = discover(str(info.root))
    smi_file = next(f for f in inv.files_of("binary") if f.container_path.endswith("/nvidia-smi"))
    assert smi_file.host_path == str(real)


def test_wsl2(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    root = tmp_path / "wsl"
    (root / "dev").mkdir(parents=True)
    os.mknod(root / "dev/dxg", stat.S_IFCHR | 0o666, os.makedev(10, 63))
    lib = root / "usr/lib/wsl/lib"
    lib.mkdir(parents=True)
    for name in ("libdxcore.so", "libcuda.so.1", "libnvidia-ml.so.1", "nvidia-smi"):
        (lib / name).write_bytes(b"\x7fELF stand-in")
    inv = discover(str(root))
    assert inv.wsl
    assert [(n.path, n.major, n.minor) for n in inv.nodes] == [("/dev/dxg", 10, 63)]
    assert {f.container_path: f.kind for f in inv.files} == {
        "/usr/lib/wsl/lib/libdxcore.so": "library",
        "/usr/lib/wsl/lib/libcuda.so.1": "library",
        "/usr/lib/wsl/lib/libnvidia-ml.so.1": "library",
        "/usr/lib/wsl/lib/nvidia-smi": "binary",
    }


def test_no_driver_at_all(tmp_path: Path) -> None:
    inv = discover(str(tmp_path))
    assert inv.gpus == () and inv.files == () and inv.node("nvidiactl") is None
    assert any("not loaded" in w or "missing" in w for w in inv.warnings)


def test_a_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="is not a directory"):
        discover(str(tmp_path / "nope"))
