"""Child process of the NVML probe: load one libnvidia-ml by path, ask it what it sees, print one JSON line.

Run as ``python _nvml_child.py /real/path/to/libnvidia-ml.so.<ver>`` by gpudoctor.host.nvml, never imported.
It is self-contained (stdlib + pynvml) so that a hanging or crashing driver library takes down only this
process. The library is preloaded with RTLD_GLOBAL; ``import pynvml`` then binds to it, because the dynamic
loader hands out an already-loaded object for the soname ``libnvidia-ml.so.1``.
"""

import sys

# This file's directory is sys.path[0]; modules next to it must not shadow the stdlib or pynvml.
del sys.path[0]

import contextlib  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

_STATUS_BY_CODE = {
    4: "no_permission",
    9: "driver_not_loaded",
    12: "library_not_found",
    18: "lib_rm_version_mismatch",
}
_NAME_BY_CODE = {
    1: "UNINITIALIZED",
    2: "INVALID_ARGUMENT",
    3: "NOT_SUPPORTED",
    4: "NO_PERMISSION",
    6: "NOT_FOUND",
    9: "DRIVER_NOT_LOADED",
    12: "LIBRARY_NOT_FOUND",
    13: "FUNCTION_NOT_FOUND",
    15: "GPU_IS_LOST",
    17: "OPERATING_SYSTEM",
    18: "LIB_RM_VERSION_MISMATCH",
    999: "UNKNOWN",
}
_NOT_SUPPORTED = 3
_MIB = 1024 * 1024


def _describe(exc: BaseException) -> tuple[str, str]:
    """(status, message) for an NVML error, e.g. ("driver_not_loaded", "Driver Not Loaded (NVML_ERROR_...)")."""
    code = getattr(exc, "value", None)
    if not isinstance(code, int):
        return "unknown", f"{type(exc).__name__}: {exc}"
    name = _NAME_BY_CODE.get(code, str(code))
    return _STATUS_BY_CODE.get(code, "unknown"), f"{exc} (NVML_ERROR_{name}, code {code})"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _optional(call: Any, nvml_error: type[BaseException]) -> Any:
    """The call's result, or None when the device does not support it."""
    try:
        return call()
    except nvml_error as exc:
        if getattr(exc, "value", None) == _NOT_SUPPORTED:
            return None
        raise


def probe(lib_path: str) -> dict[str, Any]:
    try:
        lib = ctypes.CDLL(lib_path, mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        return {"status": "library_not_found", "error": f"the dynamic loader could not load it: {exc}"}
    try:
        import pynvml
    except ImportError as exc:
        return {
            "status": "unknown",
            "error": f"the Python module pynvml (package nvidia-ml-py) is missing: {exc}",
        }

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        status, message = _describe(exc)
        return {"status": status, "error": f"nvmlInit failed: {message}"}
    bound = getattr(pynvml, "nvmlLib", None)
    if bound is not None and getattr(bound, "_handle", None) != lib._handle:
        return {
            "status": "unknown",
            "error": "pynvml loaded a different libnvidia-ml.so.1 than the preloaded one "
            "(the preloaded file's soname is not libnvidia-ml.so.1)",
        }

    result: dict[str, Any] = {"status": "ok", "error": None, "gpus": [], "device_errors": []}
    try:
        result["driver_version"] = _text(pynvml.nvmlSystemGetDriverVersion())
        result["nvml_version"] = _text(_optional(pynvml.nvmlSystemGetNVMLVersion, pynvml.NVMLError))
        result["cuda_driver_version"] = _optional(pynvml.nvmlSystemGetCudaDriverVersion, pynvml.NVMLError)
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as exc:
        status, message = _describe(exc)
        pynvml.nvmlShutdown()
        return {"status": status, "error": message}

    for index in range(count):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pci = pynvml.nvmlDeviceGetPciInfo(handle)
            memory = _optional(lambda h=handle: pynvml.nvmlDeviceGetMemoryInfo(h), pynvml.NVMLError)
            persistence = _optional(lambda h=handle: pynvml.nvmlDeviceGetPersistenceMode(h), pynvml.NVMLError)
            mig = _optional(lambda h=handle: pynvml.nvmlDeviceGetMigMode(h), pynvml.NVMLError)
            result["gpus"].append(
                {
                    "index": index,
                    "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                    "name": _text(pynvml.nvmlDeviceGetName(handle)),
                    # WSL2 and some vGPUs have no device minor: NOT_SUPPORTED there.
                    "minor": _optional(lambda h=handle: pynvml.nvmlDeviceGetMinorNumber(h), pynvml.NVMLError),
                    "pci_bus_id": _text(pci.busId),
                    "memory_total_mib": None if memory is None else int(memory.total) // _MIB,
                    "persistence_mode": None if persistence is None else bool(persistence),
                    "mig_mode": None if mig is None else bool(mig[0]),
                }
            )
        except pynvml.NVMLError as exc:
            status, message = _describe(exc)
            result["device_errors"].append({"index": index, "status": status, "error": message})
    # What we read stands; shutdown only releases the library's handles.
    with contextlib.suppress(pynvml.NVMLError):
        pynvml.nvmlShutdown()
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: _nvml_child.py /path/to/libnvidia-ml.so", file=sys.stderr)
        return 2
    try:
        payload = probe(argv[1])
    except Exception as exc:  # anything unexpected still reaches the parent as data, not a traceback
        payload = {"status": "unknown", "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
