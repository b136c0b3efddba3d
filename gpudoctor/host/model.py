"""Host-level facts shared by the driver/modules/devices checks and the report header.

Every accessor is built on :meth:`HostFacts.memo`, so concurrent checks parse each file once. Accessors
never raise for what they find on disk: a missing file has ``exists=False``, a file that does not parse
carries its ParseError, and the checks turn both into findings that name the file. Paths are host paths
(``/proc/modules``), never ``--root``-prefixed ones.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat as stat_mod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gpudoctor.host.errors import ParseError
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.parsers.ldcache import LdCacheEntry, parse_ld_so_cache
from gpudoctor.host.parsers.nvproc import (
    DriverVersion,
    GpuProcInfo,
    parse_driver_version,
    parse_gpu_information,
)
from gpudoctor.host.parsers.nvproc import parse_params as _parse_params
from gpudoctor.host.parsers.procfs import (
    KernelVersion,
    ModuleEntry,
    ProcDevices,
    parse_devices,
    parse_modules,
    parse_proc_version,
)
from gpudoctor.host.parsers.sysfs import PciDevice, SysModule, is_display_controller, is_nvidia, is_nvswitch
from gpudoctor.host.root import DEFAULT_MAX_BYTES
from gpudoctor.record import Record, field

if TYPE_CHECKING:
    from gpudoctor.host.nvml import NvmlProbe
    from gpudoctor.host.parsers.osinfo import OsInfo

T = TypeVar("T")

PROC_VERSION = "/proc/version"
OSRELEASE = "/proc/sys/kernel/osrelease"
NVIDIA_VERSION = "/proc/driver/nvidia/version"
NVIDIA_PARAMS = "/proc/driver/nvidia/params"
NVIDIA_GPUS_DIR = "/proc/driver/nvidia/gpus"
PROC_MODULES = "/proc/modules"
PROC_DEVICES = "/proc/devices"
PROC_CMDLINE = "/proc/cmdline"
PCI_DEVICES = "/sys/bus/pci/devices"
LD_SO_CACHE = "/etc/ld.so.cache"
WSL_LIB_DIR = "/usr/lib/wsl/lib"
DXG = "/dev/dxg"
NVML_SONAME = "libnvidia-ml.so.1"
CUDA_SONAME = "libcuda.so.1"

# Where driver packages put their libraries when ld.so.cache does not name them.
LIB_DIRS: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib64",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu/nvidia/current",
)
# The PATH a login shell has; nvidia-smi lives in /usr/bin on every distro we know.
BIN_DIRS: tuple[str, ...] = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
MODPROBE_DIRS: tuple[str, ...] = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d")

WSL_SKIP = "does not apply on WSL2: GPUs are paravirtualised through /dev/dxg"

_VERSIONED_SO = re.compile(r"\.so\.(\d+\.\d+(?:\.\d+)?)$")
_SAFE_RELEASE = re.compile(r"[A-Za-z0-9._+\-]{1,128}")
_MACHINE_ARCH = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "aarch64", "arm64": "aarch64",
                 "ppc64le": "ppc64", "s390x": "s390x"}


# -- generic file facts ------------------------------------------------------------------------------------


class FileFact(Record, Generic[T]):
    """A host file as found: absent, unreadable, unparseable (`error`), or parsed (`value`)."""

    path: str
    exists: bool
    value: T | None = None
    error: ParseError | None = None
    unreadable: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None

    def problem(self) -> str:
        """One evidence line for a file that could not be used (or ``"<path>: present"``)."""
        if not self.exists:
            return f"{self.path}: not present"
        if self.unreadable is not None:
            return f"{self.path}: cannot be read ({self.unreadable})"
        if self.error is not None:
            return f"{self.error} (cannot be parsed)"
        return f"{self.path}: present"


def load_bytes(facts: HostFacts, path: str, parse: Callable[[bytes], T], *,
               max_bytes: int = DEFAULT_MAX_BYTES) -> FileFact[T]:
    """Read `path` through the root and parse its bytes; what went wrong is in the FileFact, never raised."""
    root = facts.root
    if not root.exists(path):
        return FileFact(path=path, exists=False)
    if root.is_dir(path):
        return FileFact(path=path, exists=True, unreadable="is a directory, not a file")
    try:
        data = root.read_bytes(path, max_bytes=max_bytes)
    except OSError as exc:
        return FileFact(path=path, exists=True, unreadable=exc.strerror or str(exc))
    try:
        return FileFact(path=path, exists=True, value=parse(data))
    except ParseError as exc:
        return FileFact(path=path, exists=True, error=exc)


def load_text(facts: HostFacts, path: str, parse: Callable[[str], T]) -> FileFact[T]:
    """Like load_bytes, for a text parser: undecodable bytes become U+FFFD (as HostRoot.read_text does)."""
    return load_bytes(facts, path, lambda data: parse(data.decode("utf-8", errors="replace")))


# -- kernel, WSL -------------------------------------------------------------------------------------------


def proc_version(facts: HostFacts) -> FileFact[KernelVersion]:
    return facts.memo("m:proc_version", lambda: load_text(facts, PROC_VERSION,
                                                          lambda t: parse_proc_version(t, path=PROC_VERSION)))


def kernel_release(facts: HostFacts) -> str | None:
    """``uname -r`` of the host: /proc/sys/kernel/osrelease, else the release in /proc/version."""

    def compute() -> str | None:
        text = facts.root.try_read_text(OSRELEASE, max_bytes=256)
        if text is not None and text.strip() and "\0" not in text and len(text.strip().split()) == 1:
            return text.strip()
        pv = proc_version(facts)
        return pv.value.release if pv.value is not None else None

    return facts.memo("m:kernel_release", compute)


class WslInfo(Record):
    """Whether the host is WSL, and the line that says so. `kind` is "wsl2", "wsl1" or None."""

    kind: str | None
    evidence: str

    @property
    def wsl2(self) -> bool:
        return self.kind == "wsl2"

    @property
    def wsl1(self) -> bool:
        return self.kind == "wsl1"


def wsl(facts: HostFacts) -> WslInfo:
    """WSL is decided by the kernel release (``-microsoft-standard-WSL2``), not by /dev/dxg, whose absence on
    WSL2 is itself a finding."""

    def compute() -> WslInfo:
        pv = proc_version(facts)
        if pv.value is not None:
            if pv.value.is_wsl2:
                return WslInfo(kind="wsl2", evidence=f"{PROC_VERSION}: kernel {pv.value.release} (WSL2)")
            if pv.value.is_wsl1:
                return WslInfo(kind="wsl1", evidence=f"{PROC_VERSION}: kernel {pv.value.release} (WSL1)")
            return WslInfo(kind=None, evidence=f"{PROC_VERSION}: kernel {pv.value.release}")
        release = kernel_release(facts) or ""
        if "microsoft" in release or "WSL2" in release:
            return WslInfo(kind="wsl2", evidence=f"{OSRELEASE}: {release} (WSL2)")
        if "Microsoft" in release:
            return WslInfo(kind="wsl1", evidence=f"{OSRELEASE}: {release} (WSL1)")
        return WslInfo(kind=None, evidence=pv.problem())

    return facts.memo("m:wsl", compute)


# -- /proc/driver/nvidia -----------------------------------------------------------------------------------


def nvidia_version(facts: HostFacts) -> FileFact[DriverVersion]:
    """The loaded kernel module's version file (absent when nvidia.ko is not loaded)."""
    return facts.memo("m:nvidia_version", lambda: load_text(facts, NVIDIA_VERSION,
                                                            lambda t: parse_driver_version(t, path=NVIDIA_VERSION)))


