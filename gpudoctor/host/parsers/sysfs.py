"""Readers for sysfs: PCI devices (``/sys/bus/pci/devices``) and loaded modules (``/sys/module``).

The readers walk directories through a HostRoot; the per-file parsing (`parse_hex`, `parse_int`) is pure.
"""

from __future__ import annotations

import posixpath
import re

from gpudoctor.host.parsers._util import fail, snippet
from gpudoctor.host.root import HostRoot
from gpudoctor.record import Record

__all__ = [
    "NVIDIA_VENDOR_ID",
    "PciDevice",
    "SysModule",
    "is_3d_controller",
    "is_display_controller",
    "is_nvidia",
    "is_nvswitch",
    "parse_hex",
    "parse_int",
    "read_pci_devices",
    "read_sys_module",
]

NVIDIA_VENDOR_ID = 0x10DE
PCI_DEVICES_DIR = "/sys/bus/pci/devices"

_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]{1,16})")
_INT = re.compile(r"-?\d{1,19}")


def parse_hex(text: str, *, path: str) -> int:
    """Parse a sysfs hex value such as ``0x10de`` or ``0x030200`` (the ``0x`` is optional)."""
    value = text.strip()
    m = _HEX.fullmatch(value)
    if m is None:
        fail(path, f"expected a hexadecimal number, got {snippet(value)}")
    return int(m.group(1), 16)


def parse_int(text: str, *, path: str) -> int:
    """Parse a sysfs decimal value such as a module's ``refcnt``."""
    value = text.strip()
    if not _INT.fullmatch(value):
        fail(path, f"expected a number, got {snippet(value)}")
    return int(value)


class PciDevice(Record):
    """A PCI function under ``/sys/bus/pci/devices``."""

    address: str
    """Domain:bus:slot.function, e.g. ``0000:3b:00.0``."""
    vendor: int
    device: int
    class_code: int
    """24-bit class: base class, subclass, programming interface (``0x030200`` = 3D controller)."""
    driver: str | None
    """Name of the bound kernel driver (``nvidia``, ``nouveau``, ``vfio-pci``), None when unbound."""
    sysfs_path: str
    """Host path of the device directory, e.g. ``/sys/bus/pci/devices/0000:3b:00.0``."""

    @property
    def is_nvidia(self) -> bool:
        return is_nvidia(self)

    @property
    def is_display_controller(self) -> bool:
        return is_display_controller(self)


def is_nvidia(dev: PciDevice) -> bool:
    """Vendor is NVIDIA (0x10de)."""
    return dev.vendor == NVIDIA_VENDOR_ID


def is_display_controller(dev: PciDevice) -> bool:
    """Base class 0x03: VGA (0x0300), XGA (0x0301), 3D controller (0x0302, how data-center GPUs appear), other."""
    return (dev.class_code >> 16) == 0x03


def is_3d_controller(dev: PciDevice) -> bool:
    """Class 0x0302: a GPU without display outputs (e.g. A100, H100)."""
    return (dev.class_code >> 8) == 0x0302


def is_nvswitch(dev: PciDevice) -> bool:
    """An NVIDIA NVSwitch: vendor 0x10de with bridge class 0x0680."""
    return is_nvidia(dev) and (dev.class_code >> 8) == 0x0680


def read_pci_devices(root: HostRoot) -> list[PciDevice]:
    """Every PCI function with readable ``vendor``, ``device`` and ``class`` files, sorted by address.

    A device whose files are missing (hot-unplugged while listing) is skipped. A file with content that is
    not hex raises ParseError naming that file.
    """
    out: list[PciDevice] = []
    for address in root.listdir(PCI_DEVICES_DIR):
        base = f"{PCI_DEVICES_DIR}/{address}"
        values: dict[str, int] = {}
        for name in ("vendor", "device", "class"):
            file_path = f"{base}/{name}"
            text = root.try_read_text(file_path, max_bytes=64)
            if text is None:
                break
            values[name] = parse_hex(text, path=file_path)
        else:
            link = root.readlink(f"{base}/driver")
            driver = posixpath.basename(link.rstrip("/")) if link else ""
            out.append(
                PciDevice(
                    address=address,
                    vendor=values["vendor"],
                    device=values["device"],
                    class_code=values["class"],
                    driver=driver or None,
                    sysfs_path=base,
                )
            )
    return out


class SysModule(Record):
    """A module as ``/sys/module/<name>`` shows it. Built-in modules have no ``initstate`` or ``refcnt``."""

    name: str
    version: str | None
    """``MODULE_VERSION`` (the NVIDIA modules report the driver version, e.g. ``550.54.14``)."""
    initstate: str | None
    """``live``, ``coming`` or ``going``; None for built-in modules."""
    refcnt: int | None


_SYS_MODULE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def read_sys_module(root: HostRoot, name: str) -> SysModule | None:
    """Read ``/sys/module/<name>``; None when the module is neither loaded nor built in.

    `name` may use ``-`` or ``_`` (``nvidia-uvm`` and ``nvidia_uvm`` are the same module; sysfs uses ``_``).
    Raises ValueError for a name that is not a module name, ParseError for a malformed ``refcnt``.
    """
    sys_name = name.replace("-", "_")
    if not _SYS_MODULE_NAME.fullmatch(sys_name):
        raise ValueError(f"not a kernel module name: {name!r}")
    base = f"/sys/module/{sys_name}"
    if not root.is_dir(base):
        root.exists(base)  # record the look-up so a snapshot shows the module was looked for
        return None

    def read(file: str) -> str | None:
        text = root.try_read_text(f"{base}/{file}", max_bytes=4096)
        return None if text is None else text.strip()

    refcnt_text = read("refcnt")
    return SysModule(
        name=sys_name,
        version=read("version") or None,
        initstate=read("initstate") or None,
        refcnt=None if refcnt_text is None else parse_int(refcnt_text, path=f"{base}/refcnt"),
    )
