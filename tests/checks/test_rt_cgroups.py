"""runtime.cgroups: cgroup v2 + the systemd cgroup driver + the legacy hook loses GPUs on daemon-reload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpudoctor.checks.base import CheckResult, Status
from tests.scenarios import runtime_fragments as frag
from tests.scenarios.runtime_fragments import build_host, doctor, remove

MI = "/proc/self/mountinfo"
V2 = f"{MI}: cgroup2 mounted at /sys/fs/cgroup (cgroup v2, unified)"


def _cgroups(root: Path) -> CheckResult:
    result: CheckResult = doctor(root, "runtime.cgroups")["runtime.cgroups"]
    return result


def _legacy_host(root: Path, *trees: frag.Tree) -> Path:
    """Docker on cgroup v2 + systemd with the default cgroup driver, the legacy hook, no CDI spec, no containerd CRI."""
    root = build_host(root, frag.toolkit_config(mode="legacy"), frag.daemon_json_nvidia(cdi=False),
               frag.containerd_docker_only(), frag.mountinfo("v2"))
    remove(root, frag.CDI_SPEC)
    for tree in trees:
        frag.write_tree(root, tree)
    return root


def test_v2_systemd_legacy_warns_about_daemon_reload(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path)
    res = _cgroups(root)
    assert res.status is Status.WARN
    assert "cgroup v2 + the systemd cgroup driver (Docker)" in res.summary
    assert 'toolkit mode "legacy"' in res.summary and "systemctl daemon-reload" in res.summary
    assert V2 in res.evidence
    assert any(e.startswith("Docker cgroup driver: systemd (no native.cgroupdriver in exec-opts") for e in res.evidence)
    assert f'{frag.TOOLKIT_CONFIG}: mode = "legacy"' in res.evidence
    assert res.fixes == ("cgroup-driver",)
    assert "native.cgroupdriver=cgroupfs" in (res.remedy or "") and "nvidia.com/gpu=all" in (res.remedy or "")


def test_auto_mode_without_cdi_warns_too(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path, frag.toolkit_config(mode="auto"))
    res = _cgroups(root)
    assert res.status is Status.WARN
    assert 'toolkit mode "auto" without CDI' in res.summary


def test_cgroupfs_driver_in_daemon_json_passes(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path, frag.daemon_json_nvidia(cdi=False, **{"exec-opts": ["native.cgroupdriver=cgroupfs"]}))
    res = _cgroups(root)
    assert res.status is Status.PASS
    assert f"Docker cgroup driver: cgroupfs ({frag.DAEMON_JSON}: exec-opts sets native.cgroupdriver=cgroupfs)" in (
        res.evidence
    )


def test_explicit_systemd_driver_is_named(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path, frag.daemon_json_nvidia(cdi=False, **{"exec-opts": ["native.cgroupdriver=systemd"]}))
    res = _cgroups(root)
    assert res.status is Status.WARN
    assert f"Docker cgroup driver: systemd ({frag.DAEMON_JSON}: exec-opts sets native.cgroupdriver=systemd)" in (
        res.evidence
    )


@pytest.mark.parametrize("kind", ["v1", "hybrid"])
def test_v1_and_hybrid_pass(tmp_path: Path, kind: str) -> None:
    root = _legacy_host(tmp_path, frag.mountinfo(kind))
    remove(root, "/sys/fs/cgroup/cgroup.controllers")
    res = _cgroups(root)
    assert res.status is Status.PASS
    assert res.summary.startswith(f"cgroup {kind}; cgroup v2 is not in use")


def test_v2_without_systemd_means_cgroupfs(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path)
    (root / "run/systemd/system/.keep").unlink()
    (root / "run/systemd/system").rmdir()
    res = _cgroups(root)
    assert res.status is Status.PASS
    assert "Docker cgroup driver: cgroupfs (no native.cgroupdriver in exec-opts: Docker uses cgroupfs here)" in (
        res.evidence
    )


def test_fresh_cdi_spec_in_auto_mode_passes(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path, frag.toolkit_config(mode="auto"), frag.cdi_spec())
    res = _cgroups(root)
    assert res.status is Status.PASS
    assert f"{frag.CDI_SPEC}: fresh NVIDIA CDI spec" in res.evidence


def test_stale_cdi_spec_does_not_count(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path, frag.toolkit_config(mode="auto"), frag.cdi_spec(driver_version="535.104.05"))
    res = _cgroups(root)
    assert res.status is Status.WARN
    assert any(e.startswith(f"{frag.CDI_SPEC}: stale") for e in res.evidence)


def test_cdi_mode_passes(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path, frag.toolkit_config(mode="cdi"))
    assert _cgroups(root).status is Status.PASS


def test_containerd_systemd_cgroup_counts(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path, frag.daemon_json_nvidia(cdi=False, **{"exec-opts": ["native.cgroupdriver=cgroupfs"]}),
                 frag.containerd_config(version=2, runc_systemd=True))
    res = _cgroups(root)
    assert res.status is Status.WARN
    assert "(containerd)" in res.summary
    assert f"{frag.CONTAINERD_CONFIG}: runtimes.runc.options.SystemdCgroup = true" in res.evidence


def test_proc_1_mountinfo_is_the_fallback(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path, frag.mountinfo("v1", path="/proc/1/mountinfo"))
    remove(root, MI, "/sys/fs/cgroup/cgroup.controllers")
    res = _cgroups(root)
    assert res.status is Status.PASS
    assert "/proc/1/mountinfo: cgroup v1 controllers mounted under /sys/fs/cgroup" in res.evidence


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_dev_char_links_make_the_legacy_hook_safe(tmp_path: Path) -> None:
    root = _legacy_host(tmp_path)
    import stat

    for rel in ("dev/nvidiactl", "dev/nvidia0", "dev/nvidia1", "dev/nvidia-uvm"):
        node = root / rel
        if not stat.S_ISCHR(node.lstat().st_mode):
            node.unlink()
            minor = {"nvidiactl": 255, "nvidia0": 0, "nvidia1": 1, "nvidia-uvm": 0}[node.name]
            major = 511 if node.name == "nvidia-uvm" else 195
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    res = _cgroups(root)
    assert res.status is Status.WARN
    assert any(e.startswith("/dev/char/MAJ:MIN links missing for /dev/nvidiactl") for e in res.evidence)
    (root / "dev/char").mkdir(exist_ok=True)
    for rel in ("nvidiactl", "nvidia0", "nvidia1", "nvidia-uvm"):
        st = (root / "dev" / rel).stat()
        link = root / "dev/char" / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        if not link.is_symlink():
            link.symlink_to(f"../{rel}")
    res = _cgroups(root)
    assert res.status is Status.PASS
    assert any(e.startswith("/dev/char links present for /dev/nvidiactl") for e in res.evidence)