def nvidia_params(facts: HostFacts) -> FileFact[dict[str, str]]:
    return facts.memo("m:nvidia_params", lambda: load_text(facts, NVIDIA_PARAMS,
                                                           lambda t: _parse_params(t, path=NVIDIA_PARAMS)))


class ProcGpu(Record):
    """One ``/proc/driver/nvidia/gpus/<bus>/information`` file: `bus_dir` is the directory name."""

    bus_dir: str
    path: str
    info: GpuProcInfo | None = None
    error: ParseError | None = None
    unreadable: str | None = None

    @property
    def pci_address(self) -> str:
        return normalize_bus_id(self.info.bus_location if self.info and self.info.bus_location else self.bus_dir)


def proc_gpus(facts: HostFacts) -> list[ProcGpu]:
    """The GPUs the loaded driver knows, in bus order ([] when the driver is not loaded)."""

    def compute() -> list[ProcGpu]:
        out: list[ProcGpu] = []
        for name in facts.root.listdir(NVIDIA_GPUS_DIR):
            path = f"{NVIDIA_GPUS_DIR}/{name}/information"
            if not facts.root.is_file(path):
                facts.root.exists(path)
                out.append(ProcGpu(bus_dir=name, path=path, unreadable="missing"))
                continue
            try:
                text = facts.root.read_text(path, max_bytes=64 * 1024)
            except OSError as exc:
                out.append(ProcGpu(bus_dir=name, path=path, unreadable=exc.strerror or str(exc)))
                continue
            try:
                out.append(ProcGpu(bus_dir=name, path=path, info=parse_gpu_information(text, path=path)))
            except ParseError as exc:
                out.append(ProcGpu(bus_dir=name, path=path, error=exc))
        return out

    return facts.memo("m:proc_gpus", compute)


