"""The /proc and /sys files of a Linux host with the NVIDIA driver, rendered as the kernel and driver write them.

One implementation, used by the bundled demo hosts (:mod:`gpudoctor.demo.hosts`) and by the test suite's fake
hosts (``tests/scenarios/builder.py``), so the two cannot drift apart. Everything here is pure: texts, bytes
and plain mappings of host paths; each caller wraps them into its own tree type.

GPUs are duck-typed (:class:`GpuLike`): the demo's ``DemoGpu`` and the test kit's ``FakeGpu`` both fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

Content = str | bytes

# Device numbers. The minors of nvidiactl and nvidia-modeset are fixed by the driver; the other majors are
# dynamic on a real host and are given here as /proc/devices names them (callers may pass their own).
NVIDIA_MAJOR = 195
NVIDIACTL_MINOR = 255
NVIDIA_MODESET_MINOR = 254
MAJORS: Mapping[str, int] = {"nvidia-frontend": NVIDIA_MAJOR, "nvidia-uvm": 508, "nvidia-caps": 509}

KERNEL_RELEASE = "6.5.0-27-generic"
PROC_VERSION = (
    f"Linux version {KERNEL_RELEASE} (buildd@lcy02-amd64-040) (x86_64-linux-gnu-gcc-12 (Ubuntu 12.3.0-1ubuntu1~22.04) "
    "12.3.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #28~22.04.1-Ubuntu SMP PREEMPT_DYNAMIC Fri Mar 15 10:51:06 UTC 2\n"
)
UBUNTU_OS_RELEASE = (
    'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION="22.04.4 LTS (Jammy Jellyfish)"\n'
    "VERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=jammy\n"
)
WSL2_RELEASE = "5.15.146.1-microsoft-standard-WSL2"
WSL2_PROC_VERSION = (
    f"Linux version {WSL2_RELEASE} (root@65c757a075e2) (gcc (GCC) 11.2.0, GNU ld (GNU Binutils) 2.37) #1 SMP "
    "Thu Jan 11 04:09:03 UTC 2024\n"
)
SECURE_BOOT_EFIVAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
PCI_ROOT = "/sys/devices/pci0000:00"
NVIDIA_MODULES = ("nvidia", "nvidia_uvm", "nvidia_modeset", "nvidia_drm")
NVIDIA_VENDOR = 0x10DE
CLASS_3D_CONTROLLER = 0x030200


class GpuLike(Protocol):
    """What the renderers need of a GPU."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def uuid(self) -> str: ...
    @property
    def minor(self) -> int: ...
    @property
    def sysfs_bus_id(self) -> str: ...  # 0000:3b:00.0
    @property
    def pci_device_id(self) -> int: ...


@dataclass(frozen=True, kw_only=True)
class Fragment:
    """Part of a host tree: files, symlinks (path -> target, written as given) and directories."""

    files: Mapping[str, Content] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()


_MODULE_LINES: dict[str, tuple[int, tuple[str, ...], str]] = {
    # name: (size, used by, taints)
    "nvidia_uvm": (1527808, (), "(POE)"),
    "nvidia_drm": (90112, (), "(POE)"),
    "nvidia_modeset": (1314816, ("nvidia_drm",), "(POE)"),
    "nvidia": (56823808, ("nvidia_uvm", "nvidia_modeset"), "(POE)"),
    "nouveau": (2818048, (), ""),
    "drm_kms_helper": (270336, ("nvidia_drm", "nouveau"), ""),
    "vfio_pci": (16384, (), ""),
    "ext4": (1019904, (), ""),
    "overlay": (188416, (), ""),
}


def proc_modules_text(modules: Iterable[str]) -> str:
    """/proc/modules listing `modules` (plus ext4 and overlay), with use counts and users as a real kernel has."""
    present = [*modules, "ext4", "overlay"]
    order = list(_MODULE_LINES)
    lines = []
    for name in sorted(present, key=lambda n: order.index(n) if n in order else 99):
        size, users, taints = _MODULE_LINES.get(name, (16384, (), ""))
        used = [u for u in users if u in present]
        deps = ",".join(used) + "," if used else "-"
        line = f"{name} {size} {len(used)} {deps} Live 0x0000000000000000"
        lines.append(f"{line} {taints}" if taints else line)
    return "\n".join(lines) + "\n"


