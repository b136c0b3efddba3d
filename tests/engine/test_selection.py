"""Selection: a request on an inventory gives device nodes, mounts and hooks."""

from __future__ import annotations

import pytest

from gpudoctor.engine.edits import HOOK_ENV, IPC_BIND_OPTIONS, RO_BIND_OPTIONS
from gpudoctor.engine.inventory import DriverFile, Inventory
from gpudoctor.engine.request import CAPABILITIES, Request
from gpudoctor.engine.selection import SelectionError, common_edits, select


def _request(devices: tuple[str, ...], caps: frozenset[str] = frozenset({"utility", "compute"})) -> Request:
    return Request(devices=devices, capabilities=caps, source="NVIDIA_VISIBLE_DEVICES")


def _gpu_nodes(edits_paths: list[str]) -> list[str]:
    return [p for p in edits_paths if p[len("/dev/nvidia") :].isdigit()]


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        (("all",), ["/dev/nvidia0", "/dev/nvidia1"]),
        (("0",), ["/dev/nvidia0"]),
        (("1",), ["/dev/nvidia1"]),
        (("1", "0"), ["/dev/nvidia1", "/dev/nvidia0"]),
        ((), []),
    ],
)
def test_gpu_nodes_follow_the_request(
    kit_inventory: Inventory, devices: tuple[str, ...], expected: list[str]
) -> None:
    edits = select(kit_inventory, _request(devices))
    assert _gpu_nodes([n.path for n in edits.device_nodes]) == expected
    # The driver always comes along: nvidiactl, and with compute the UVM nodes.
    assert {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"} <= {
        n.path for n in edits.device_nodes
    }
    assert "/dev/nvidia-modeset" not in {n.path for n in edits.device_nodes}


def test_uuid_selects_that_gpu(kit_inventory: Inventory) -> None:
    uuid = kit_inventory.gpus[1].uuid
    assert uuid is not None
    edits = select(kit_inventory, _request((uuid.lower().replace("gpu-", "GPU-"),)))
    assert _gpu_nodes([n.path for n in edits.device_nodes]) == ["/dev/nvidia1"]


@pytest.mark.parametrize("name", ["2", "GPU-00000000-0000-0000-0000-000000000000"])
def test_unknown_devices_are_an_error_that_lists_the_gpus(kit_inventory: Inventory, name: str) -> None:
    with pytest.raises(SelectionError) as exc:
        select(kit_inventory, _request((name,)))
    message = str(exc.value)
    assert repr(name) in message
    assert f"0 ({kit_inventory.gpus[0].uuid})" in message and "1 (" in message


def test_device_nodes_are_rw_without_mknod(kit_inventory: Inventory) -> None:
    edits = select(kit_inventory, _request(("all",)))
    for node in edits.device_nodes:
        assert node.permissions == "rw"
        assert node.to_oci_rule() == {
            "allow": True,
            "type": "c",
            "major": node.major,
            "minor": node.minor,
            "access": "rw",
        }


def test_default_capabilities_mount_utility_and_compute_only(kit_inventory: Inventory) -> None:
    edits = select(kit_inventory, _request(("0",)))
    targets = {m.container_path for m in edits.mounts}
    by_path = {f.container_path: f for f in kit_inventory.files}
    caps = {by_path[t].capability for t in targets}
    assert caps == {"utility", "compute", ""}  # "" = firmware, always
    assert any(t.endswith("/nvidia-smi") for t in targets)
    assert not any("libGLX_nvidia" in t or "libnvcuvid" in t for t in targets)


def test_video_brings_compute_and_display_brings_graphics_and_modeset(kit_inventory: Inventory) -> None:
    video = select(kit_inventory, _request(("0",), frozenset({"video"})))
    video_targets = " ".join(m.container_path for m in video.mounts)
    assert (
        "libnvcuvid" in video_targets and "libcuda.so" in video_targets and "nvidia-smi" not in video_targets
    )
    display = select(kit_inventory, _request(("0",), frozenset({"display"})))
    assert "/dev/nvidia-modeset" in {n.path for n in display.device_nodes}
    assert any("libGLX_nvidia" in m.container_path for m in display.mounts)


