"""The fake libnvidia-ml behaves like the real one where gpudoctor depends on it, through ctypes and pynvml."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit import FAKE_DEV_ROOT_ENV, DriverRootInfo, KitSpec, fake_gpus, install_driver_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need mknod (root)")

SUCCESS, UNINITIALIZED, NO_PERMISSION, NOT_FOUND, DRIVER_NOT_LOADED, RM_MISMATCH = 0, 1, 4, 6, 9, 18
ARGUMENT_VERSION_MISMATCH, UNKNOWN = 25, 999


class PciInfo(ctypes.Structure):
    """nvmlPciInfo_t as nvml.h declares it (v2/v3)."""

    _fields_ = [
        ("busIdLegacy", ctypes.c_char * 16),
        ("domain", ctypes.c_uint),
        ("bus", ctypes.c_uint),
        ("device", ctypes.c_uint),
        ("pciDeviceId", ctypes.c_uint),
        ("pciSubSystemId", ctypes.c_uint),
        ("busId", ctypes.c_char * 32),
    ]


class PciInfoV1(ctypes.Structure):
    _fields_ = [
        ("busId", ctypes.c_char * 16),
        ("domain", ctypes.c_uint),
        ("bus", ctypes.c_uint),
        ("device", ctypes.c_uint),
        ("pciDeviceId", ctypes.c_uint),
        ("pciSubSystemId", ctypes.c_uint),
        ("reserved", ctypes.c_uint * 4),
    ]


class Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class MemoryV2(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("total", ctypes.c_ulonglong),
        ("reserved", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


MEMORY_V2 = ctypes.sizeof(MemoryV2) | (2 << 24)  # nvml.h NVML_STRUCT_VERSION(Memory, 2) == 0x02000028


def _root(tmp_path: Path, spec: KitSpec | None = None, **kwargs: object) -> DriverRootInfo:
    return install_driver_root(tmp_path / "root", spec or KitSpec(), ldconfig=False, **kwargs)  # type: ignore[arg-type]


def _load(info: DriverRootInfo) -> ctypes.CDLL:
    """Each root has its own copy of the library, so each test gets a fresh, uninitialized NVML."""
    lib = ctypes.CDLL(str(info.path(info.libraries["libnvidia-ml.so.1"])))
    lib.nvmlErrorString.restype = ctypes.c_char_p
    return lib


def _handle(lib: ctypes.CDLL, index: int) -> tuple[int, ctypes.c_void_p]:
    handle = ctypes.c_void_p()
    rc = lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle))
    return rc, handle


def _string(lib: ctypes.CDLL, fn: str, handle: ctypes.c_void_p) -> str:
    buf = ctypes.create_string_buffer(96)
    assert getattr(lib, fn)(handle, buf, ctypes.c_uint(96)) == SUCCESS
    return buf.value.decode()


def test_ctypes_reads_every_gpu_with_nvml_struct_layouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = KitSpec()
    info = _root(tmp_path, spec)
    monkeypatch.setenv(FAKE_DEV_ROOT_ENV, str(info.dev_root))
    lib = _load(info)
    assert lib.nvmlInit_v2() == SUCCESS
    version = ctypes.create_string_buffer(80)
    assert lib.nvmlSystemGetDriverVersion(version, ctypes.c_uint(80)) == SUCCESS
    assert version.value == b"550.54.14"
    cuda = ctypes.c_int()
    assert lib.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(cuda)) == SUCCESS and cuda.value == 12040
    count = ctypes.c_uint()
    assert lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == SUCCESS and count.value == 2
    for i, gpu in enumerate(spec.gpus):
        rc, handle = _handle(lib, i)
        assert rc == SUCCESS
        assert _string(lib, "nvmlDeviceGetName", handle) == gpu.name
        assert _string(lib, "nvmlDeviceGetUUID", handle) == gpu.uuid
        minor, index = ctypes.c_uint(), ctypes.c_uint()
        assert (
            lib.nvmlDeviceGetMinorNumber(handle, ctypes.byref(minor)) == SUCCESS and minor.value == gpu.minor
        )
        assert lib.nvmlDeviceGetIndex(handle, ctypes.byref(index)) == SUCCESS and index.value == i
        pci = PciInfo()
        assert lib.nvmlDeviceGetPciInfo_v3(handle, ctypes.byref(pci)) == SUCCESS
        assert pci.busId.decode() == gpu.pci_bus_id
        assert pci.busIdLegacy.decode() == gpu.bus_id_legacy
        assert (pci.domain, pci.bus, pci.device) == (gpu.pci_domain, gpu.pci_bus, gpu.pci_device)
        assert pci.pciDeviceId == (0x2330 << 16) | 0x10DE
        v1 = PciInfoV1()
        assert lib.nvmlDeviceGetPciInfo(handle, ctypes.byref(v1)) == SUCCESS
        assert v1.busId.decode() == gpu.bus_id_legacy and v1.pciSubSystemId == 0x16C110DE
        memory = Memory()
        assert lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) == SUCCESS
        assert memory.total == gpu.memory_total_mib * 1024 * 1024 and memory.used == 0
        memory2 = MemoryV2(version=MEMORY_V2)
        assert lib.nvmlDeviceGetMemoryInfo_v2(handle, ctypes.byref(memory2)) == SUCCESS
        assert memory2.total == memory.total
        assert (
            lib.nvmlDeviceGetMemoryInfo_v2(handle, ctypes.byref(MemoryV2(version=1)))
            == ARGUMENT_VERSION_MISMATCH
        )
        by_uuid, by_bus = ctypes.c_void_p(), ctypes.c_void_p()
        assert lib.nvmlDeviceGetHandleByUUID(gpu.uuid.encode(), ctypes.byref(by_uuid)) == SUCCESS
        # NVML accepts the short, lower-case form too.
        assert (
            lib.nvmlDeviceGetHandleByPciBusId_v2(gpu.sysfs_bus_id.encode(), ctypes.byref(by_bus)) == SUCCESS
        )
        assert by_uuid.value == by_bus.value == handle.value
    assert lib.nvmlShutdown() == SUCCESS
    assert lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == UNINITIALIZED


def test_nvml_version_is_readable_before_init_and_errors_have_real_texts(tmp_path: Path) -> None:
    lib = _load(_root(tmp_path))
    version = ctypes.create_string_buffer(80)
    assert lib.nvmlSystemGetNVMLVersion(version, ctypes.c_uint(80)) == SUCCESS
    assert version.value == b"12.550.54.14"
    assert lib.nvmlSystemGetNVMLVersion(version, ctypes.c_uint(5)) == 7  # NVML_ERROR_INSUFFICIENT_SIZE
    assert lib.nvmlErrorString(DRIVER_NOT_LOADED) == b"Driver Not Loaded"
    assert lib.nvmlErrorString(NO_PERMISSION) == b"Insufficient Permissions"
    assert lib.nvmlErrorString(RM_MISMATCH) == b"RM has detected an NVML/RM version mismatch."
    assert lib.nvmlErrorString(UNKNOWN) == b"Unknown Error"


def test_missing_nvidiactl_means_driver_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = _root(tmp_path)
    monkeypatch.setenv(FAKE_DEV_ROOT_ENV, str(info.dev_root))
    (info.dev_root / "nvidiactl").unlink()
    lib = _load(info)
    assert lib.nvmlInit_v2() == DRIVER_NOT_LOADED
    (info.dev_root / "nvidiactl").write_text("")  # a regular file is no driver either
    assert lib.nvmlInitWithFlags(ctypes.c_uint(0)) == DRIVER_NOT_LOADED


def test_no_device_nodes_at_all_means_driver_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = _root(tmp_path, device_nodes=False)
    monkeypatch.setenv(FAKE_DEV_ROOT_ENV, str(info.path("/dev")))
    assert _load(info).nvmlInit() == DRIVER_NOT_LOADED


def test_inaccessible_nvidiactl_means_no_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = _root(tmp_path)
    monkeypatch.setenv(FAKE_DEV_ROOT_ENV, str(info.dev_root))
    ctl = info.dev_root / "nvidiactl"
    lib = _load(info)
    ctl.chmod(0o000)
    assert lib.nvmlInit_v2() == NO_PERMISSION
    # 0660 owned by someone else and a group we are not in: what a user outside "video" meets.
    ctl.chmod(0o660)
    os.chown(ctl, 54321, 54321)
    assert lib.nvmlInit_v2() == NO_PERMISSION
    # The same node with our group: the group bits decide, as in the kernel.
    os.chown(ctl, 54321, os.getegid())
    assert lib.nvmlInit_v2() == SUCCESS
    assert lib.nvmlShutdown() == SUCCESS


def test_rm_mismatch_flag_fails_init_once_the_driver_is_reachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = _root(tmp_path, KitSpec(rm_mismatch=True))
    monkeypatch.setenv(FAKE_DEV_ROOT_ENV, str(info.dev_root))
    lib = _load(info)
    assert lib.nvmlInit_v2() == RM_MISMATCH
    (info.dev_root / "nvidiactl").unlink()
    assert lib.nvmlInit_v2() == DRIVER_NOT_LOADED


def test_gpus_are_visible_only_through_their_device_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = KitSpec(gpus=fake_gpus(3))
    info = _root(tmp_path, spec, gpu_nodes=[2])
    monkeypatch.setenv(FAKE_DEV_ROOT_ENV, str(info.dev_root))
    lib = _load(info)
    assert lib.nvmlInit_v2() == SUCCESS
    count = ctypes.c_uint()
    assert lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == SUCCESS and count.value == 1
    rc, handle = _handle(lib, 0)  # like a container given only /dev/nvidia2: it is GPU 0 there
    assert rc == SUCCESS and _string(lib, "nvmlDeviceGetUUID", handle) == spec.gpus[2].uuid
    hidden = ctypes.c_void_p()
    assert lib.nvmlDeviceGetHandleByUUID(spec.gpus[0].uuid.encode(), ctypes.byref(hidden)) == NOT_FOUND
    assert _handle(lib, 1)[0] == 2  # NVML_ERROR_INVALID_ARGUMENT past the count
    assert lib.nvmlShutdown() == SUCCESS


def test_a_gpu_node_without_access_is_counted_but_refuses_its_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = _root(tmp_path)
    monkeypatch.setenv(FAKE_DEV_ROOT_ENV, str(info.dev_root))
    (info.dev_root / "nvidia0").chmod(0o000)
    lib = _load(info)
    assert lib.nvmlInit_v2() == SUCCESS
    count = ctypes.c_uint()
    assert lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == SUCCESS and count.value == 2
    assert _handle(lib, 0)[0] == NO_PERMISSION
    assert _handle(lib, 1)[0] == SUCCESS
    assert lib.nvmlShutdown() == SUCCESS


_PYNVML_SCRIPT = """
import json, pynvml
def text(v):  # pynvml returns str or bytes depending on the version and the field
    return v.decode() if isinstance(v, bytes) else v
