"""What a simulated driver looks like: the GPUs, the versions, the failure switches, the majors and files.

Everything here is plain data; :mod:`tests.kit.build` compiles it and :mod:`tests.kit.driver_root` lays
it out on disk.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

_UUID_RE = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_BUS_RE = re.compile(r"^(?:([0-9A-Fa-f]{1,8}):)?([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.0$")
_VERSION_RE = re.compile(r"^\d+\.\d+(?:\.\d+)?$")

# The character-device majors of a kit driver root. 195 is fixed by the driver; nvidia-uvm and nvidia-caps
# get dynamic majors from the kernel, and these are values seen on real hosts. Keys are the names that
# /proc/devices lists.
NVIDIA_MAJOR = 195
NVIDIACTL_MINOR = 255
NVIDIA_MODESET_MINOR = 254
_MAJORS = {"nvidia-frontend": NVIDIA_MAJOR, "nvidia-uvm": 508, "nvidia-caps": 509}


def kit_majors() -> dict[str, int]:
    """Majors by their /proc/devices name, the same ones install_driver_root() gives the nodes."""
    return dict(_MAJORS)


def _printable(value: str, *, what: str, limit: int) -> str:
    if not value or len(value) > limit or any(not (" " <= ch <= "~") for ch in value):
        raise ValueError(f"{what} must be 1-{limit} printable ASCII characters, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class FakeGpu:
    """One simulated GPU. `index` orders the GPUs as NVML enumerates them on the host (0..n-1).

    `pci_bus_id` is accepted as ``3b:00.0``, ``0000:3b:00.0`` or ``00000000:3B:00.0`` and stored in NVML's
    form (``00000000:3B:00.0``). `mig_mode` None means the board has no MIG; `fan_speed_percent` None means
    it has no fan (data-center boards), `ecc_errors` None means no ECC. The sensor readings are fixed.
    """

    index: int
    name: str
    uuid: str
    pci_bus_id: str
    minor: int
    memory_total_mib: int
    memory_used_mib: int = 0
    persistence_mode: bool = True
    mig_mode: bool | None = False
    pci_device_id: int = 0x2330  # H100 SXM5 80GB
    pci_subsystem_id: int = 0x16C110DE
    fan_speed_percent: int | None = None
    temperature_c: int = 30
    power_draw_w: int = 70
    power_limit_w: int = 700
    ecc_errors: int | None = 0

    def __post_init__(self) -> None:
        _printable(self.name, what="GPU name", limit=95)
        if not _UUID_RE.match(self.uuid):
            raise ValueError(
                f"GPU uuid must look like GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, got {self.uuid!r}"
            )
        m = _BUS_RE.match(self.pci_bus_id)
        if not m:
            raise ValueError(f"pci_bus_id must be [domain:]bus:device.0, got {self.pci_bus_id!r}")
        domain = int(m.group(1) or "0", 16)
        object.__setattr__(
            self, "pci_bus_id", f"{domain:08X}:{int(m.group(2), 16):02X}:{int(m.group(3), 16):02X}.0"
        )
        if not 0 <= self.minor <= 253:
            raise ValueError(f"minor must be 0..253 (254/255 are nvidia-modeset/nvidiactl), got {self.minor}")
        if self.index < 0:
            raise ValueError(f"index must be >= 0, got {self.index}")
        if not 0 <= self.memory_used_mib <= self.memory_total_mib:
            raise ValueError("memory_used_mib must be between 0 and memory_total_mib")
        if self.fan_speed_percent is not None and not 0 <= self.fan_speed_percent <= 100:
            raise ValueError("fan_speed_percent must be 0..100 or None")

    @property
    def pci_domain(self) -> int:
        return int(self.pci_bus_id[:8], 16)

    @property
    def pci_bus(self) -> int:
        return int(self.pci_bus_id[9:11], 16)

    @property
    def pci_device(self) -> int:
        return int(self.pci_bus_id[12:14], 16)

    @property
    def sysfs_bus_id(self) -> str:
        """The id as /sys/bus/pci/devices and /proc/driver/nvidia/gpus name it: ``0000:3b:00.0``."""
        return f"{self.pci_domain:04x}:{self.pci_bus:02x}:{self.pci_device:02x}.0"

    @property
    def bus_id_legacy(self) -> str:
        """NVML's legacy form, ``0000:3B:00.0``."""
        return f"{self.pci_domain:04X}:{self.pci_bus:02X}:{self.pci_device:02X}.0"


def fake_gpus(
    count: int,
    *,
    name: str = "NVIDIA H100 80GB HBM3",
    memory_total_mib: int = 81559,
    seed: str = "gpudoctor",
) -> tuple[FakeGpu, ...]:
    """`count` GPUs with stable, distinct UUIDs and bus ids (minor == index), e.g. for an 8-GPU host."""
    buses = (0x1B, 0x3B, 0x5D, 0x86, 0x9A, 0xAB, 0xCB, 0xDB)
    gpus = []
    for i in range(count):
        digest = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()
        uuid = f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        bus = buses[i] if i < len(buses) else 0x10 + i
        gpus.append(
            FakeGpu(
                index=i,
                name=name,
                uuid=uuid,
                pci_bus_id=f"{bus:02X}:00.0",
                minor=i,
                memory_total_mib=memory_total_mib,
            )
        )
    return tuple(gpus)


DEFAULT_GPUS: tuple[FakeGpu, ...] = (
    FakeGpu(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13",
        pci_bus_id="00000000:3B:00.0",
        minor=0,
        memory_total_mib=81559,
    ),
    FakeGpu(
        index=1,
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-c4e2a9b7-13f5-4d08-a6c2-7b9e1f3d5a28",
        pci_bus_id="00000000:86:00.0",
        minor=1,
        memory_total_mib=81559,
    ),
)


