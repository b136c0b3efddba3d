"""The kit builds with gcc into a per-spec cache, and exports what pynvml and the dynamic loader need."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest

from tests.kit import KIT_LIBRARIES, FakeGpu, KitSpec, build_kit, fake_gpus
from tests.kit.build import build_root

# The pynvml wrappers that gpudoctor and nvidia-smi's callers use; the fake must export every NVML symbol
# that these resolve in the installed pynvml (13.x resolves e.g. nvmlDeviceGetCount_v2, nvmlInitWithFlags).
PYNVML_WRAPPERS = (
    "nvmlInit",
    "nvmlInitWithFlags",
    "nvmlShutdown",
    "nvmlErrorString",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlSystemGetCudaDriverVersion_v2",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetHandleByPciBusId",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetMinorNumber",
    "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetIndex",
)


def _dynamic_symbols(path: Path) -> set[str]:
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def _soname(path: Path) -> str:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\(SONAME\)\s+Library soname: \[(.+?)\]", out)
    assert m, f"{path} has no SONAME:\n{out}"
    return m.group(1)


def _resolved_symbols(wrapper: str) -> set[str]:
    """The NVML symbol names a pynvml wrapper looks up (following nvmlInit -> nvmlInitWithFlags etc.)."""
    source = inspect.getsource(getattr(pynvml, wrapper))
    names = set(re.findall(r'_nvmlGetFunctionPointer\("(\w+)"\)', source))
    for called in re.findall(r"\b(nvml\w+)\(", source):
        if called != wrapper and called in PYNVML_WRAPPERS:
            names |= _resolved_symbols(called)
    return names


def test_fake_nvml_has_the_real_soname_and_exports_what_pynvml_resolves() -> None:
    kit = build_kit(KitSpec())
    assert kit.libnvml.name == "libnvidia-ml.so.550.54.14"
    assert _soname(kit.libnvml) == "libnvidia-ml.so.1"
    wanted = set().union(*(_resolved_symbols(w) for w in PYNVML_WRAPPERS))
    # The versioned names pynvml 13 really uses must be among them, or the scan above found nothing.
    assert {
        "nvmlInitWithFlags",
        "nvmlDeviceGetCount_v2",
        "nvmlDeviceGetHandleByIndex_v2",
        "nvmlDeviceGetHandleByPciBusId_v2",
        "nvmlDeviceGetPciInfo_v3",
    } <= wanted
    exported = _dynamic_symbols(kit.libnvml)
    assert wanted <= exported, f"missing: {sorted(wanted - exported)}"
    # The unversioned and older entry points that C callers (libnvidia-container, old tools) use.
    assert {
        "nvmlInit",
        "nvmlInit_v2",
        "nvmlDeviceGetCount",
        "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetHandleByPciBusId",
        "nvmlDeviceGetPciInfo",
        "nvmlDeviceGetPciInfo_v2",
        "nvmlDeviceGetMemoryInfo_v2",
    } <= exported
    # Nothing but NVML's API leaks out of the library.
    assert all(name.startswith("nvml") for name in exported)


def test_stub_libraries_carry_their_real_sonames() -> None:
    kit = build_kit(KitSpec())
    assert set(kit.stub_libs) == {lib.soname_for("550.54.14") for lib in KIT_LIBRARIES}
    for soname, path in kit.stub_libs.items():
        assert _soname(path) == soname
        assert path.name.endswith(".so.550.54.14")
    assert "libcuda.so.1" in kit.stub_libs and "libnvidia-glcore.so.550.54.14" in kit.stub_libs


def test_builds_are_cached_per_spec_and_tools_are_shared_per_version() -> None:
    base = KitSpec()
    again = build_kit(KitSpec())
    assert again == build_kit(base)
    other_gpus = KitSpec(gpus=fake_gpus(1))
    kit_a, kit_b = build_kit(base), build_kit(other_gpus)
    assert kit_a.libnvml.parent != kit_b.libnvml.parent
    assert kit_a.nvidia_smi == kit_b.nvidia_smi
    assert kit_a.libnvml.parent.parent == build_root()
    recorded = json.loads((kit_b.libnvml.parent / "spec.json").read_text())
    assert [g["uuid"] for g in recorded["gpus"]] == [g.uuid for g in other_gpus.gpus]
    header = (kit_b.libnvml.parent / "kit_config.h").read_text()
    assert '#define KIT_DRIVER_VERSION "550.54.14"' in header
    assert other_gpus.gpus[0].uuid in header


_CONCURRENT_BUILD = """
import sys
from tests.kit import KitSpec, FakeGpu, build_kit
gpu = FakeGpu(index=0, name="NVIDIA A100-SXM4-40GB", uuid="GPU-0123abcd-0000-1111-2222-333344445555",
              pci_bus_id="07:00.0", minor=0, memory_total_mib=40960)
kit = build_kit(KitSpec(driver_version="535.161.08", cuda_version=12020, gpus=(gpu,)))
print(kit.libnvml, kit.nvidia_smi)
"""


def test_concurrent_processes_build_a_scenario_once(tmp_path: Path) -> None:
    env = {**os.environ, "GPUDOCTOR_KIT_BUILD_DIR": str(tmp_path / "cache")}
    repo = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_BUILD],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    assert len({out for out, _ in results}) == 1
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock"))
    assert [e.split("-")[0] for e in entries] == ["nvml", "tools"], entries
    lib = Path(results[0][0].split()[0])
    assert lib.is_file() and _soname(lib) == "libnvidia-ml.so.1"


def test_spec_validation_rejects_what_nvml_could_not_report() -> None:
    with pytest.raises(ValueError, match="uuid"):
        FakeGpu(index=0, name="x", uuid="not-a-uuid", pci_bus_id="3b:00.0", minor=0, memory_total_mib=1)
    with pytest.raises(ValueError, match="pci_bus_id"):
        FakeGpu(
            index=0,
            name="x",
            uuid="GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13",
            pci_bus_id="3b:00.1",
            minor=0,
            memory_total_mib=1,
        )
    with pytest.raises(ValueError, match="minor"):
        FakeGpu(
            index=0,
            name="x",
            uuid="GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13",
            pci_bus_id="3b:00.0",
            minor=255,
            memory_total_mib=1,
        )
    with pytest.raises(ValueError, match="printable"):
        FakeGpu(
            index=0,
            name='bad"\n',
            uuid="GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13",
            pci_bus_id="3b:00.0",
            minor=0,
            memory_total_mib=1,
        )
    gpus = fake_gpus(2)
    with pytest.raises(ValueError, match="share a minor"):
        KitSpec(gpus=(gpus[0], dataclasses.replace(gpus[1], minor=0)))
    with pytest.raises(ValueError, match="indices"):
        KitSpec(gpus=(gpus[1],))
    with pytest.raises(ValueError, match="driver_version"):
        KitSpec(driver_version="550")


def test_bus_ids_are_normalized_to_nvml_form() -> None:
    gpu = FakeGpu(
        index=0,
        name="x",
        uuid="GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13",
        pci_bus_id="0000:3b:00.0",
        minor=0,
        memory_total_mib=1,
    )
    assert gpu.pci_bus_id == "00000000:3B:00.0"
    assert gpu.bus_id_legacy == "0000:3B:00.0"
    assert gpu.sysfs_bus_id == "0000:3b:00.0"
    assert len({g.uuid for g in fake_gpus(8)}) == 8