out = {}
try:
    pynvml.nvmlInit()
except pynvml.NVMLError as exc:
    print(json.dumps({"error": type(exc).__name__, "text": str(exc)}))
    raise SystemExit(0)
out["driver"] = pynvml.nvmlSystemGetDriverVersion()
out["nvml"] = pynvml.nvmlSystemGetNVMLVersion()
out["cuda"] = pynvml.nvmlSystemGetCudaDriverVersion_v2()
out["gpus"] = []
for i in range(pynvml.nvmlDeviceGetCount()):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    out["gpus"].append({
        "index": pynvml.nvmlDeviceGetIndex(h),
        "name": pynvml.nvmlDeviceGetName(h),
        "uuid": pynvml.nvmlDeviceGetUUID(h),
        "minor": pynvml.nvmlDeviceGetMinorNumber(h),
        "bus": text(pynvml.nvmlDeviceGetPciInfo(h).busId),
        "memory": pynvml.nvmlDeviceGetMemoryInfo(h).total,
        "memory_v2": pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2).total,
        "persistence": pynvml.nvmlDeviceGetPersistenceMode(h),
        "mig": pynvml.nvmlDeviceGetMigMode(h) if i == 0 else None,
        "by_uuid": pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByUUID(pynvml.nvmlDeviceGetUUID(h))),
        "by_bus": pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByPciBusId(pynvml.nvmlDeviceGetPciInfo(h).busId)),
    })
