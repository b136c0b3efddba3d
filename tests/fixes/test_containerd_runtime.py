"""containerd-runtime: a drop-in plus an `imports` line; every comment in the main file stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudoctor.fixes.base import FixError
from gpudoctor.fixes.containerd_runtime import DROPIN, MAIN_CONFIG, ContainerdRuntimeFix
from gpudoctor.fixes.render import render_plan
from gpudoctor.host.parsers.configs import read_containerd_config
from gpudoctor.host.root import HostRoot
from tests.fixes.helpers import STUB, assert_golden, ctx_for, normalize, write_files
from tests.scenarios.runtime_fragments import containerd_config_text

TOOLKIT = {"/usr/bin/nvidia-container-runtime": STUB, "/usr/bin/containerd": STUB}
NO_TOOLKIT = {"/usr/bin/containerd": STUB}

COMMENTED_V2 = """# /etc/containerd/config.toml -- managed by hand, please keep these notes
# (registry mirror set up by ops, ticket 1234)
version = 2
root = "/var/lib/containerd"  # default

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"   # pinned
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["https://mirror.example.com"]
  [plugins."io.containerd.grpc.v1.cri".containerd]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
"""

SCENARIOS: dict[str, dict[str, str]] = {
    "v2-commented-no-nvidia": {**TOOLKIT, MAIN_CONFIG: COMMENTED_V2},
    "v2-systemd-mismatch": {**TOOLKIT, MAIN_CONFIG: containerd_config_text(version=2, nvidia_systemd=False)},
    "v2-no-runtime-type": {**TOOLKIT, MAIN_CONFIG: containerd_config_text(version=2, nvidia_runtime_type=None)},
    "v3-no-nvidia": {**TOOLKIT, MAIN_CONFIG: containerd_config_text(version=3, nvidia=False)},
    "v2-no-toolkit-cdi": {**NO_TOOLKIT, MAIN_CONFIG: containerd_config_text(version=2, nvidia=False)},
    "v3-dropin-not-imported": {
        **TOOLKIT,
        MAIN_CONFIG: containerd_config_text(version=3, nvidia=False),
        "/etc/containerd/config.d/99-nvidia.toml": 'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.'
        'runtimes.nvidia]\n  runtime_type = "io.containerd.runc.v2"\n[plugins."io.containerd.cri.v1.runtime".'
        'containerd.runtimes.nvidia.options]\n  BinaryName = "/usr/bin/nvidia-container-runtime"\n'
        "  SystemdCgroup = true\n",
    },
    "v2-existing-imports": {
        **TOOLKIT,
        MAIN_CONFIG: 'version = 2\nimports = [\n  "/etc/containerd/site.toml",  # site defaults\n]\n\n'
        + containerd_config_text(version=2, nvidia=False).split("\n", 1)[1],
        "/etc/containerd/site.toml": "version = 2\n",
    },
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_diff_then_idempotent(tmp_path: Path, name: str) -> None:
    files = SCENARIOS[name]
    root = write_files(tmp_path / "root", files)
    fix = ContainerdRuntimeFix()
    plan = fix.plan(ctx_for(root))
    assert_golden(f"containerd-runtime/{name}.txt", normalize(render_plan(plan, fix, live=False), root))
    result = fix.apply(ctx_for(root), plan)
    assert result.ok, result.error
    again = fix.plan(ctx_for(root))
    assert again.empty, render_plan(again)

    main_after = (root / MAIN_CONFIG.lstrip("/")).read_text()
    for line in files[MAIN_CONFIG].splitlines():
        if line.strip().startswith("#") or "#" in line:
            assert line.split("#", 1)[1] in main_after  # every comment stays
    cfg = read_containerd_config(HostRoot(str(root)), MAIN_CONFIG)
    assert cfg is not None
    if "/usr/bin/nvidia-container-runtime" in files:
        nvidia = cfg.runtimes["nvidia"]
        assert nvidia.binary_name == "/usr/bin/nvidia-container-runtime"
        assert nvidia.runtime_type == "io.containerd.runc.v2"
        assert nvidia.systemd_cgroup == cfg.runtimes["runc"].systemd_cgroup
    else:
        assert cfg.cdi_enabled is True


def test_v2_dropin_keeps_the_whole_cri_section(tmp_path: Path) -> None:
    # containerd 1.x replaces a plugin section whole: the drop-in must carry the mirror and sandbox image.
    root = write_files(tmp_path / "root", SCENARIOS["v2-commented-no-nvidia"])
    fix = ContainerdRuntimeFix()
    assert fix.apply(ctx_for(root), fix.plan(ctx_for(root))).ok
    cfg = read_containerd_config(HostRoot(str(root)), MAIN_CONFIG, containerd_major=1)
    assert cfg is not None
    cri = cfg.raw["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert cri["registry"]["mirrors"]["docker.io"]["endpoint"] == ["https://mirror.example.com"]
    assert DROPIN in cfg.files


def test_healthy_config_is_left_alone(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {**TOOLKIT, MAIN_CONFIG: containerd_config_text(version=2)})
    assert ContainerdRuntimeFix().plan(ctx_for(root)).empty


def test_docker_only_containerd_is_not_touched(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {**TOOLKIT, MAIN_CONFIG: 'disabled_plugins = ["cri"]\n'})
    plan = ContainerdRuntimeFix().plan(ctx_for(root))
    assert plan.empty and "disables the CRI plugin" in plan.notes[0]


@pytest.mark.parametrize(
    ("files", "expect"),
    [
        ({MAIN_CONFIG: containerd_config_text(version=1)}, "version 1 config"),
        ({}, "does not exist"),
        ({MAIN_CONFIG: 'version = 2\n[plugins\n'}, f"{MAIN_CONFIG}:2"),
    ],
)
def test_refusals(tmp_path: Path, files: dict[str, str], expect: str) -> None:
    root = write_files(tmp_path / "root", {**TOOLKIT, **files})
    with pytest.raises(FixError, match=expect):
        ContainerdRuntimeFix().plan(ctx_for(root))


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="scenario hosts have device nodes (mknod needs root)")
def test_the_containerd_check_no_longer_fails(tmp_path: Path) -> None:
    from tests.scenarios import runtime_fragments as rtf
    from tests.scenarios.builder import build_into, healthy_host

    root = build_into(tmp_path / "host", healthy_host(2).with_tree(rtf.containerd_config(version=2, nvidia_systemd=False)))
    assert rtf.doctor(root, "runtime.containerd")["runtime.containerd"].status.value == "fail"
    fix = ContainerdRuntimeFix()
    assert fix.apply(ctx_for(root), fix.plan(ctx_for(root))).ok
    after = rtf.doctor(root, "runtime.containerd")["runtime.containerd"]
    # The drop-in carries the whole CRI section on purpose (containerd 1.x replaces plugin sections whole),
    # so nothing of the main file's section is lost and the check passes.
    assert after.status.value == "pass", (after.summary, after.evidence)
    assert not [e for e in after.evidence if "SystemdCgroup = false" in e]