def proc_devices_text(*, nvidia: bool = True, uvm: bool = True, frontend_name: str = "nvidia-frontend",
                      majors: Mapping[str, int] = MAJORS) -> str:
    """/proc/devices; with `nvidia` the driver's frontend (named `frontend_name`) and caps, with `uvm` nvidia-uvm."""
    char = [(1, "mem"), (4, "/dev/vc/0"), (4, "tty"), (5, "/dev/tty"), (5, "/dev/console"), (5, "/dev/ptmx"),
            (7, "vcs"), (10, "misc"), (13, "input"), (29, "fb"), (128, "ptm"), (136, "pts"), (226, "drm")]
    if nvidia:
        char.append((majors["nvidia-frontend"], frontend_name))
        char.append((majors["nvidia-caps"], "nvidia-caps"))
    if uvm:
        char.append((majors["nvidia-uvm"], "nvidia-uvm"))
    body = "".join(f"{major:3d} {name}\n" for major, name in sorted(char))
    return f"Character devices:\n{body}\nBlock devices:\n  7 loop\n  8 sd\n259 blkext\n"


def nvidia_version_text(version: str, *, open_module: bool = False) -> str:
    """/proc/driver/nvidia/version of the proprietary or (`open_module`) the open kernel module."""
    if open_module:
        first = (f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {version}  Release Build  "
                 "(dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:25:25 UTC 2024")
    else:
        first = f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  Thu Feb 22 01:44:30 UTC 2024"
    return f"{first}\nGCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04) \n"


def gpu_information_text(gpu: GpuLike, *, driver_version: str, excluded: bool = False, lost: bool = False) -> str:
    """``/proc/driver/nvidia/gpus/<bus>/information`` as the driver prints it (``??`` for a lost GPU)."""
    uuid = "??" if lost else gpu.uuid
    bios = "??.??.??.??.??" if lost else "96.00.74.00.0d"
    return (
        f"Model: \t\t {gpu.name}\n"
        f"IRQ:   \t\t {40 + gpu.index}\n"
        f"GPU UUID: \t {uuid}\n"
        f"Video BIOS: \t {bios}\n"
        "Bus Type: \t PCIe\n"
        "DMA Size: \t 52 bits\n"
        "DMA Mask: \t 0xfffffffffffff\n"
        f"Bus Location: \t {gpu.sysfs_bus_id}\n"
        f"Device Minor: \t {gpu.minor}\n"
        f"GPU Firmware: \t {driver_version}\n"
        f"GPU Excluded:\t {'Yes' if excluded else 'No'}\n"
    )


def params_text(*, device_file_mode: int = 0o666, uid: int = 0, gid: int = 0, modify_device_files: bool = True) -> str:
    """/proc/driver/nvidia/params (DeviceFileMode is printed in decimal: 438 == 0666)."""
    return (
        "ResmanDebugLevel: 4294967295\nRmLogonRC: 1\n"
        f"ModifyDeviceFiles: {int(modify_device_files)}\nDeviceFileUID: {uid}\nDeviceFileGID: {gid}\n"
        f"DeviceFileMode: {device_file_mode}\n"
        "InitializeSystemMemoryAllocations: 1\nUsePageAttributeTable: 4294967295\nEnableMSI: 1\n"
        "EnableStreamMemOPs: 0\nEnableUserNUMAManagement: 1\nNvLinkDisable: 0\nRmProfilingAdminOnly: 1\n"
        "PreserveVideoMemoryAllocations: 0\nDynamicPowerManagement: 3\nRegisterPCIDriver: 1\n"
        "EnableGpuFirmware: 18\nEnableGpuFirmwareLogs: 2\nOpenRmEnableUnsupportedGpus: 1\nDmaRemapPeerMmio: 1\n"
        'RegistryDwords: ""\nRegistryDwordsPerDevice: ""\nRmMsg: ""\nGpuBlacklist: ""\nTemporaryFilePath: ""\n'
        'ExcludedGpus: ""\n'
    )


def secure_boot_efivar(enabled: bool) -> bytes:
    """efivarfs content: 4 attribute bytes (NV+BS+RT = 0x06) then the value byte."""
    return b"\x06\x00\x00\x00" + (b"\x01" if enabled else b"\x00")


def module_sysfs(name: str, *, version: str | None) -> dict[str, Content]:
    """/sys/module/<name>: a live module, with a ``version`` file when the module has one."""
    files: dict[str, Content] = {f"/sys/module/{name}/initstate": "live\n", f"/sys/module/{name}/refcnt": "0\n"}
    if version is not None:
        files[f"/sys/module/{name}/version"] = f"{version}\n"
    return files


def pci_device_dir(address: str) -> str:
    return f"{PCI_ROOT}/{address}"