# -- modules, devices --------------------------------------------------------------------------------------


def proc_modules(facts: HostFacts) -> FileFact[dict[str, ModuleEntry]]:
    return facts.memo("m:proc_modules", lambda: load_text(facts, PROC_MODULES,
                                                          lambda t: parse_modules(t, path=PROC_MODULES)))


def proc_devices(facts: HostFacts) -> FileFact[ProcDevices]:
    return facts.memo("m:proc_devices", lambda: load_text(facts, PROC_DEVICES,
                                                          lambda t: parse_devices(t, path=PROC_DEVICES)))


class SysModuleFact(Record):
    path: str
    value: SysModule | None = None
    error: ParseError | None = None


def sys_module(facts: HostFacts, name: str) -> SysModuleFact:
    """``/sys/module/<name>`` (None value when the module is neither loaded nor built in)."""
    from gpudoctor.host.parsers.sysfs import read_sys_module

    sys_name = name.replace("-", "_")

    def compute() -> SysModuleFact:
        path = f"/sys/module/{sys_name}"
        try:
            return SysModuleFact(path=path, value=read_sys_module(facts.root, sys_name))
        except ParseError as exc:
            return SysModuleFact(path=path, error=exc)

    return facts.memo(f"m:sys_module:{sys_name}", compute)


class ModuleState(Record):
    """A kernel module as /proc/modules and /sys/module show it, with the evidence lines for both."""

    name: str
    entry: ModuleEntry | None
    sys: SysModule | None
    evidence: tuple[str, ...]
    error: str | None = None
    """Set when /proc/modules (or /sys/module/<name>) could not be used; says which file and why."""

    @property
    def loaded(self) -> bool:
        """In /proc/modules, or (when /proc/modules is unusable) present and live in /sys/module."""
        if self.entry is not None:
            return True
        return self.sys is not None and self.sys.initstate in (None, "live") and self.error is not None

    @property
    def live(self) -> bool:
        if self.entry is not None and self.entry.state != "Live":
            return False
        return not (self.sys is not None and self.sys.initstate not in (None, "live"))


def module_state(facts: HostFacts, name: str) -> ModuleState:
    def compute() -> ModuleState:
        mods = proc_modules(facts)
        sysm = sys_module(facts, name)
        evidence: list[str] = []
        entry: ModuleEntry | None = None
        error: str | None = None
        if mods.value is not None:
            entry = mods.value.get(name)
            if entry is None:
                evidence.append(f"{PROC_MODULES}: no entry for {name}")
            else:
                used = ",".join(entry.used_by) or "-"
                taints = f" ({entry.taints})" if entry.taints else ""
                refs = "-" if entry.refcount < 0 else str(entry.refcount)
                evidence.append(f"{PROC_MODULES}: {name} {entry.size} {refs} {used} {entry.state}{taints}")
        else:
            error = mods.problem()
            evidence.append(error)
        if sysm.error is not None:
            evidence.append(f"{sysm.error} (cannot be parsed)")
            error = error or str(sysm.error)
        elif sysm.value is None:
            evidence.append(f"{sysm.path}: not present")
        else:
            state = sysm.value.initstate or "built-in"
            version = f", version {sysm.value.version}" if sysm.value.version else ""
            evidence.append(f"{sysm.path}/initstate: {state}{version}")
        return ModuleState(name=name, entry=entry, sys=sysm.value, evidence=tuple(evidence), error=error)

    return facts.memo(f"m:module_state:{name}", compute)


