"""What the real nvidia-smi prints for a KitSpec, written independently of the C fake to check it.

The layouts are the real tool's (550 to 580 driver branches), reconstructed from published output; see
tests/test_kit_smi.py for verbatim captures that these must reproduce.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tests.kit.spec import FakeGpu, KitSpec

# The first line of the summary: ctime-like date, then seven spaces.
SMI_DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d \d{4} {7}$")

SMI_DRIVER_NOT_LOADED = [
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
    "NVIDIA driver is installed and running.",
    "",
]
SMI_NO_LIBRARY = [
    "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the NVIDIA Display "
    "Driver is properly installed and present in your system.",
    "Please also try adding directory that contains libnvidia-ml.so to your system PATH.",
]
SMI_NO_PERMISSION = ["Failed to initialize NVML: Insufficient Permissions"]
SMI_UNKNOWN_ERROR = ["Failed to initialize NVML: Unknown Error"]
SMI_NO_DEVICES = ["No devices were found"]
SMI_INVALID_ARGUMENTS = ["Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."]

_HEADERS = {
    "index": "index",
    "uuid": "uuid",
    "gpu_uuid": "uuid",
    "name": "name",
    "gpu_name": "name",
    "driver_version": "driver_version",
    "memory.total": "memory.total [MiB]",
    "pci.bus_id": "pci.bus_id",
    "gpu_bus_id": "pci.bus_id",
    "count": "count",
    "persistence_mode": "persistence_mode",
    "mig.mode.current": "mig.mode.current",
}


def visible_gpus(spec: KitSpec, minors: Iterable[int] | None = None) -> list[FakeGpu]:
    """The GPUs NVML enumerates when only /dev/nvidia<minor> for `minors` exist (all when None)."""
    present = None if minors is None else set(minors)
    return [g for g in spec.gpus if present is None or g.minor in present]


def smi_mismatch(spec: KitSpec) -> list[str]:
    """``Failed to initialize NVML: Driver/library version mismatch`` (+ the library version from 550 on)."""
    lines = ["Failed to initialize NVML: Driver/library version mismatch"]
    if spec.driver_major >= 550:
        major, minor = spec.driver_version.split(".")[:2]
        lines.append(f"NVML library version: {major}.{minor}")
    return lines


def smi_list(gpus: Sequence[FakeGpu]) -> list[str]:
    """``nvidia-smi -L``; NVML numbers the visible GPUs from 0."""
    return [f"GPU {i}: {g.name} (UUID: {g.uuid})" for i, g in enumerate(gpus)]


def smi_version(spec: KitSpec) -> list[str]:
    major, minor = spec.driver_version.split(".")[:2]
    return [
        f"NVIDIA-SMI version  : {spec.driver_version}",
        f"NVML version        : {major}.{minor}",
        f"DRIVER version      : {spec.driver_version}",
        f"CUDA Version        : {spec.cuda_version_text}",
    ]


def _value(field: str, index: int, gpu: FakeGpu, spec: KitSpec, count: int, units: bool) -> str:
    header = _HEADERS[field]
    if header == "index":
        return str(index)
    if header == "uuid":
        return gpu.uuid
    if header == "name":
        return gpu.name
    if header == "driver_version":
        return spec.driver_version
    if header.startswith("memory.total"):
        return f"{gpu.memory_total_mib} MiB" if units else str(gpu.memory_total_mib)
    if header == "pci.bus_id":
        return gpu.pci_bus_id
    if header == "count":
        return str(count)
    if header == "persistence_mode":
        return "Enabled" if gpu.persistence_mode else "Disabled"
    if gpu.mig_mode is None:
        return "[N/A]"
    return "Enabled" if gpu.mig_mode else "Disabled"


def smi_query(
    spec: KitSpec, gpus: Sequence[FakeGpu], fields: Sequence[str], *, header: bool = True, units: bool = True
) -> list[str]:
    """``nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]``."""
    lines = [", ".join(_HEADERS[f] for f in fields)] if header else []
    for i, gpu in enumerate(gpus):
        lines.append(", ".join(_value(f, i, gpu, spec, len(gpus), units) for f in fields))
    return lines


def _gpu_rows(index: int, gpu: FakeGpu) -> list[str]:
    name = gpu.name if len(gpu.name) <= 30 else gpu.name[:27] + "..."
    persistence = "On" if gpu.persistence_mode else "Off"
    ecc = "N/A" if gpu.ecc_errors is None else str(gpu.ecc_errors)
    fan = "N/A" if gpu.fan_speed_percent is None else f"{gpu.fan_speed_percent}%"
    mig = "N/A" if gpu.mig_mode is None else ("Enabled" if gpu.mig_mode else "Disabled")
    usage = f"{gpu.power_draw_w}W"
    cap = f"{gpu.power_limit_w}W"
    memory = f"{gpu.memory_used_mib}MiB / {gpu.memory_total_mib:>6}MiB"
    return [
        f"| {index:>3}  {name:<31}{persistence:<3} | {gpu.pci_bus_id:>18} Off | {ecc:>20} |",
        f"|{fan:>4}{gpu.temperature_c:>5}C{'P0':>6}{usage:>16} / {cap:>5} | {memory:>22} | {'0%':>7} {'Default':>12} |",
        f"|{'':41}|{'':24}| {mig:>20} |",
    ]


def smi_summary(spec: KitSpec, gpus: Sequence[FakeGpu], *, date: str) -> list[str]:
    """The default ``nvidia-smi`` table; `date` is the first line as printed (it cannot be predicted)."""
    rule = "+" + "-" * 89 + "+"
    cells = "+" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
    under_version = ("+" if spec.driver_major >= 580 else "|") + cells[1:]
    if spec.driver_major >= 570:
        process_header = (
            "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |"
        )
    else:
        process_header = (
            "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |"
        )
    lines = [
        date,
        rule,
        f"| NVIDIA-SMI {spec.driver_version:<22} Driver Version: {spec.driver_version:<14} "
        f"CUDA Version: {spec.cuda_version_text:<8} |",
        under_version,
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                        |               MIG M. |",
        "|" + "=" * 41 + "+" + "=" * 24 + "+" + "=" * 22 + "|",
    ]
    for i, gpu in enumerate(gpus):
        lines += _gpu_rows(i, gpu)
        lines.append(cells)
    lines += [
        " " * 89,
        rule,
        "| Processes:" + " " * 78 + "|",
        process_header,
        "|        ID   ID" + " " * 63 + "Usage      |",
        "|" + "=" * 89 + "|",
        "|  No running processes found" + " " * 61 + "|",
        rule,
    ]
    return lines
