"""runtime.containerd: the CRI config (v1/v2/v3, imports, k3s/RKE2) as containerd merges it."""

from __future__ import annotations

from pathlib import Path

from gpudoctor.checks.base import CheckResult, Status
from tests.scenarios import runtime_fragments as frag
from tests.scenarios.runtime_fragments import build_host, doctor, remove

CFG = frag.CONTAINERD_CONFIG


def _containerd(root: Path) -> CheckResult:
    result: CheckResult = doctor(root, "runtime.containerd")["runtime.containerd"]
    return result


def test_v2_config_with_nvidia_passes(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_config(version=2))
    res = _containerd(root)
    assert res.status is Status.PASS
    assert f"{CFG}: containerd config version 2" in res.evidence
    assert f'{CFG}: runtimes.nvidia.options: BinaryName = "/usr/bin/nvidia-container-runtime" (present)' in (
        res.evidence
    )


def test_v1_config_with_nvidia_passes(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_config(version=1))
    res = _containerd(root)
    assert res.status is Status.PASS
    assert f"{CFG}: containerd config version 1" in res.evidence


def test_v3_dropin_that_is_imported_is_read(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_v3_with_dropin())
    res = _containerd(root)
    assert res.status is Status.PASS
    assert f"{CFG}: containerd config version 3, reads /etc/containerd/conf.d/99-nvidia.toml" in res.evidence
    assert ('/etc/containerd/conf.d/99-nvidia.toml: runtimes.nvidia.options: BinaryName = '
            '"/usr/bin/nvidia-container-runtime" (present)') in res.evidence


def test_dropin_that_is_not_imported_warns(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_v3_with_dropin(imported=False))
    res = _containerd(root)
    assert res.status is Status.WARN
    assert res.summary == f"/etc/containerd/conf.d/99-nvidia.toml is never read: {CFG} does not import it"
    assert "/etc/containerd/conf.d/99-nvidia.toml: present" in res.evidence
    assert res.fixes == ("containerd-runtime",)


def test_systemd_cgroup_mismatch_fails(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_config(runc_systemd=True, nvidia_systemd=None))
    res = _containerd(root)
    assert res.status is Status.FAIL
    assert "SystemdCgroup differs between runc (true) and 'nvidia' (not set (false))" in res.summary
    assert f"{CFG}: runtimes.runc.options.SystemdCgroup = true" in res.evidence
    assert f"{CFG}: runtimes.nvidia.options.SystemdCgroup = not set (false)" in res.evidence
    assert res.fixes == ("containerd-runtime",)


def test_nvidia_binary_missing_fails(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_config(nvidia_binary="/usr/local/nvidia/toolkit/nvidia-container-runtime"))
    res = _containerd(root)
    assert res.status is Status.FAIL
    assert "points to /usr/local/nvidia/toolkit/nvidia-container-runtime, which is missing" in res.summary
    assert (f'{CFG}: runtimes.nvidia.options: BinaryName = "/usr/local/nvidia/toolkit/nvidia-container-runtime"'
            ) in res.evidence
    assert "/usr/local/nvidia/toolkit/nvidia-container-runtime: not present" in res.evidence


def test_runtime_type_missing_fails(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_config(nvidia_runtime_type=None))
    res = _containerd(root)
    assert res.status is Status.FAIL
    assert "container.Runtime.Name must be set" in res.summary
    assert f"{CFG}: runtimes.nvidia: runtime_type is not set" in res.evidence


def test_default_runtime_name_unknown_fails(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_config(nvidia=False, default_runtime="nvidia"))
    res = _containerd(root)
    assert res.status is Status.FAIL
    assert "no runtime for \"nvidia\" is configured" in res.summary
    assert f'{CFG}: default_runtime_name = "nvidia"' in res.evidence


def test_no_nvidia_runtime_and_no_cdi_warns_but_containerd_2_has_cdi_on(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_config(version=2, nvidia=False))
    res = _containerd(root)
    assert res.status is Status.WARN
    assert "has no nvidia runtime and CDI is off" in res.summary
    assert f"{CFG}: enable_cdi = not set (false)" in res.evidence
    assert "nvidia-ctk runtime configure --runtime=containerd" in (res.remedy or "")

    frag.write_tree(root, frag.containerd_config(version=3, nvidia=False))
    res = _containerd(root)
    assert res.status is Status.PASS
    assert any("CDI is on (enable_cdi unset, on by default in containerd 2.x)" in e for e in res.evidence)


def test_docker_only_containerd_skips(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_docker_only())
    res = _containerd(root)
    assert res.status is Status.SKIP
    assert "CRI plugin is disabled" in res.summary
    assert f"{CFG}: disabled_plugins includes 'cri' (containerd serves Docker only)" in res.evidence


def test_containerd_not_installed_skips(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    remove(root, CFG, "/usr/bin/containerd")
    res = _containerd(root)
    assert res.status is Status.SKIP
    assert res.summary.startswith("containerd is not installed")


def test_k3s_without_nvidia_points_at_restart_and_template(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.containerd_docker_only(), frag.k3s_containerd(nvidia=False, template=True))
    res = _containerd(root)
    assert res.status is Status.WARN
    assert "containerd (k3s) has no nvidia runtime" in res.summary
    assert f"{frag.K3S_CONFIG}.tmpl: present (k3s renders config.toml from it)" in res.evidence
    assert "`sudo systemctl restart k3s`" in (res.remedy or "") and "config.toml.tmpl" in (res.remedy or "")


def test_invalid_toml_fails_with_position(tmp_path: Path) -> None:
    root = build_host(tmp_path, {CFG: frag.File('version = 2\n[plugins."io.containerd.grpc.v1.cri"\n')})
    res = _containerd(root)
    assert res.status is Status.FAIL
    assert res.summary.startswith(f"{CFG} cannot be used (line 2, column")
    assert res.evidence[-1].startswith(f"{CFG}:2:")