class DeviceNode(Record):
    """What is at a /dev path: `kind` is "char", "missing" or another file type."""

    path: str
    kind: str
    major: int | None = None
    minor: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    @property
    def exists(self) -> bool:
        return self.kind != "missing"

    @property
    def is_char(self) -> bool:
        return self.kind == "char"

    def describe(self) -> str:
        if not self.exists:
            return f"{self.path}: missing"
        if not self.is_char or self.mode is None:
            return f"{self.path}: exists but is a {self.kind}, not a character device"
        return (f"{self.path}: {stat_mod.filemode(stat_mod.S_IFCHR | self.mode)} {self.uid}:{self.gid} "
                f"c {self.major}:{self.minor}")


def device_node(facts: HostFacts, path: str) -> DeviceNode:
    def compute() -> DeviceNode:
        st = facts.root.stat(path)
        if st is None:
            return DeviceNode(path=path, kind="missing")
        mode = st.st_mode
        if stat_mod.S_ISCHR(mode):
            return DeviceNode(path=path, kind="char", major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
                              mode=stat_mod.S_IMODE(mode), uid=st.st_uid, gid=st.st_gid)
        kind = ("directory" if stat_mod.S_ISDIR(mode) else "regular file" if stat_mod.S_ISREG(mode)
                else "block device" if stat_mod.S_ISBLK(mode) else "special file")
        return DeviceNode(path=path, kind=kind, mode=stat_mod.S_IMODE(mode), uid=st.st_uid, gid=st.st_gid)

    return facts.memo(f"m:devnode:{path}", compute)


# -- PCI ---------------------------------------------------------------------------------------------------


class PciScan(Record):
    """The PCI bus. `readable` is False when the root has no /sys/bus/pci/devices at all."""

    devices: tuple[PciDevice, ...] = ()
    readable: bool = True
    error: ParseError | None = None

    @property
    def nvidia_gpus(self) -> list[PciDevice]:
        return [d for d in self.devices if is_nvidia(d) and is_display_controller(d)]

    @property
    def nvswitches(self) -> list[PciDevice]:
        return [d for d in self.devices if is_nvswitch(d)]

    @property
    def other_display(self) -> list[PciDevice]:
        return [d for d in self.devices if not is_nvidia(d) and is_display_controller(d)]


def pci(facts: HostFacts) -> PciScan:
    from gpudoctor.host.parsers.sysfs import read_pci_devices

    def compute() -> PciScan:
        if not facts.root.is_dir(PCI_DEVICES):
            facts.root.exists(PCI_DEVICES)
            return PciScan(readable=False)
        try:
            return PciScan(devices=tuple(read_pci_devices(facts.root)))
        except ParseError as exc:
            return PciScan(error=exc)

    return facts.memo("m:pci", compute)


_VENDORS = {0x8086: "Intel", 0x1002: "AMD", 0x1022: "AMD", 0x1A03: "ASPEED", 0x1234: "QEMU", 0x15AD: "VMware",
            0x1AF4: "virtio", 0x102B: "Matrox", 0x10DE: "NVIDIA"}


def describe_pci(dev: PciDevice) -> str:
    """One evidence line: ``/sys/bus/pci/devices/0000:3b:00.0: NVIDIA 0x10de:0x2330 class 0x030200, driver nvidia``."""
    vendor = _VENDORS.get(dev.vendor, "vendor")
    driver = dev.driver or "none"
    return (f"{dev.sysfs_path}: {vendor} {dev.vendor:#06x}:{dev.device:#06x} class {dev.class_code:#08x}, "
            f"driver {driver}")


def normalize_bus_id(bus_id: str) -> str:
    """Any PCI address form (``00000000:3B:00.0``, ``0000:3b:00.0``, ``3b:00.0``) -> ``0000:3b:00.0``."""
    text = bus_id.strip().lower()
    m = re.fullmatch(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])", text)
    if m is None:
        return text
    domain = int(m.group(1) or "0", 16)
    return f"{domain:04x}:{int(m.group(2), 16):02x}:{int(m.group(3), 16):02x}.{m.group(4)}"


