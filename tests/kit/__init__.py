"""The simulated NVIDIA driver kit: real C, built by gcc, standing in for the hardware only.

No machine that runs these tests has a GPU, so the kit provides a driver that goes through the same
mechanisms as the real one: a ``libnvidia-ml.so.<VER>`` with soname ``libnvidia-ml.so.1`` and NVML's
entry points (loadable by ctypes, pynvml and the dynamic loader), an ``nvidia-smi`` that dlopens it and
prints the real tool's formats and error texts, stub ELF libraries with the real sonames (libcuda.so.1, ...),
stand-in driver binaries, GSP firmware files and device nodes with real majors. gpudoctor's own code is
never replaced.

API (all dataclasses frozen and keyword-only)::

    FakeGpu(index, name, uuid, pci_bus_id, minor, memory_total_mib, *, memory_used_mib=0,
            persistence_mode=True, mig_mode=False (None: no MIG), pci_device_id=0x2330,
            pci_subsystem_id=0x16C110DE, fan_speed_percent=None (no fan), temperature_c=30,
            power_draw_w=70, power_limit_w=700, ecc_errors=0 (None: no ECC))
        .sysfs_bus_id -> "0000:3b:00.0"   .bus_id_legacy -> "0000:3B:00.0"   .pci_bus_id -> "00000000:3B:00.0"
    fake_gpus(count, *, name=..., memory_total_mib=81559) -> tuple[FakeGpu, ...]   # stable UUIDs/bus ids
    KitSpec(driver_version="550.54.14", cuda_version=12040, gpus=DEFAULT_GPUS (2 x H100),
            rm_mismatch=False, hang_on_init=False, crash_on_init=False)
        .nvml_version -> "12.550.54.14"   .cuda_version_text -> "12.4"
    build_kit(spec) -> BuiltKit(spec, libnvml, nvidia_smi, stub_libs: {soname: Path}, binaries: {name: Path})
    install_driver_root(root, spec, *, libdir="usr/lib/x86_64-linux-gnu", binaries=True, firmware=True,
                        device_nodes=True, uvm_nodes=True, caps_nodes=True, gpu_nodes=None, node_mode=0o666,
                        ldconfig=True, ipc_sockets=False) -> DriverRootInfo
        DriverRootInfo(root, spec, libdir, libraries: {soname: host path}, binaries: {name: host path},
                       firmware: (host paths), device_nodes: {host path: (major, minor)}, sockets, ld_so_cache)
        .env -> {"GPUDOCTOR_FAKE_DEV_ROOT": "<root>/dev"}   .dev_root   .path(host_path)
    install_host_glibc(root) -> list[str]   # the host's loader and libc, so `chroot root nvidia-smi` runs
    kit_majors() -> {"nvidia-frontend": 195, "nvidia-uvm": 508, "nvidia-caps": 509}   # /proc/devices names
    KIT_LIBRARIES (soname, capability, subdir), KIT_BINARIES {name: capability}, GSP_FIRMWARE

    tests.kit.expected: what the real nvidia-smi prints for a spec (smi_list, smi_query, smi_version,
    smi_summary, smi_mismatch, visible_gpus, SMI_DRIVER_NOT_LOADED, SMI_NO_LIBRARY, ...), for parity tests.

How the fake NVML behaves (tests/kit/src/fake_nvml.c):

- It looks for device nodes under ``$GPUDOCTOR_FAKE_DEV_ROOT`` (only the fake reads it), else ``/dev`` of
  the process that loaded it, so inside a container it sees the container's nodes.
- init: NVML_ERROR_DRIVER_NOT_LOADED (9) when ``<devroot>/nvidiactl`` is missing or not a character
  device; NVML_ERROR_NO_PERMISSION (4) when the node's mode bits deny read+write to the effective
  uid/gid/groups. Root gets no exemption here (unlike the kernel's CAP_DAC_OVERRIDE), so a root test can
  simulate the non-root user of a ``0660 root:video`` node: chmod 000, or chown to another uid. The node
  is then opened for real: EACCES gives NO_PERMISSION, EPERM (a device cgroup without the rule) gives
  NVML_ERROR_UNKNOWN, as in real containers. With ``rm_mismatch`` init returns
  NVML_ERROR_LIB_RM_VERSION_MISMATCH (18) once nvidiactl is usable. ``hang_on_init`` blocks forever and
  ``crash_on_init`` raises SIGSEGV.
- A GPU is visible only while ``<devroot>/nvidia<minor>`` exists (checked at init); visible GPUs are
  numbered from 0 in `index` order, like a container that was given one GPU. A visible GPU whose node
  denies access is counted, but its handle calls return NO_PERMISSION.

How the fake nvidia-smi behaves (tests/kit/src/fake_nvidia_smi.c): dlopen("libnvidia-ml.so.1") through
the loader's search path, glibc only (built here it needs glibc >= 2.34 in the image), errors on stdout
with the NVML error code as exit status (9 driver not loaded, 18 mismatch, 4 permissions, 12 no library,
6 no devices, 2 bad arguments). The simulated GPUs have fixed sensor readings, so the summary table is
complete; its layout follows the driver branch of the spec (550, 570, 580).

Builds are cached under ``<repo>/.gpudoctor-build/kit/`` (``$GPUDOCTOR_KIT_BUILD_DIR`` overrides), one per
spec, safe under concurrent pytest processes. Creating device nodes needs root (CAP_MKNOD).
"""

from tests.kit.build import BuiltKit, KitBuildError, build_kit
from tests.kit.driver_root import (
    FAKE_DEV_ROOT_ENV,
    DriverRootInfo,
    KitInstallError,
    install_driver_root,
    install_host_glibc,
)
from tests.kit.spec import (
    DEFAULT_GPUS,
    GSP_FIRMWARE,
    KIT_BINARIES,
    KIT_LIBRARIES,
    NVIDIA_MAJOR,
    NVIDIA_MODESET_MINOR,
    NVIDIACTL_MINOR,
    FakeGpu,
    KitLibrary,
    KitSpec,
    fake_gpus,
    kit_majors,
)

__all__ = [
    "DEFAULT_GPUS",
    "FAKE_DEV_ROOT_ENV",
    "GSP_FIRMWARE",
    "KIT_BINARIES",
    "KIT_LIBRARIES",
    "NVIDIACTL_MINOR",
    "NVIDIA_MAJOR",
    "NVIDIA_MODESET_MINOR",
    "BuiltKit",
    "DriverRootInfo",
    "FakeGpu",
    "KitBuildError",
    "KitInstallError",
    "KitLibrary",
    "KitSpec",
    "build_kit",
    "fake_gpus",
    "install_driver_root",
    "install_host_glibc",
    "kit_majors",
]