try:
    pynvml.nvmlDeviceGetMigMode(pynvml.nvmlDeviceGetHandleByIndex(1))
except pynvml.NVMLError as exc:
    out["mig_error"] = type(exc).__name__
pynvml.nvmlShutdown()
print(json.dumps(out))
"""


def _pynvml(info: DriverRootInfo) -> dict[str, object]:
    """Run pynvml in a fresh process that finds libnvidia-ml.so.1 through the loader's search path."""
    env = {**os.environ, **info.env, "LD_LIBRARY_PATH": str(info.path(info.libdir))}
    proc = subprocess.run(
        [sys.executable, "-c", _PYNVML_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_pynvml_reads_the_simulated_gpus(tmp_path: Path) -> None:
    gpus = fake_gpus(2)
    spec = KitSpec(gpus=(gpus[0], dataclasses.replace(gpus[1], mig_mode=None, persistence_mode=False)))
    result = _pynvml(_root(tmp_path, spec))
    assert result["driver"] == "550.54.14" and result["nvml"] == "12.550.54.14" and result["cuda"] == 12040
    assert result["gpus"] == [
        {
            "index": i,
            "name": g.name,
            "uuid": g.uuid,
            "minor": g.minor,
            "bus": g.pci_bus_id,
            "memory": g.memory_total_mib * 1024 * 1024,
            "memory_v2": g.memory_total_mib * 1024 * 1024,
            "persistence": int(g.persistence_mode),
            "mig": [0, 0] if i == 0 else None,
            "by_uuid": i,
            "by_bus": i,
        }
        for i, g in enumerate(spec.gpus)
    ]
    assert result["mig_error"] == "NVMLError_NotSupported"


@pytest.mark.parametrize(
    ("spec", "breakage", "error", "text"),
    [
        (KitSpec(), "no_ctl", "NVMLError_DriverNotLoaded", "Driver Not Loaded"),
        (KitSpec(), "ctl_000", "NVMLError_NoPermission", "Insufficient Permissions"),
        (
            KitSpec(rm_mismatch=True),
            None,
            "NVMLError_LibRmVersionMismatch",
            "RM has detected an NVML/RM version mismatch.",
        ),
    ],
)
def test_pynvml_raises_the_real_error_classes(
    tmp_path: Path, spec: KitSpec, breakage: str | None, error: str, text: str
) -> None:
    info = _root(tmp_path, spec)
    if breakage == "no_ctl":
        (info.dev_root / "nvidiactl").unlink()
    elif breakage == "ctl_000":
        (info.dev_root / "nvidiactl").chmod(0o000)
    assert _pynvml(info) == {"error": error, "text": text}