def nvml_bus_id(bus_id: str) -> str:
    """``0000:3b:00.0`` -> NVML's form ``00000000:3B:00.0`` (what nvidia-smi prints)."""
    norm = normalize_bus_id(bus_id)
    m = re.fullmatch(r"([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])", norm)
    if m is None:
        return bus_id
    return f"{int(m.group(1), 16):08X}:{m.group(2).upper()}:{m.group(3).upper()}.{m.group(4)}"


# -- firmware, boot configuration --------------------------------------------------------------------------


class SecureBoot(Record):
    enabled: bool | None
    evidence: str


def secure_boot(facts: HostFacts) -> SecureBoot:
    from gpudoctor.host.parsers.osinfo import SECURE_BOOT_EFIVAR, read_secure_boot

    def compute() -> SecureBoot:
        try:
            value = read_secure_boot(facts.root)
        except ParseError as exc:
            return SecureBoot(enabled=None, evidence=f"{exc} (cannot be parsed)")
        if value is None:
            return SecureBoot(enabled=None, evidence=f"{SECURE_BOOT_EFIVAR}: not present (not an EFI boot?)")
        return SecureBoot(enabled=value, evidence=f"{SECURE_BOOT_EFIVAR}: value {int(value)} "
                                                  f"(Secure Boot {'on' if value else 'off'})")

    return facts.memo("m:secure_boot", compute)


def lockdown(facts: HostFacts) -> str | None:
    from gpudoctor.host.parsers.osinfo import read_lockdown

    def compute() -> str | None:
        try:
            return read_lockdown(facts.root)
        except ParseError:
            return None

    return facts.memo("m:lockdown", compute)


class ModprobeConfig(Record):
    """What modprobe.d and the kernel command line say about modules.

    `blacklists` maps a module name to the lines that blacklist it (``/etc/modprobe.d/x.conf:3: blacklist
    nouveau``); `options` maps a module name to its ``options`` lines.
    """

    blacklists: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)
    cmdline: str | None = None


def _canon(module: str) -> str:
    return module.replace("-", "_")


def parse_modprobe_conf(text: str, *, path: str, into: ModprobeConfig) -> None:
    """Add one modprobe.d file's ``blacklist``, ``install X /bin/false`` and ``options`` lines to `into`.

    Lenient like modprobe itself: lines it does not understand are ignored.
    """
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if len(words) < 2:
            continue
        cmd, module = words[0], _canon(words[1])
        where = f"{path}:{lineno}: {line[:120]}"
        # `install X /bin/false` is the other way distributions keep a module from loading.
        disabled = cmd == "install" and len(words) >= 3 and posixpath.basename(words[2]) in ("false", "true")
        if cmd == "blacklist" or disabled:
            into.blacklists.setdefault(module, []).append(where)
        elif cmd == "options":
            into.options.setdefault(module, []).append(where)


def modprobe_config(facts: HostFacts) -> ModprobeConfig:
    def compute() -> ModprobeConfig:
        cfg = ModprobeConfig()
        for d in MODPROBE_DIRS:
            for name in facts.root.listdir(d):
                if not name.endswith(".conf"):
                    continue
                path = f"{d}/{name}"
                text = facts.root.try_read_text(path, max_bytes=256 * 1024)
                if text is not None:
                    parse_modprobe_conf(text, path=path, into=cfg)
        cmdline = facts.root.try_read_text(PROC_CMDLINE, max_bytes=64 * 1024)
        if cmdline is not None:
            cfg = ModprobeConfig(blacklists=cfg.blacklists, options=cfg.options, cmdline=cmdline.strip())
            for word in cmdline.split():
                key, _, value = word.partition("=")
                if key in ("modprobe.blacklist", "module_blacklist", "rd.driver.blacklist") and value:
                    for module in value.split(","):
                        if module:
                            cfg.blacklists.setdefault(_canon(module), []).append(f"{PROC_CMDLINE}: {word[:120]}")
        return cfg

    return facts.memo("m:modprobe", compute)


