"""toolkit.installed and toolkit.config: each failure mode, with the file and value that decide it."""

from __future__ import annotations

from pathlib import Path

from gpudoctor.checks.base import Status
from tests.scenarios import runtime_fragments as frag
from tests.scenarios.runtime_fragments import build_host, doctor, remove

HOOK = "/usr/bin/nvidia-container-runtime-hook"
PATH_DIRS = "/usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin"
GPU_ERROR = 'could not select device driver "" with capabilities: [[gpu]]'


def test_healthy_toolkit_passes(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    res = doctor(root, "toolkit")
    assert res["toolkit.installed"].status is Status.PASS
    assert f"nvidia-container-runtime-hook: {HOOK}" in res["toolkit.installed"].evidence
    assert res["toolkit.config"].status is Status.PASS
    assert any('ldconfig = "@/sbin/ldconfig.real" (exists)' in e for e in res["toolkit.config"].evidence)


def test_missing_hook_names_the_gpus_error_and_blocks_the_runtime_layer(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    remove(root, *(f"/usr/bin/{b}" for b in frag.TOOLKIT_BINARIES))
    res = doctor(root, "toolkit", "runtime.docker_config", "runtime.cgroups")
    installed = res["toolkit.installed"]
    assert installed.status is Status.FAIL
    assert GPU_ERROR in installed.summary and "`docker run --gpus`" in installed.summary
    assert f"nvidia-container-runtime-hook: not found in {PATH_DIRS}" in installed.evidence
    assert installed.fixes == ("docker-runtime",)
    assert installed.remedy is not None
    assert "nvidia-container-toolkit" in installed.remedy and "gpudoctor fix docker-runtime" in installed.remedy
    for dependent in ("toolkit.config", "runtime.docker_config", "runtime.cgroups"):
        assert res[dependent].status is Status.SKIP
        assert "toolkit.installed is fail" in res[dependent].summary


def test_missing_hook_with_gpudoctor_runtime_registered_is_a_warning_naming_the_route(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.daemon_json_gpudoctor())
    remove(root, HOOK)
    res = doctor(root, "toolkit", "runtime.docker_config")
    installed = res["toolkit.installed"]
    assert installed.status is Status.WARN
    assert GPU_ERROR in installed.summary and "--runtime gpudoctor" in installed.summary
    assert any("gpudoctor's runtime /usr/local/bin/gpudoctor-runtime is registered" in e for e in installed.evidence)
    assert res["toolkit.config"].status is Status.SKIP
    assert "not installed" in res["toolkit.config"].summary
    docker = res["runtime.docker_config"]
    assert docker.status is Status.PASS
    assert "--runtime gpudoctor" in docker.summary and "--gpus" not in docker.summary


def test_hook_that_is_not_executable_counts_as_missing(tmp_path: Path) -> None:
    root = build_host(tmp_path, {HOOK: frag.File("#!/bin/sh\n", 0o644)})
    res = doctor(root, "toolkit.installed")
    assert res["toolkit.installed"].status is Status.FAIL
    assert "not executable" in res["toolkit.installed"].summary
    assert f"{HOOK}: exists but is not executable" in res["toolkit.installed"].evidence


def test_toolkit_in_usr_local_bin_is_found(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.toolkit_binaries(bin_dir="/usr/local/bin"))
    remove(root, *(f"/usr/bin/{b}" for b in frag.TOOLKIT_BINARIES))
    res = doctor(root, "toolkit.installed")
    assert res["toolkit.installed"].status is Status.PASS
    assert "nvidia-container-runtime-hook: /usr/local/bin/nvidia-container-runtime-hook" in (
        res["toolkit.installed"].evidence
    )


def test_hook_without_nvidia_container_cli_fails(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    remove(root, "/usr/bin/nvidia-container-cli")
    res = doctor(root, "toolkit.installed")
    assert res["toolkit.installed"].status is Status.FAIL
    assert "nvidia-container-cli is missing" in res["toolkit.installed"].summary
    assert f"nvidia-container-cli: not found in {PATH_DIRS}" in res["toolkit.installed"].evidence
    assert "libnvidia-container-tools" in (res["toolkit.installed"].remedy or "")


def test_missing_toolkit_base_is_a_warning(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    remove(root, "/usr/bin/nvidia-ctk", "/usr/bin/nvidia-container-runtime")
    res = doctor(root, "toolkit.installed")
    installed = res["toolkit.installed"]
    assert installed.status is Status.WARN
    assert "nvidia-ctk, nvidia-container-runtime missing" in installed.summary
    assert "nvidia-container-toolkit-base" in (installed.remedy or "")


def test_rpm_distro_with_ldconfig_real_fails_with_the_fix(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.rpm_toolkit_with_debian_ldconfig())
    remove(root, "/sbin/ldconfig.real")
    res = doctor(root, "toolkit.config")
    cfg = res["toolkit.config"]
    assert cfg.status is Status.FAIL
    assert '"@/sbin/ldconfig.real" does not exist' in cfg.summary
    assert "ldcache error: open failed: /sbin/ldconfig.real: no such file or directory" in cfg.summary
    assert f'{frag.TOOLKIT_CONFIG}: [nvidia-container-cli] ldconfig = "@/sbin/ldconfig.real"' in cfg.evidence
    assert "/sbin/ldconfig.real: not present on this host" in cfg.evidence
    assert "/sbin/ldconfig: present" in cfg.evidence
    assert any(e.startswith("/etc/os-release: Fedora Linux 40 (an RPM distro") for e in cfg.evidence)
    assert cfg.remedy == "`sudo nvidia-ctk config --in-place --set nvidia-container-cli.ldconfig=@/sbin/ldconfig`"
    assert cfg.fixes == ("toolkit-config",)


def test_plain_ldconfig_is_fine_when_only_the_real_variant_exists(tmp_path: Path) -> None:
    # The toolkit picks /sbin/ldconfig.real itself when it exists next to the configured /sbin/ldconfig.
    root = build_host(tmp_path, frag.toolkit_config(ldconfig="@/sbin/ldconfig"))
    remove(root, "/sbin/ldconfig")
    res = doctor(root, "toolkit.config")
    assert res["toolkit.config"].status is Status.PASS


def test_container_side_ldconfig_is_a_warning(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.toolkit_config(ldconfig="/sbin/ldconfig"))
    cfg = doctor(root, "toolkit.config")["toolkit.config"]
    assert cfg.status is Status.WARN
    assert 'ldconfig = "/sbin/ldconfig" is a container path' in cfg.summary
    assert f'{frag.TOOLKIT_CONFIG}: [nvidia-container-cli] ldconfig = "/sbin/ldconfig"' in cfg.evidence
    assert cfg.fixes == ("toolkit-config",)


def test_invalid_toml_gives_line_and_column(tmp_path: Path) -> None:
    root = build_host(tmp_path, {frag.TOOLKIT_CONFIG: frag.File('[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig\n')})
    cfg = doctor(root, "toolkit.config")["toolkit.config"]
    assert cfg.status is Status.FAIL
    assert "(line 2, column " in cfg.summary
    assert cfg.evidence[0].startswith(f"{frag.TOOLKIT_CONFIG}:2:")
    assert "nvidia-ctk config default" in (cfg.remedy or "")


def test_unknown_mode_fails_and_csv_off_tegra_warns(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.toolkit_config(mode="turbo"))
    cfg = doctor(root, "toolkit.config")["toolkit.config"]
    assert cfg.status is Status.FAIL
    assert 'unknown toolkit mode "turbo"' in cfg.summary
    assert f'{frag.TOOLKIT_CONFIG}: [nvidia-container-runtime] mode = "turbo"' in cfg.evidence

    frag.write_tree(root, frag.toolkit_config(mode="csv"))
    cfg = doctor(root, "toolkit.config")["toolkit.config"]
    assert cfg.status is Status.WARN
    assert "/etc/nv_tegra_release: not present" in cfg.evidence


def test_no_cgroups_on_a_rootful_host_warns(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.toolkit_config(no_cgroups=True))
    cfg = doctor(root, "toolkit.config")["toolkit.config"]
    assert cfg.status is Status.WARN
    assert "no-cgroups = true" in cfg.summary and "Failed to initialize NVML: Unknown Error" in cfg.summary
    assert f"{frag.TOOLKIT_CONFIG}: [nvidia-container-cli] no-cgroups = true" in cfg.evidence
    assert "/usr/bin/dockerd: present (a rootful engine)" in cfg.evidence
    assert "nvidia-container-cli.no-cgroups=false" in (cfg.remedy or "")


def test_no_cgroups_without_a_rootful_engine_is_fine(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.toolkit_config(no_cgroups=True))
    remove(root, "/usr/bin/dockerd", "/usr/bin/containerd")
    cfg = doctor(root, "toolkit.config")["toolkit.config"]
    assert cfg.status is Status.PASS
    assert any("no-cgroups = true (no rootful dockerd/containerd found)" in e for e in cfg.evidence)


def test_no_low_level_runtime_for_nvidia_container_runtime_warns(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.toolkit_config(runtimes=("crun",)))
    cfg = doctor(root, "toolkit.config")["toolkit.config"]
    assert cfg.status is Status.WARN
    assert f"crun: not found in {PATH_DIRS}" in cfg.evidence


def test_missing_config_means_defaults(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    remove(root, frag.TOOLKIT_CONFIG)
    cfg = doctor(root, "toolkit.config")["toolkit.config"]
    assert cfg.status is Status.PASS
    assert f"{frag.TOOLKIT_CONFIG}: not present" in cfg.evidence
