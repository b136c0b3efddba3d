"""WSL2: the toolkit and runtime checks still apply (only the /dev/nvidia* and module checks do not)."""

from __future__ import annotations

from pathlib import Path

from gpudoctor.checks.base import Status
from tests.scenarios import runtime_fragments as frag
from tests.scenarios.builder import build_host
from tests.scenarios.catalog import wsl2
from tests.scenarios.runtime_fragments import doctor

STORE = "/usr/lib/wsl/drivers/nv_dispi.inf_amd64_8f2a"


def test_wsl2_toolkit_docker_and_a_fresh_wsl_cdi_spec_pass(tmp_path: Path) -> None:
    root = build_host(tmp_path, wsl2().with_tree(frag.wsl_cdi_spec()))
    res = doctor(root, "toolkit", "runtime.docker_config", "runtime.cdi", "runtime.cgroups")
    assert res["toolkit.installed"].status is Status.PASS
    assert res["toolkit.config"].status is Status.PASS
    assert res["runtime.docker_config"].status is Status.PASS
    cdi = res["runtime.cdi"]
    assert cdi.status is Status.PASS
    assert f"{frag.CDI_SPEC}: nvidia.com/gpu, matches the host" in cdi.evidence
    # cgroups are judged on WSL2 too (it runs systemd and cgroup v2 like any distro).
    assert res["runtime.cgroups"].status is not Status.SKIP
    assert "/proc/self/mountinfo: cgroup2 mounted at /sys/fs/cgroup (cgroup v2, unified)" in res["runtime.cgroups"].evidence


def test_wsl2_spec_from_before_a_windows_driver_update_is_stale(tmp_path: Path) -> None:
    root = build_host(tmp_path, wsl2().with_tree(frag.wsl_cdi_spec(store_files=("libcuda.so.1.1",))))
    cdi = doctor(root, "runtime.cdi")["runtime.cdi"]
    assert cdi.status is Status.FAIL
    assert f"{frag.CDI_SPEC}: names {STORE}/libcuda.so.1.1, which does not exist on this host" in cdi.evidence
    assert cdi.fixes == ("cdi-spec",)


def test_wsl2_without_the_toolkit_hook_fails_toolkit_installed(tmp_path: Path) -> None:
    root = build_host(tmp_path, wsl2().without("/usr/bin/nvidia-container-runtime-hook"))
    res = doctor(root, "toolkit.installed")["toolkit.installed"]
    assert res.status is Status.FAIL
    assert 'could not select device driver "" with capabilities: [[gpu]]' in res.summary