def pci_device(address: str, *, vendor: int, device: int, class_code: int, driver: str | None,
               subsystem: int = 0x16C1) -> Fragment:
    """One PCI function: the device directory under /sys/devices, the /sys/bus/pci/devices link to it, and
    its ``driver`` link into /sys/bus/pci/drivers/<driver>."""
    base = pci_device_dir(address)
    files: dict[str, Content] = {
        f"{base}/vendor": f"{vendor:#06x}\n",
        f"{base}/device": f"{device:#06x}\n",
        f"{base}/class": f"{class_code:#08x}\n",
        f"{base}/subsystem_vendor": f"{vendor:#06x}\n",
        f"{base}/subsystem_device": f"{subsystem:#06x}\n",
    }
    links = {f"/sys/bus/pci/devices/{address}": f"../../../devices/pci0000:00/{address}"}
    dirs = {"/sys/bus/pci/drivers"}
    if driver is not None:
        links[f"{base}/driver"] = f"../../../bus/pci/drivers/{driver}"
        dirs.add(f"/sys/bus/pci/drivers/{driver}")
    return Fragment(files=files, links=links, dirs=frozenset(dirs))


def gpu_pci_device(gpu: GpuLike, *, driver: str | None = "nvidia") -> Fragment:
    """An NVIDIA GPU (3D controller) on the PCI bus, bound to `driver`."""
    return pci_device(gpu.sysfs_bus_id, vendor=NVIDIA_VENDOR, device=gpu.pci_device_id,
                      class_code=CLASS_3D_CONTROLLER, driver=driver)


def base_pci_devices() -> tuple[Fragment, ...]:
    """What a server without NVIDIA has on its PCI bus: a host bridge and a BMC's ASPEED VGA."""
    return (
        pci_device("0000:00:00.0", vendor=0x8086, device=0x2020, class_code=0x060000, driver=None),
        pci_device("0000:02:00.0", vendor=0x1A03, device=0x2000, class_code=0x030000, driver="ast"),
    )


def base_system_files(*, os_release: str, proc_version: str, kernel: str) -> dict[str, Content]:
    """/etc/os-release, the kernel's identity and boot state, no NVIDIA module loaded, Secure Boot off."""
    return {
        "/etc/os-release": os_release,
        "/proc/version": proc_version,
        "/proc/sys/kernel/osrelease": kernel + "\n",
        "/proc/cmdline": f"BOOT_IMAGE=/boot/vmlinuz-{kernel} root=UUID=8f0c7c8e-2b7e ro quiet splash\n",
        "/proc/modules": proc_modules_text(()),
        "/proc/devices": proc_devices_text(nvidia=False, uvm=False),
        SECURE_BOOT_EFIVAR: secure_boot_efivar(False),
        "/sys/kernel/security/lockdown": "[none] integrity confidentiality\n",
    }


def kernel_driver_files(*, kernel: str, driver_version: str, gpus: Iterable[GpuLike], open_module: bool = False,
                        ko_content: bytes, majors: Mapping[str, int] = MAJORS) -> dict[str, Content]:
    """The loaded driver's procfs and sysfs files (all four modules live, every GPU known), its nvidia.ko
    (`ko_content`) under the kernel's DKMS tree, and the installer's nouveau blacklist."""
    files: dict[str, Content] = {
        "/proc/modules": proc_modules_text(NVIDIA_MODULES),
        "/proc/devices": proc_devices_text(majors=majors),
        "/proc/driver/nvidia/version": nvidia_version_text(driver_version, open_module=open_module),
        "/proc/driver/nvidia/params": params_text(),
        f"/lib/modules/{kernel}/updates/dkms/nvidia.ko": ko_content,
        "/etc/modprobe.d/blacklist-nvidia-nouveau.conf": "# generated by nvidia-installer\nblacklist nouveau\n"
                                                         "options nouveau modeset=0\n",
    }
    files.update(module_sysfs("nvidia", version=driver_version))
    files.update(module_sysfs("nvidia_uvm", version=None))
    files.update(module_sysfs("nvidia_modeset", version=driver_version))
    files.update(module_sysfs("nvidia_drm", version=driver_version))
    for g in gpus:
        files[f"/proc/driver/nvidia/gpus/{g.sysfs_bus_id}/information"] = gpu_information_text(
            g, driver_version=driver_version)
    return files


def nvidia_nodes(gpus: Iterable[GpuLike], *, mode: int = 0o666, uvm: bool = True,
                 majors: Mapping[str, int] = MAJORS) -> dict[str, tuple[int, int, int]]:
    """The driver's /dev nodes, path -> (major, minor, mode): control, modeset, one per GPU, and (`uvm`) UVM."""
    frontend = majors["nvidia-frontend"]
    nodes = {
        "/dev/nvidiactl": (frontend, NVIDIACTL_MINOR, mode),
        "/dev/nvidia-modeset": (frontend, NVIDIA_MODESET_MINOR, mode),
    }
    nodes.update({f"/dev/nvidia{g.minor}": (frontend, g.minor, mode) for g in gpus})
    if uvm:
        nodes["/dev/nvidia-uvm"] = (majors["nvidia-uvm"], 0, mode)
        nodes["/dev/nvidia-uvm-tools"] = (majors["nvidia-uvm"], 1, mode)
    return nodes