def test_mount_options(kit_inventory: Inventory) -> None:
    edits = select(kit_inventory, _request(("0",), CAPABILITIES))
    for mount in edits.mounts:
        expected = IPC_BIND_OPTIONS if mount.container_path.endswith("/socket") else RO_BIND_OPTIONS
        assert mount.options == expected, mount
        # Sources are host driver files only.
        assert mount.host_path.startswith(kit_inventory.driver_root + "/")


def test_one_hook_links_then_ldcache_with_an_explicit_env(kit_inventory: Inventory) -> None:
    from gpudoctor.engine.hookspec import create_symlinks_hook, update_ldcache_hook

    edits = select(kit_inventory, _request(("0",)))
    [hook] = edits.hooks  # both commands in one interpreter: one Python start per container
    assert hook.hook_name == "createContainer"
    assert hook.env == HOOK_ENV
    assert hook.timeout and hook.timeout > 0
    assert hook.path.startswith("/") and hook.args[0] == hook.path
    assert hook.args[1:5] == ("-I", "-S", hook.args[3], "hooks") and hook.args[3].endswith(
        "/gpudoctor/engine/entry.py"
    )
    sep = hook.args.index("--")
    links, ldcache = hook.args[5:sep], hook.args[sep + 1 :]
    # Each half is exactly what the hooks module builds (and validates) for that command.
    libdir = "/usr/lib/x86_64-linux-gnu"
    pairs = [tuple(arg[len("--link=") :].split("::")) for arg in links[1:]]
    assert list(links) == create_symlinks_hook(pairs)["args"][5:]
    assert (
        list(ldcache) == update_ldcache_hook([libdir])["args"][5:] == ["update-ldcache", f"--folder={libdir}"]
    )
    version = kit_inventory.driver_version
    assert f"--link=libnvidia-ml.so.{version}::{libdir}/libnvidia-ml.so.1" in links
    assert f"--link=libcuda.so.1::{libdir}/libcuda.so" in links  # the development link


def test_compat32_libraries_need_compat32(kit_inventory: Inventory) -> None:
    lib32 = DriverFile(
        kind="library", host_path="/h/usr/lib/i386-linux-gnu/libcuda.so.1.2", container_path="/usr/lib/i386-linux-gnu/libcuda.so.1.2",
        capability="compute", soname="libcuda.so.1", arch="i386",
    )  # fmt: skip
    inv = Inventory(
        **{
            **{k: getattr(kit_inventory, k) for k in Inventory.__slots__},
            "files": (*kit_inventory.files, lib32),
        }
    )
    plain = common_edits(inv, {"compute"}, hooks=False)
    both = common_edits(inv, {"compute", "compat32"}, hooks=False)
    assert lib32.container_path not in {m.container_path for m in plain.mounts}
    assert lib32.container_path in {m.container_path for m in both.mounts}


def test_no_driver_is_a_clear_error(tmp_path: object) -> None:
    inv = Inventory(
        driver_root="/x",
        dev_root="/x",
        driver_version=None,
        warnings=("/proc/devices lists no nvidia driver",),
    )
    with pytest.raises(SelectionError, match="/x/dev/nvidiactl is missing .*not loaded"):
        select(inv, _request(("all",)))


def test_all_without_gpus_is_an_error(kit_inventory: Inventory) -> None:
    inv = Inventory(**{**{k: getattr(kit_inventory, k) for k in Inventory.__slots__}, "gpus": ()})
    with pytest.raises(SelectionError, match="=all, but this host has no usable GPU"):
        select(inv, _request(("all",)))
    # none still works: the driver without GPUs.
    assert select(inv, _request(())).mounts


def test_wsl_takes_all_or_none(tmp_path: object) -> None:
    from gpudoctor.engine.inventory import Node

    dxg = Node(
        name="dxg", path="/dev/dxg", host_path="/dev/dxg", major=10, minor=63, mode=0o666, capability="gpu"
    )
    lib = DriverFile(
        kind="library",
        host_path="/usr/lib/wsl/lib/libcuda.so.1",
        container_path="/usr/lib/wsl/lib/libcuda.so.1",
    )
    inv = Inventory(driver_root="/", dev_root="/", driver_version=None, nodes=(dxg,), files=(lib,), wsl=True)
    assert [n.path for n in select(inv, _request(("all",)), hooks=False).device_nodes] == ["/dev/dxg"]
    assert select(inv, _request(()), hooks=False).device_nodes == ()
    with pytest.raises(SelectionError, match="WSL2"):
        select(inv, _request(("0",)))
