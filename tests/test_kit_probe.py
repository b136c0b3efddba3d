"""gpudoctor's live NVML probe against driver roots built from the kit: every status, and replay."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.host.nvml import NvmlGpu, NvmlProbe, find_nvml_library, probe_nvml
from gpudoctor.host.root import HostRoot
from tests.kit import FAKE_DEV_ROOT_ENV, DriverRootInfo, KitSpec, fake_gpus, install_driver_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need mknod (root)")

NVML_FILE = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14"


def _root(tmp_path: Path, spec: KitSpec | None = None, **kwargs: object) -> DriverRootInfo:
    return install_driver_root(tmp_path / "root", spec or KitSpec(), **kwargs)  # type: ignore[arg-type]


def _probe(info: DriverRootInfo, monkeypatch: pytest.MonkeyPatch, **kwargs: float) -> NvmlProbe:
    monkeypatch.setenv(FAKE_DEV_ROOT_ENV, str(info.dev_root))
    return probe_nvml(HostRoot(info.root), **kwargs)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> DriverRootInfo:
    return _root(tmp_path_factory.mktemp("probe"))


def test_healthy_host_reports_gpus_and_versions(
    healthy: DriverRootInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = _probe(healthy, monkeypatch)
    assert probe.ok and probe.error is None
    assert probe.library_path == NVML_FILE
    assert (probe.driver_version, probe.nvml_version, probe.cuda_driver_version) == (
        "550.54.14",
        "12.550.54.14",
        12040,
    )
    assert probe.gpus == tuple(
        NvmlGpu(
            index=g.index,
            uuid=g.uuid,
            name=g.name,
            minor=g.minor,
            pci_bus_id=g.pci_bus_id,
            memory_total_mib=g.memory_total_mib,
            persistence_mode=True,
            mig_mode=False,
        )
        for g in healthy.spec.gpus
    )
    assert probe.device_errors == ()


def test_optional_features_come_back_as_none_or_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu = dataclasses.replace(
        fake_gpus(1, name="NVIDIA GeForce RTX 4090")[0], mig_mode=None, persistence_mode=False
    )
    probe = _probe(_root(tmp_path, KitSpec(gpus=(gpu,))), monkeypatch)
    assert probe.ok
    assert (probe.gpus[0].mig_mode, probe.gpus[0].persistence_mode, probe.gpus[0].name) == (
        None,
        False,
        "NVIDIA GeForce RTX 4090",
    )


def test_missing_nvidiactl_is_driver_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = _root(tmp_path)
    (info.dev_root / "nvidiactl").unlink()
    probe = _probe(info, monkeypatch)
    assert probe.status == "driver_not_loaded"
    assert probe.error == "nvmlInit failed: Driver Not Loaded (NVML_ERROR_DRIVER_NOT_LOADED, code 9)"
    assert probe.library_path == NVML_FILE and probe.gpus == () and probe.driver_version is None


def test_inaccessible_nvidiactl_is_no_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = _root(tmp_path)
    (info.dev_root / "nvidiactl").chmod(0o000)
    probe = _probe(info, monkeypatch)
    assert probe.status == "no_permission"
    assert "Insufficient Permissions" in (probe.error or "")


def test_library_newer_than_module_is_lib_rm_version_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = _probe(_root(tmp_path, KitSpec(rm_mismatch=True)), monkeypatch)
    assert probe.status == "lib_rm_version_mismatch"
    assert "RM has detected an NVML/RM version mismatch." in (probe.error or "")


def test_a_hanging_library_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = _probe(_root(tmp_path, KitSpec(hang_on_init=True)), monkeypatch, timeout=1.0)
    assert probe.status == "timeout"
    assert probe.error == "NVML did not answer within 1s; the probe process was killed"
    assert probe.library_path == NVML_FILE


def test_a_crashing_library_is_reported_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = _probe(_root(tmp_path, KitSpec(crash_on_init=True)), monkeypatch)
    assert probe.status == "crashed"
    assert (probe.error or "").startswith("the probe process died with SIGSEGV inside NVML")


def test_no_library_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "empty/etc").mkdir(parents=True)
    probe = probe_nvml(HostRoot(tmp_path / "empty"))
    assert probe.status == "library_not_found" and probe.library_path is None
    assert (probe.error or "").startswith("libnvidia-ml.so.1 was not found (looked in /etc/ld.so.cache, ")


def test_a_dangling_soname_link_is_not_a_library(tmp_path: Path) -> None:
    info = _root(tmp_path, device_nodes=False, ldconfig=False)
    info.path(NVML_FILE).unlink()
    assert find_nvml_library(HostRoot(info.root)) is None
    assert probe_nvml(HostRoot(info.root)).status == "library_not_found"


def test_a_gpu_refusing_its_handle_is_a_device_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = _root(tmp_path)
    (info.dev_root / "nvidia0").chmod(0o000)
    probe = _probe(info, monkeypatch)
    assert probe.ok
    assert [g.uuid for g in probe.gpus] == [info.spec.gpus[1].uuid]
    assert len(probe.device_errors) == 1
    error = probe.device_errors[0]
    assert (error.index, error.status) == (0, "no_permission")
    assert "Insufficient Permissions" in error.error


def test_gpus_without_device_nodes_are_not_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What NVML shows when a GPU is on the PCI bus but its node is gone (the cross-check's input)."""
    spec = KitSpec(gpus=fake_gpus(4))
    probe = _probe(_root(tmp_path, spec, gpu_nodes=[0, 2, 3]), monkeypatch)
    assert [(g.index, g.uuid, g.minor) for g in probe.gpus] == [
        (i, g.uuid, g.minor) for i, g in enumerate(s for s in spec.gpus if s.minor != 1)
    ]


