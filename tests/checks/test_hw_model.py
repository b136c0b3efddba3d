"""Unit tests for the host-model helpers the hardware checks share (gpudoctor/host/model.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudoctor.host import model as m
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot


@pytest.mark.parametrize(("raw", "norm", "nvml"), [
    ("00000000:3B:00.0", "0000:3b:00.0", "00000000:3B:00.0"),
    ("0000:3b:00.0", "0000:3b:00.0", "00000000:3B:00.0"),
    ("3b:00.0", "0000:3b:00.0", "00000000:3B:00.0"),
    ("0001:86:1f.7", "0001:86:1f.7", "00000001:86:1F.7"),
])
def test_bus_id_forms(raw: str, norm: str, nvml: str) -> None:
    assert m.normalize_bus_id(raw) == norm
    assert m.nvml_bus_id(raw) == nvml


def test_modprobe_conf_blacklists_and_options() -> None:
    cfg = m.ModprobeConfig()
    m.parse_modprobe_conf(
        "# comment\nblacklist nouveau  # trailing\ninstall nvidia-drm /bin/false\n"
        "options nvidia NVreg_DeviceFileMode=0660\noptions\nnonsense line here\n",
        path="/etc/modprobe.d/x.conf", into=cfg)
    assert cfg.blacklists == {"nouveau": ["/etc/modprobe.d/x.conf:2: blacklist nouveau"],
                              "nvidia_drm": ["/etc/modprobe.d/x.conf:3: install nvidia-drm /bin/false"]}
    assert cfg.options == {"nvidia": ["/etc/modprobe.d/x.conf:4: options nvidia NVreg_DeviceFileMode=0660"]}


def test_kernel_command_line_blacklist(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").write_text("ro quiet modprobe.blacklist=nouveau,nova-core rd.driver.blacklist=nvidia\n")
    cfg = m.modprobe_config(HostFacts(root=HostRoot(tmp_path)))
    assert set(cfg.blacklists) == {"nouveau", "nova_core", "nvidia"}
    assert cfg.blacklists["nvidia"] == ["/proc/cmdline: rd.driver.blacklist=nvidia"]


def test_module_files_refuse_a_hostile_release(tmp_path: Path) -> None:
    facts = HostFacts(root=HostRoot(tmp_path))
    assert m.module_files_for_kernel(facts, "../../etc") is None
    assert m.module_files_for_kernel(facts, "6.1.0-*") is None
    assert m.module_files_for_kernel(facts, "6.1.0-18-amd64") is None  # no /lib/modules/<release> at all
    (tmp_path / "lib/modules/6.1.0-18-amd64/updates/dkms").mkdir(parents=True)
    assert m.module_files_for_kernel(HostFacts(root=HostRoot(tmp_path)), "6.1.0-18-amd64") == []
    (tmp_path / "lib/modules/6.1.0-18-amd64/updates/dkms/nvidia.ko.zst").write_bytes(b"x")
    assert m.module_files_for_kernel(HostFacts(root=HostRoot(tmp_path)), "6.1.0-18-amd64") == [
        "/lib/modules/6.1.0-18-amd64/updates/dkms/nvidia.ko.zst"]


def test_wsl_detection_uses_the_kernel_release(tmp_path: Path) -> None:
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("5.15.146.1-microsoft-standard-WSL2\n")
    info = m.wsl(HostFacts(root=HostRoot(tmp_path)))  # no /proc/version: the osrelease fallback decides
    assert info.wsl2
    assert info.evidence == "/proc/sys/kernel/osrelease: 5.15.146.1-microsoft-standard-WSL2 (WSL2)"


def test_host_summary_never_raises_on_an_empty_root(tmp_path: Path) -> None:
    summary = m.host_summary(HostFacts(root=HostRoot(tmp_path, offline=True)))
    assert summary == {"root": str(tmp_path), "offline": True, "os": {}, "kernel": None, "wsl": False,
                       "driver_version": None, "gpus": []}