def module_files_for_kernel(facts: HostFacts, release: str | None, module: str = "nvidia") -> list[str] | None:
    """``<module>.ko*`` files built for kernel `release`; None when /lib/modules/<release> is not there."""
    if release is None or not _SAFE_RELEASE.fullmatch(release) or release in (".", ".."):
        return None
    base = f"/lib/modules/{release}"

    def compute() -> list[str] | None:
        if not facts.root.is_dir(base):
            facts.root.exists(base)
            return None
        patterns = (
            f"{base}/updates/{module}.ko*", f"{base}/updates/*/{module}.ko*", f"{base}/updates/*/*/{module}.ko*",
            f"{base}/extra/{module}.ko*", f"{base}/extra/*/{module}.ko*", f"{base}/extra/*/*/{module}.ko*",
            f"{base}/kernel/drivers/video/{module}.ko*", f"{base}/kernel/drivers/video/*/{module}.ko*",
            f"{base}/kernel/nvidia*/{module}.ko*", f"{base}/nvidia/{module}.ko*", f"{base}/misc/{module}.ko*",
        )
        found: set[str] = set()
        for pattern in patterns:
            try:
                found.update(facts.root.glob(pattern))
            except (OSError, ValueError):
                continue
        return sorted(found)

    return facts.memo(f"m:kofiles:{release}:{module}", compute)


# -- userspace driver --------------------------------------------------------------------------------------


def ld_cache(facts: HostFacts) -> FileFact[list[LdCacheEntry]]:
    return facts.memo("m:ld_cache", lambda: load_bytes(facts, LD_SO_CACHE,
                                                       lambda data: parse_ld_so_cache(data, path=LD_SO_CACHE),
                                                       max_bytes=64 * 1024 * 1024))


def _native(entry: LdCacheEntry) -> bool:
    machine = os.uname().machine.lower()  # what platform.machine() returns, without importing platform
    return entry.arch == _MACHINE_ARCH.get(machine, machine)


class LibraryLookup(Record):
    """Where a driver library's soname leads on this host.

    `path` is the host path the loader would open (from ld.so.cache, else a lib dir), `real_path` that path
    with symlinks resolved inside the root, `version` the ``.so.<VER>`` suffix of `real_path`. `in_cache`
    says whether the native-arch cache has it; `only_foreign` lists cache entries for other ABIs (i386).
    """

    soname: str
    path: str | None
    real_path: str | None
    version: str | None
    in_cache: bool
    evidence: tuple[str, ...]
    only_foreign: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.path is not None


def find_library(facts: HostFacts, soname: str, *, lib_dirs: tuple[str, ...] = LIB_DIRS,
                 use_cache: bool = True) -> LibraryLookup:
    """Look `soname` up the way the dynamic loader (and libnvidia-container) would: ld.so.cache, then dirs."""

    def compute() -> LibraryLookup:
        root = facts.root
        evidence: list[str] = []
        foreign: list[str] = []
        in_cache = False
        path: str | None = None
        if use_cache:
            cache = ld_cache(facts)
            if cache.value is None:
                evidence.append(cache.problem())
            else:
                entries = [e for e in cache.value if e.key == soname]
                native = [e for e in entries if _native(e)]
                foreign = [f"{e.value} ({e.arch})" for e in entries if not _native(e)]
                if not native:
                    evidence.append(f"{LD_SO_CACHE}: no {'native ' if foreign else ''}entry for {soname}"
                                    + (f" (only {', '.join(foreign)})" if foreign else ""))
                for e in native:
                    if root.is_file(e.value):
                        in_cache, path = True, e.value
                        evidence.append(f"{LD_SO_CACHE}: {soname} -> {e.value}")
                        break
                    evidence.append(f"{LD_SO_CACHE}: {soname} -> {e.value}, but that file is missing (stale cache)")
        if path is None:
            for d in lib_dirs:
                candidate = f"{d}/{soname}"
                if root.is_file(candidate):
                    path = candidate
                    evidence.append(f"{candidate}: present")
                    break
            else:
                evidence.append(f"{', '.join(lib_dirs)}: no {soname}")
        real: str | None = None
        version: str | None = None
        if path is not None:
            try:
                real = root.resolve(path)
            except OSError:
                real = path
            m = _VERSIONED_SO.search(real)
            version = m.group(1) if m else None
            if real != path:
                evidence.append(f"{path} -> {real}")
        return LibraryLookup(soname=soname, path=path, real_path=real, version=version, in_cache=in_cache,
                             evidence=tuple(evidence), only_foreign=tuple(foreign))

    key = f"m:lib:{soname}:{use_cache}:{','.join(lib_dirs)}"
    return facts.memo(key, compute)