def test_found_through_the_fallback_dirs_without_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = _root(tmp_path, ldconfig=False)
    assert not info.path("/etc/ld.so.cache").exists()
    assert find_nvml_library(HostRoot(info.root)) == NVML_FILE
    assert _probe(info, monkeypatch).ok


def test_found_through_the_ld_so_cache_in_a_non_standard_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("gpudoctor.host.parsers.ldcache")
    info = _root(tmp_path, libdir="opt/nvidia/lib64")
    assert find_nvml_library(HostRoot(info.root)) == "/opt/nvidia/lib64/libnvidia-ml.so.550.54.14"
    assert _probe(info, monkeypatch).ok


def test_to_dict_round_trips_through_json(healthy: DriverRootInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = _probe(healthy, monkeypatch)
    replayed = NvmlProbe.from_dict(json.loads(json.dumps(probe.to_dict())))
    assert replayed == probe
    failed = NvmlProbe(status="timeout", error="NVML did not answer within 10s; the probe process was killed")
    assert NvmlProbe.from_dict(json.loads(json.dumps(failed.to_dict()))) == failed


@pytest.mark.parametrize(
    "data",
    [
        {"status": "exploded"},
        {"status": "ok", "gpus": {"index": 0}},
        {"status": "ok", "gpus": [{"index": "0", "uuid": "GPU-x", "name": "n", "pci_bus_id": "b"}]},
        {"status": "ok", "gpus": [{"index": 0, "name": "n", "pci_bus_id": "b"}]},
        {"status": "ok", "cuda_driver_version": True},
        {"status": "ok", "device_errors": [{"index": 0, "status": "ok"}]},
        ["status", "ok"],
    ],
)
def test_from_dict_rejects_malformed_records(data: object) -> None:
    with pytest.raises(ValueError):
        NvmlProbe.from_dict(data)  # type: ignore[arg-type]


def test_the_probe_module_is_cheap_to_import() -> None:
    code = (
        "import sys, gpudoctor.host.nvml\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('textual', 'docker', 'pynvml', 'ctypes')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