@dataclass(frozen=True, kw_only=True)
class KitSpec:
    """One simulated driver: versions, GPUs and failure switches. One build per distinct spec.

    `cuda_version` is NVML's integer form (12040 is CUDA 12.4). `rm_mismatch` makes init fail with
    NVML_ERROR_LIB_RM_VERSION_MISMATCH (library newer than the loaded module); `hang_on_init` makes init
    block forever and `crash_on_init` makes it die with SIGSEGV, to test that callers survive both.
    """

    driver_version: str = "550.54.14"
    cuda_version: int = 12040
    gpus: tuple[FakeGpu, ...] = field(default=DEFAULT_GPUS)
    rm_mismatch: bool = False
    hang_on_init: bool = False
    crash_on_init: bool = False

    def __post_init__(self) -> None:
        if not _VERSION_RE.match(self.driver_version):
            raise ValueError(f"driver_version must look like 550.54.14, got {self.driver_version!r}")
        if not 1000 <= self.cuda_version <= 99990:
            raise ValueError(
                f"cuda_version must be NVML's integer form such as 12040, got {self.cuda_version}"
            )
        object.__setattr__(self, "gpus", tuple(sorted(self.gpus, key=lambda g: g.index)))
        if [g.index for g in self.gpus] != list(range(len(self.gpus))):
            raise ValueError("GPU indices must be 0..n-1, each once")
        for attr in ("minor", "uuid", "pci_bus_id"):
            values = [getattr(g, attr) for g in self.gpus]
            if len(set(values)) != len(values):
                raise ValueError(f"two GPUs share a {attr}")

    @property
    def nvml_version(self) -> str:
        """What nvmlSystemGetNVMLVersion returns: ``12.550.54.14``."""
        return f"{self.cuda_version // 1000}.{self.driver_version}"

    @property
    def cuda_version_text(self) -> str:
        """``12.4``, as nvidia-smi prints it."""
        return f"{self.cuda_version // 1000}.{(self.cuda_version % 1000) // 10}"

    @property
    def driver_major(self) -> int:
        return int(self.driver_version.split(".")[0])


@dataclass(frozen=True, kw_only=True)
class KitLibrary:
    """A driver library other than NVML that the kit ships as a stub, grouped as libnvidia-container does."""

    soname: str  # "libcuda.so.1"; "{ver}" is replaced by the driver version
    capability: str  # utility | compute | video | graphics | ngx
    subdir: str = ""  # relative to the lib dir ("vdpau" for libvdpau_nvidia)

    def soname_for(self, version: str) -> str:
        return self.soname.replace("{ver}", version)

    def filename_for(self, version: str) -> str:
        """The file name on disk: the soname's stem with the full driver version (libcuda.so.550.54.14)."""
        stem = self.soname.split(".so", 1)[0]
        return f"{stem}.so.{version}"


# The libraries per capability, from libnvidia-container's nvc_info.c (see research/nvidia-toolkit.md).
KIT_LIBRARIES: tuple[KitLibrary, ...] = (
    KitLibrary(soname="libnvidia-cfg.so.1", capability="utility"),
    KitLibrary(soname="libcuda.so.1", capability="compute"),
    KitLibrary(soname="libcudadebugger.so.1", capability="compute"),
    KitLibrary(soname="libnvidia-opencl.so.1", capability="compute"),
    KitLibrary(soname="libnvidia-ptxjitcompiler.so.1", capability="compute"),
    KitLibrary(soname="libnvidia-nvvm.so.4", capability="compute"),
    KitLibrary(soname="libnvidia-allocator.so.1", capability="compute"),
    KitLibrary(soname="libnvidia-gpucomp.so.{ver}", capability="compute"),
    KitLibrary(soname="libnvidia-encode.so.1", capability="video"),
    KitLibrary(soname="libnvcuvid.so.1", capability="video"),
    KitLibrary(soname="libnvidia-opticalflow.so.1", capability="video"),
    KitLibrary(soname="libvdpau_nvidia.so.1", capability="video", subdir="vdpau"),
    KitLibrary(soname="libGLX_nvidia.so.0", capability="graphics"),
    KitLibrary(soname="libEGL_nvidia.so.0", capability="graphics"),
    KitLibrary(soname="libGLESv2_nvidia.so.2", capability="graphics"),
    KitLibrary(soname="libGLESv1_CM_nvidia.so.1", capability="graphics"),
    KitLibrary(soname="libnvidia-glcore.so.{ver}", capability="graphics"),
    KitLibrary(soname="libnvidia-tls.so.{ver}", capability="graphics"),
    KitLibrary(soname="libnvidia-eglcore.so.{ver}", capability="graphics"),
    KitLibrary(soname="libnvidia-glsi.so.{ver}", capability="graphics"),
    KitLibrary(soname="libnvidia-fbc.so.1", capability="graphics"),
    KitLibrary(soname="libnvidia-rtcore.so.{ver}", capability="graphics"),
    KitLibrary(soname="libnvoptix.so.1", capability="graphics"),
    KitLibrary(soname="libnvidia-ngx.so.1", capability="ngx"),
)

# Driver binaries by capability; nvidia-smi is the simulated tool, the others are stand-ins.
KIT_BINARIES: dict[str, str] = {
    "nvidia-smi": "utility",
    "nvidia-debugdump": "utility",
    "nvidia-persistenced": "utility",
    "nvidia-cuda-mps-control": "compute",
    "nvidia-cuda-mps-server": "compute",
}

GSP_FIRMWARE: tuple[str, ...] = ("gsp_ga10x.bin", "gsp_tu10x.bin")
