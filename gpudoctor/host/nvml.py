"""The live NVML probe: what the driver's own management library says about the GPUs.

NVML is loaded from the driver libraries under the root (design.md): ``libnvidia-ml.so.1`` is looked up in
the root's ``/etc/ld.so.cache`` (the standard lib dirs as fallback), preloaded by full path in a child
process, and queried there through pynvml. A library that hangs is killed after `timeout` seconds and one
that crashes only takes the child down; both come back as a status, never as a hang or a traceback.

Whether to probe at all (``--offline``) is the caller's decision. This module imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from gpudoctor.host.root import HostRoot

NvmlStatus = Literal[
    "ok",
    "library_not_found",
    "driver_not_loaded",
    "lib_rm_version_mismatch",
    "no_permission",
    "unknown",
    "timeout",
    "crashed",
]
NVML_STATUSES: frozenset[str] = frozenset(get_args(NvmlStatus))

NVML_SONAME = "libnvidia-ml.so.1"
LD_SO_CACHE = "/etc/ld.so.cache"
# Where driver packages put libnvidia-ml when the cache does not name it (or cannot be read).
FALLBACK_LIB_DIRS: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/wsl/lib",
    "/usr/lib/aarch64-linux-gnu",
)
_CHILD = Path(__file__).with_name("_nvml_child.py")
# After SIGKILL a child normally dies at once; one stuck in the kernel (D state) cannot, and is left behind.
_KILL_GRACE_S = 2.0
_STDERR_TAIL = 2000


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer or null, got {value!r}")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string or null, got {value!r}")
    return value


def _opt_bool(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true, false or null, got {value!r}")
    return value


def _req_int(data: Mapping[str, Any], key: str) -> int:
    value = _opt_int(data, key)
    if value is None:
        raise ValueError(f"{key} is required")
    return value


def _req_str(data: Mapping[str, Any], key: str) -> str:
    value = _opt_str(data, key)
    if value is None:
        raise ValueError(f"{key} is required")
    return value


def _status(data: Mapping[str, Any]) -> NvmlStatus:
    value = data.get("status")
    if value not in NVML_STATUSES:
        raise ValueError(f"status must be one of {sorted(NVML_STATUSES)}, got {value!r}")
    return cast(NvmlStatus, value)


@dataclass(frozen=True, kw_only=True)
class NvmlGpu:
    """One GPU as NVML reports it. None means NVML does not support the value on this device."""

    index: int
    uuid: str
    name: str
    minor: int | None
    pci_bus_id: str
    memory_total_mib: int | None
    persistence_mode: bool | None
    mig_mode: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "minor": self.minor,
            "pci_bus_id": self.pci_bus_id,
            "memory_total_mib": self.memory_total_mib,
            "persistence_mode": self.persistence_mode,
            "mig_mode": self.mig_mode,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NvmlGpu:
        """Inverse of to_dict. Raises ValueError on malformed data."""
        return cls(
            index=_req_int(data, "index"),
            uuid=_req_str(data, "uuid"),
            name=_req_str(data, "name"),
            minor=_opt_int(data, "minor"),
            pci_bus_id=_req_str(data, "pci_bus_id"),
            memory_total_mib=_opt_int(data, "memory_total_mib"),
            persistence_mode=_opt_bool(data, "persistence_mode"),
            mig_mode=_opt_bool(data, "mig_mode"),
        )


@dataclass(frozen=True, kw_only=True)
class NvmlDeviceError:
    """A GPU that NVML counts but would not hand out (e.g. its /dev/nvidiaN is not accessible)."""

    index: int
    status: NvmlStatus
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "status": self.status, "error": self.error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NvmlDeviceError:
        return cls(index=_req_int(data, "index"), status=_status(data), error=_req_str(data, "error"))


@dataclass(frozen=True, kw_only=True)
class NvmlProbe:
    """The outcome of one NVML probe.

    `status` is "ok" when nvmlInit succeeded (then the versions and `gpus` are filled in), else the NVML
    error class: library_not_found, driver_not_loaded, lib_rm_version_mismatch, no_permission, unknown;
    "timeout" when the library did not answer in time, "crashed" when it killed its process. `error` says
    what happened in one line. `library_path` is the host path of the library file that was loaded
    (symlinks resolved inside the root). `cuda_driver_version` is NVML's integer form (12040 = 12.4).
    """

    status: NvmlStatus
    error: str | None = None
    library_path: str | None = None
    driver_version: str | None = None
    nvml_version: str | None = None
    cuda_driver_version: int | None = None
    gpus: tuple[NvmlGpu, ...] = ()
    device_errors: tuple[NvmlDeviceError, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; from_dict(to_dict()) gives an equal probe (snapshots record and replay it)."""
        return {
            "status": self.status,
            "error": self.error,
            "library_path": self.library_path,
            "driver_version": self.driver_version,
            "nvml_version": self.nvml_version,
            "cuda_driver_version": self.cuda_driver_version,
            "gpus": [g.to_dict() for g in self.gpus],
            "device_errors": [e.to_dict() for e in self.device_errors],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NvmlProbe:
        """Inverse of to_dict. Raises ValueError on malformed data (e.g. a damaged snapshot)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an NVML probe must be a JSON object, got {type(data).__name__}")
        gpus = data.get("gpus") or []
        errors = data.get("device_errors") or []
        if not isinstance(gpus, list) or not all(isinstance(g, Mapping) for g in gpus):
            raise ValueError("gpus must be a list of objects")
        if not isinstance(errors, list) or not all(isinstance(e, Mapping) for e in errors):
            raise ValueError("device_errors must be a list of objects")
        return cls(
            status=_status(data),
            error=_opt_str(data, "error"),
            library_path=_opt_str(data, "library_path"),
            driver_version=_opt_str(data, "driver_version"),
            nvml_version=_opt_str(data, "nvml_version"),
            cuda_driver_version=_opt_int(data, "cuda_driver_version"),
            gpus=tuple(NvmlGpu.from_dict(g) for g in gpus),
            device_errors=tuple(NvmlDeviceError.from_dict(e) for e in errors),
        )


def _native_arch(entry: object) -> bool:
    """True when an ld.so.cache entry is for this machine's ABI (x86-64 here, not the i386 compat libs)."""
    arch = getattr(entry, "arch", None)
    if arch is None:
        return True
    text = str(arch).lower()
    machine = platform.machine().lower()
    tags = {"x86_64": ("x86-64", "x86_64"), "amd64": ("x86-64", "x86_64"), "aarch64": ("aarch64", "arm64")}
    return any(tag in text for tag in tags.get(machine, (machine,)))


def _from_ld_cache(root: HostRoot) -> list[str]:
    """Host paths that the root's ld.so.cache gives for libnvidia-ml.so.1 ([] if it cannot tell)."""
    data = root.try_read_bytes(LD_SO_CACHE)
    if not data:
        return []
    try:
        from gpudoctor.host.parsers.ldcache import parse_ld_so_cache
    except ImportError:
        return []
    try:
        entries = parse_ld_so_cache(data, path=LD_SO_CACHE)
    except Exception:  # a damaged cache is the driver checks' finding; here it just means "use the dirs"
        return []
    return [str(e.value) for e in entries if getattr(e, "key", None) == NVML_SONAME and _native_arch(e)]


def find_nvml_library(root: HostRoot) -> str | None:
    """The host path of the libnvidia-ml file the loader would use under `root`, links resolved; or None."""
    candidates = _from_ld_cache(root) + [f"{d}/{NVML_SONAME}" for d in FALLBACK_LIB_DIRS]
    for host_path in candidates:
        if root.is_file(host_path):
            # HostRoot resolves links only under a --root; on the live / the kernel's view is the real one.
            return os.path.realpath(host_path) if root.is_live_root else root.resolve(host_path)
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _STDERR_TAIL else "..." + text[-_STDERR_TAIL:]


def probe_nvml(root: HostRoot, *, timeout: float = 10.0) -> NvmlProbe:
    """Load NVML from the driver under `root` in a child process and report what it sees. Never raises."""
    library = find_nvml_library(root)
    if library is None:
        where = ", ".join([LD_SO_CACHE, *FALLBACK_LIB_DIRS])
        return NvmlProbe(status="library_not_found", error=f"{NVML_SONAME} was not found (looked in {where})")
    if not sys.executable:
        return NvmlProbe(
            status="unknown", library_path=library, error="no Python interpreter path to run the probe"
        )
    real_path = str(root.path(library))
    try:
        proc = subprocess.Popen(
            [sys.executable, str(_CHILD), real_path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env=dict(os.environ),
        )
    except OSError as exc:
        return NvmlProbe(
            status="unknown", library_path=library, error=f"could not start the probe process: {exc}"
        )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.communicate(timeout=_KILL_GRACE_S)
            detail = "the probe process was killed"
        except subprocess.TimeoutExpired:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            detail = f"the probe process (pid {proc.pid}) did not die after SIGKILL and was left behind"
        return NvmlProbe(
            status="timeout",
            library_path=library,
            error=f"NVML did not answer within {timeout:g}s; {detail}",
        )
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    if proc.returncode < 0:
        message = f"the probe process died with {_signal_name(-proc.returncode)} inside NVML"
        if stderr.strip():
            message += f": {_tail(stderr)}"
        return NvmlProbe(status="crashed", library_path=library, error=message)
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        payload = json.loads(lines[-1]) if lines else None
        if proc.returncode != 0 or not isinstance(payload, dict):
            raise ValueError("no result")
        return NvmlProbe.from_dict({**payload, "library_path": library})
    except ValueError:
        detail = _tail(stderr) or _tail(stdout) or "no output"
        return NvmlProbe(
            status="crashed",
            library_path=library,
            error=f"the probe process exited with status {proc.returncode} without a result: {detail}",
        )