class Binary(Record):
    """Where a program was found. `path` is the host path (a PATH dir + name, or the absolute name)."""

    name: str
    path: str | None
    executable: bool = False
    searched: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.path is not None and self.executable

    def describe(self) -> str:
        """One evidence line: where it was found, or where it was looked for."""
        absolute = self.name.startswith("/")
        if self.path is None:
            if absolute:
                return f"{self.name}: not present"
            where = ", ".join(self.searched)
            return f"{self.name}: not found in {where}" if where else f"{self.name}: not found"
        if not self.executable:
            return f"{self.path}: exists but is not executable"
        return f"{self.path}: present" if absolute else f"{self.name}: {self.path}"


def usable_path(host_path: str) -> bool:
    """A path the OS can look up at all (config values may hold anything, NUL bytes included)."""
    return "\0" not in host_path


def _is_executable(facts: HostFacts, host_path: str) -> bool | None:
    """None when nothing is there (or a directory); else whether it is a regular file with an exec bit."""
    if not usable_path(host_path):
        return None
    st = facts.root.stat(host_path)
    if st is None or stat_mod.S_ISDIR(st.st_mode):
        return None
    return stat_mod.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def lookup_binary(facts: HostFacts, name: str, dirs: tuple[str, ...] = BIN_DIRS) -> Binary:
    """Look `name` up like a PATH search: an absolute name as is, a bare name in `dirs`, first executable
    wins; when none is executable, the first one present is reported as not executable."""

    def compute() -> Binary:
        if "/" in name:
            path = name if name.startswith("/") else "/" + name
            exe = _is_executable(facts, path)
            return Binary(name=name, path=path if exe is not None else None, executable=bool(exe), searched=(path,))
        first_present: str | None = None
        for d in dirs:
            candidate = f"{d}/{name}"
            exe = _is_executable(facts, candidate)
            if exe:
                return Binary(name=name, path=candidate, executable=True, searched=dirs)
            if exe is not None and first_present is None:
                first_present = candidate
        return Binary(name=name, path=first_present, executable=False, searched=dirs)

    return facts.memo(f"m:bin:{name}:{','.join(dirs)}", compute)


def find_binary(facts: HostFacts, name: str, dirs: tuple[str, ...] = BIN_DIRS) -> str | None:
    """Host path of an executable file `name` in `dirs`, or None."""
    found = lookup_binary(facts, name, dirs)
    return found.path if found.ok else None


def os_info(facts: HostFacts) -> OsInfo | None:
    """The distribution (None when os-release cannot be parsed)."""

    def compute() -> OsInfo | None:
        from gpudoctor.host.parsers.osinfo import read_os_release

        try:
            return read_os_release(facts.root)
        except Exception:  # distro is third-party code fed hostile files; the header must never crash
            return None

    return facts.memo("m:os_info", compute)


RHEL_IDS = frozenset({"rhel", "fedora", "centos", "rocky", "almalinux", "amzn", "ol"})
SUSE_IDS = frozenset({"suse", "opensuse", "sles", "opensuse-leap", "opensuse-tumbleweed"})


def os_family(facts: HostFacts) -> tuple[str | None, str | None]:
    """(family, pretty name): family is "debian", "rhel", "suse" or None when unknown."""

    def compute() -> tuple[str | None, str | None]:
        info = os_info(facts)
        if info is None:
            return None, None
        ids = {info.id, *info.id_like}
        pretty = info.pretty_name or info.name
        if ids & {"debian", "ubuntu"}:
            return "debian", pretty
        if ids & RHEL_IDS:
            return "rhel", pretty
        if ids & SUSE_IDS:
            return "suse", pretty
        return None, pretty

    return facts.memo("m:os_family", compute)


