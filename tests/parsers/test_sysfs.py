"""sysfs readers: PCI devices and /sys/module, on fake host trees and on this machine's /sys."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.sysfs import (
    PciDevice,
    SysModule,
    is_3d_controller,
    is_display_controller,
    is_nvidia,
    is_nvswitch,
    parse_hex,
    parse_int,
    read_pci_devices,
    read_sys_module,
)
from gpudoctor.host.root import HostRoot
from tests.parsers.fuzzlib import FUZZ, FUZZ_SLOW, parse_or_error


def add_pci(root: Path, address: str, *, vendor: str, device: str, klass: str, driver: str | None) -> None:
    """Lay out a PCI function the way sysfs does: the real dir under /sys/devices, a link in /sys/bus."""
    real = root / "sys/devices/pci0000:00" / address
    real.mkdir(parents=True)
    (real / "vendor").write_text(vendor + "\n")
    (real / "device").write_text(device + "\n")
    (real / "class").write_text(klass + "\n")
    if driver:
        drivers = root / "sys/bus/pci/drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        os.symlink(f"../../../bus/pci/drivers/{driver}", real / "driver")
    links = root / "sys/bus/pci/devices"
    links.mkdir(parents=True, exist_ok=True)
    os.symlink(f"../../../devices/pci0000:00/{address}", links / address)


@pytest.fixture
def pci_host(tmp_path: Path) -> HostRoot:
    add_pci(tmp_path, "0000:3b:00.0", vendor="0x10de", device="0x2330", klass="0x030200", driver="nvidia")
    add_pci(tmp_path, "0000:01:00.0", vendor="0x10de", device="0x2204", klass="0x030000", driver="nouveau")
    add_pci(tmp_path, "0000:01:00.1", vendor="0x10de", device="0x1aef", klass="0x040300", driver=None)
    add_pci(tmp_path, "0000:05:00.0", vendor="0x10de", device="0x22a3", klass="0x068000", driver="nvidia")
    add_pci(tmp_path, "0000:00:02.0", vendor="0x8086", device="0x3e92", klass="0x030000", driver="i915")
    return HostRoot(tmp_path)


def test_read_pci_devices(pci_host: HostRoot) -> None:
    devices = read_pci_devices(pci_host)
    assert [d.address for d in devices] == [
        "0000:00:02.0",
        "0000:01:00.0",
        "0000:01:00.1",
        "0000:05:00.0",
        "0000:3b:00.0",
    ]
    h100 = devices[-1]
    assert h100 == PciDevice(
        address="0000:3b:00.0",
        vendor=0x10DE,
        device=0x2330,
        class_code=0x030200,
        driver="nvidia",
        sysfs_path="/sys/bus/pci/devices/0000:3b:00.0",
    )
    assert is_nvidia(h100) and is_display_controller(h100) and is_3d_controller(h100) and h100.is_nvidia
    gpu_on_nouveau, audio, switch, intel = devices[1], devices[2], devices[3], devices[0]
    assert gpu_on_nouveau.driver == "nouveau" and is_display_controller(gpu_on_nouveau)
    assert not is_3d_controller(gpu_on_nouveau)
    assert audio.driver is None and not is_display_controller(audio)
    assert is_nvswitch(switch) and not is_display_controller(switch)
    assert not is_nvidia(intel) and intel.is_display_controller
    assert "/sys/bus/pci/devices/0000:3b:00.0/vendor" in pci_host.accessed


def test_read_pci_skips_half_removed_device(pci_host: HostRoot, tmp_path: Path) -> None:
    (tmp_path / "sys/devices/pci0000:00/0000:01:00.1/class").unlink()
    assert "0000:01:00.1" not in [d.address for d in read_pci_devices(pci_host)]


def test_read_pci_bad_file_names_it(pci_host: HostRoot, tmp_path: Path) -> None:
    (tmp_path / "sys/devices/pci0000:00/0000:3b:00.0/vendor").write_text("nvidia\n")
    with pytest.raises(ParseError) as info:
        read_pci_devices(pci_host)
    assert info.value.path == "/sys/bus/pci/devices/0000:3b:00.0/vendor"


def test_read_pci_empty_root(tmp_path: Path) -> None:
    assert read_pci_devices(HostRoot(tmp_path)) == []


def test_read_pci_live_sys() -> None:
    if not Path("/sys/bus/pci/devices").is_dir():
        pytest.skip("no PCI bus in sysfs here")
    devices = read_pci_devices(HostRoot("/"))
    assert all(0 <= d.vendor <= 0xFFFF and 0 <= d.class_code <= 0xFFFFFF for d in devices)
    assert [d.address for d in devices] == sorted(os.listdir("/sys/bus/pci/devices"))


@pytest.mark.parametrize(("text", "value"), [("0x10de\n", 0x10DE), ("0x030200", 0x030200), ("10DE", 0x10DE)])
def test_parse_hex(text: str, value: int) -> None:
    assert parse_hex(text, path="/sys/x") == value


@pytest.mark.parametrize("text", ["", "0x", "0x10de0x", "1_0", "+0x1", "0x" + "f" * 17, "ten"])
def test_parse_hex_rejects(text: str) -> None:
    with pytest.raises(ParseError, match=r"^/sys/x: expected a hexadecimal number"):
        parse_hex(text, path="/sys/x")


def test_parse_int() -> None:
    assert parse_int("62\n", path="/sys/module/nvidia/refcnt") == 62
    with pytest.raises(ParseError, match="/sys/module/nvidia/refcnt"):
        parse_int("sixty", path="/sys/module/nvidia/refcnt")


def write_module(root: Path, name: str, **files: str) -> None:
    d = root / "sys/module" / name
    d.mkdir(parents=True)
    for file, content in files.items():
        (d / file).write_text(content)


def test_read_sys_module(tmp_path: Path) -> None:
    write_module(tmp_path, "nvidia", version="550.54.14\n", initstate="live\n", refcnt="62\n")
    write_module(tmp_path, "nvidia_uvm", version="550.54.14\n", initstate="live\n", refcnt="0\n")
    write_module(tmp_path, "vt")  # built-in: a directory with parameters only
    root = HostRoot(tmp_path)
    assert read_sys_module(root, "nvidia") == SysModule(
        name="nvidia", version="550.54.14", initstate="live", refcnt=62
    )
    uvm = read_sys_module(root, "nvidia-uvm")
    assert uvm is not None and uvm.name == "nvidia_uvm" and uvm.refcnt == 0
    assert read_sys_module(root, "vt") == SysModule(name="vt", version=None, initstate=None, refcnt=None)
    assert read_sys_module(root, "nouveau") is None
    assert "/sys/module/nouveau" in root.accessed


def test_read_sys_module_bad_refcnt_and_bad_name(tmp_path: Path) -> None:
    write_module(tmp_path, "nvidia", refcnt="lots\n")
    root = HostRoot(tmp_path)
    with pytest.raises(ParseError) as info:
        read_sys_module(root, "nvidia")
    assert info.value.path == "/sys/module/nvidia/refcnt"
    with pytest.raises(ValueError, match="not a kernel module name"):
        read_sys_module(root, "../etc")


# ---------------------------------------------------------------------------------------------- fuzz


@FUZZ
@given(st.text())
def test_fuzz_parse_hex(text: str) -> None:
    got = parse_or_error(parse_hex, text, path="/sys/bus/pci/devices/x/vendor", expected=int)
    assert got is None or got >= 0


@FUZZ_SLOW
@given(vendor=st.text(max_size=20), klass=st.text(max_size=20), refcnt=st.text(max_size=20))
def test_fuzz_sysfs_files_in_a_tree(vendor: str, klass: str, refcnt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        add_pci(base, "0000:3b:00.0", vendor="0x10de", device="0x2330", klass="0x030200", driver="nvidia")
        real = base / "sys/devices/pci0000:00/0000:3b:00.0"
        (real / "vendor").write_text(vendor, encoding="utf-8", errors="surrogateescape")
        (real / "class").write_text(klass, encoding="utf-8", errors="surrogateescape")
        write_module(base, "nvidia")
        (base / "sys/module/nvidia/refcnt").write_text(refcnt, encoding="utf-8", errors="surrogateescape")
        root = HostRoot(base)
        try:
            devices = read_pci_devices(root)
            assert len(devices) == 1
        except ParseError as exc:
            assert exc.path in (
                "/sys/bus/pci/devices/0000:3b:00.0/vendor",
                "/sys/bus/pci/devices/0000:3b:00.0/class",
            )
        try:
            module = read_sys_module(root, "nvidia")
            assert module is not None and isinstance(module.refcnt, int)
        except ParseError as exc:
            assert exc.path == "/sys/module/nvidia/refcnt"