def driver_install_command(facts: HostFacts) -> str:
    """How to install the NVIDIA driver on this distribution (one line)."""
    info = os_info(facts)
    if info is not None and "ubuntu" in {info.id, *info.id_like}:
        return "sudo ubuntu-drivers install   (or: sudo apt-get install nvidia-driver-550)"
    family, _ = os_family(facts)
    if family == "debian":
        return "sudo apt-get install nvidia-driver   (from the non-free repository)"
    if family == "rhel":
        return "sudo dnf module install nvidia-driver:latest-dkms   (NVIDIA's CUDA repository)"
    if family == "suse":
        return "sudo zypper install nvidia-compute-G06"
    return "install your distribution's NVIDIA driver packages (see https://docs.nvidia.com/datacenter/tesla/)"


def initramfs_command(facts: HostFacts) -> str:
    family, _ = os_family(facts)
    return "sudo dracut -f" if family in ("rhel", "suse") else "sudo update-initramfs -u"


# -- NVML (live) -------------------------------------------------------------------------------------------


def _decode_probe(data: Any) -> NvmlProbe:
    from gpudoctor.host.nvml import NvmlProbe

    try:
        return NvmlProbe.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return NvmlProbe(status="unknown", error=f"the recorded NVML probe is damaged: {exc}")


def nvml(facts: HostFacts, *, offline: bool, timeout: float = 10.0) -> NvmlProbe | None:
    """The NVML probe, once per host: None under ``--offline`` unless a snapshot recorded one."""
    if (offline or facts.offline) and "nvml" not in facts.recorded_probes:
        return None
    from gpudoctor.host.nvml import probe_nvml

    return facts.probe("nvml", lambda: probe_nvml(facts.root, timeout=timeout),
                       encode=lambda p: p.to_dict(), decode=_decode_probe)


# -- the report header -------------------------------------------------------------------------------------


def _os_dict(info: OsInfo | None) -> dict[str, Any]:
    if info is None:
        return {}
    return {k: v for k, v in (("id", info.id or None), ("version_id", info.version_id), ("name", info.name),
                              ("pretty_name", info.pretty_name), ("codename", info.codename)) if v is not None}


def _gpus_from_proc(facts: HostFacts) -> list[dict[str, Any]]:
    gpus = sorted((g for g in proc_gpus(facts) if g.info is not None), key=lambda g: g.pci_address)
    out: list[dict[str, Any]] = []
    for index, g in enumerate(gpus):
        assert g.info is not None
        out.append({"index": index, "uuid": g.info.uuid, "name": g.info.model, "minor": g.info.device_minor,
                    "pci_bus_id": nvml_bus_id(g.pci_address)})
    return out


def host_summary(facts: HostFacts) -> dict[str, Any]:
    """The JSON report's ``host`` object. Never raises: unknown values are null/empty.

    GPUs and the driver version come from NVML when it was probed live and answered; otherwise from
    /proc/driver/nvidia (the loaded module's view).
    """
    summary: dict[str, Any] = {"root": facts.root.label, "offline": facts.offline, "os": {}, "kernel": None,
                               "wsl": False, "driver_version": None, "gpus": []}
    steps: list[Callable[[], None]] = []

    def os_step() -> None:
        summary["os"] = _os_dict(os_info(facts))

    def kernel_step() -> None:
        summary["kernel"] = kernel_release(facts)
        summary["wsl"] = wsl(facts).wsl2

    def driver_step() -> None:
        probe = None
        if "nvml" in facts.probe_log or "nvml" in facts.recorded_probes:
            probe = nvml(facts, offline=facts.offline)
        if probe is not None and probe.ok:
            summary["driver_version"] = probe.driver_version
            summary["gpus"] = [{"index": g.index, "uuid": g.uuid, "name": g.name, "minor": g.minor,
                                "pci_bus_id": g.pci_bus_id} for g in probe.gpus]
            return
        nv = nvidia_version(facts)
        summary["driver_version"] = nv.value.version if nv.value is not None else None
        summary["gpus"] = _gpus_from_proc(facts)

    steps += [os_step, kernel_step, driver_step]
    for step in steps:
        try:
            step()
        except Exception:  # the header is best effort; the checks report what went wrong
            continue
    return summary
