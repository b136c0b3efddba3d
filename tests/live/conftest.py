"""Fixtures for the live checks: private dockerds wired to the simulated driver, and a matching fake host.

- ``live_host``: a healthy fake host (tests.scenarios: /proc, /sys, nodes made with mknod, the kit driver)
  whose daemon.json registers gpudoctor's runtime, so toolkit.installed does not block the live checks.
- ``kit_daemon``: a dockerd whose runtime ``gpudoctor`` is gpudoctor's launcher with settings that point
  the engine at ``live_host`` (the runtime shim sees the same driver as the checks).
- ``toolkit_host`` / ``one_gpu_host``: the same host with NVIDIA's toolkit programs (stubs), or with only
  GPU 0's device node (a runtime pointed there attaches one GPU: ``one_gpu_runtime``).
- ``plain_daemon``: a dockerd with no GPU runtime and no toolkit hook (the direct route); ``late_dir`` is
  first on its PATH and empty at start, so a hook put there arrives "after dockerd started".
- ``hook_daemon``: a dockerd started with a stand-in ``nvidia-container-runtime-hook`` on its PATH, so
  dockerd registers its ``nvidia`` device driver and ``--gpus all`` is accepted. The stand-in records that
  dockerd ran it and attaches nothing (there is no NVIDIA toolkit on test machines).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.dockerd import DockerDaemon, dockerd_binary, start_dockerd
from tests.infra.image import build_image
from tests.infra.system import InfraError
from tests.kit import KitSpec, build_kit
from tests.scenarios.builder import Scenario, build_host, fake_dev_env, healthy_host
from tests.scenarios.runtime_fragments import daemon_json_gpudoctor, docker_engine, merge, toolkit_binaries

HOOK = "nvidia-container-runtime-hook"
TEST_IMAGE = "gpudoctor-live/busybox-glibc:latest"
REQUIRE = "GPUDOCTOR_REQUIRE_DOCKER"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"the live Docker tests need {reason} ({REQUIRE}=1)", pytrace=False)
    pytest.skip(f"live Docker tests: {reason}")


def _require_docker() -> None:
    if os.geteuid() != 0:
        _unavailable("root (private dockerd, mknod)")
    if dockerd_binary() is None:
        _unavailable("dockerd (apt-get install docker.io)")
    if shutil.which("gcc") is None:
        _unavailable("gcc (the simulated driver is built with it)")


def live_scenario(name: str = "live-host") -> Scenario:
    """A healthy 2-GPU host with Docker and gpudoctor's runtime registered, and no NVIDIA toolkit."""
    return healthy_host(2, runtime=False, name=name).with_tree(
        merge(docker_engine(), daemon_json_gpudoctor())
    )


@dataclass(frozen=True)
class LiveHost:
    root: Path
    scenario: Scenario

    @property
    def env(self) -> dict[str, str]:
        """GPUDOCTOR_FAKE_DEV_ROOT for the host-side NVML probe."""
        return fake_dev_env(self.root)


@pytest.fixture(scope="session")
def live_host(tmp_path_factory: pytest.TempPathFactory) -> LiveHost:
    _require_docker()
    scenario = live_scenario()
    return LiveHost(root=build_host(tmp_path_factory.mktemp("live"), scenario), scenario=scenario)


@pytest.fixture(scope="session")
def toolkit_host(tmp_path_factory: pytest.TempPathFactory) -> LiveHost:
    """The live host plus NVIDIA's toolkit programs (stubs): the files say `--gpus` should work."""
    _require_docker()
    scenario = live_scenario("toolkit-host").with_tree(toolkit_binaries())
    return LiveHost(root=build_host(tmp_path_factory.mktemp("livetk"), scenario), scenario=scenario)


@pytest.fixture(scope="session")
def one_gpu_host(tmp_path_factory: pytest.TempPathFactory) -> LiveHost:
    """The same host with only GPU 0's device node: a runtime pointed here attaches one GPU."""
    _require_docker()
    base = live_scenario("one-gpu-host")
    gpu1 = base.gpus[1]
    scenario = base.without(f"/dev/nvidia{gpu1.minor}")
    return LiveHost(root=build_host(tmp_path_factory.mktemp("live1"), scenario), scenario=scenario)


def write_runtime(directory: Path, driver_root: Path, *, name: str = "gpudoctor-runtime") -> Path:
    """gpudoctor's launcher plus a settings file that points the engine at `driver_root`; returns the launcher."""
    from gpudoctor.engine.launcher import write_launcher
    from gpudoctor.engine.settings import Settings, find_runc, render_settings

    directory.mkdir(parents=True, exist_ok=True)
    settings = directory / f"{name}.toml"
    runc = find_runc()
    settings.write_text(
        render_settings(
            Settings(
                runc=runc,
                driver_root=str(driver_root),
                dev_root=str(driver_root),
                cache_dir="",
                log_file=str(directory / f"{name}.log"),
            )
        )
    )
    launcher = directory / name
    write_launcher(str(launcher), runc=runc, config=str(settings))
    return launcher


def _start(base: Path, *, runtimes: dict[str, dict[str, Any]] | None = None) -> DockerDaemon:
    try:
        return start_dockerd(base, runtimes=runtimes)
    except InfraError as exc:
        _unavailable(f"a private dockerd could not start: {exc}")
        raise


def _with_image(daemon: DockerDaemon, tmp: Path) -> None:
    try:
        build_image(daemon, tmp, TEST_IMAGE)
    except Exception:
        daemon.stop()
        raise


@pytest.fixture(scope="session")
def kit_runtime(tmp_path_factory: pytest.TempPathFactory, live_host: LiveHost) -> Path:
    return write_runtime(tmp_path_factory.mktemp("runtime"), live_host.root)


@pytest.fixture(scope="session")
def one_gpu_runtime(tmp_path_factory: pytest.TempPathFactory, one_gpu_host: LiveHost) -> Path:
    return write_runtime(tmp_path_factory.mktemp("runtime1"), one_gpu_host.root)


@pytest.fixture(scope="session")
def kit_daemon(tmp_path_factory: pytest.TempPathFactory, kit_runtime: Path) -> Iterator[DockerDaemon]:
    daemon = _start(tmp_path_factory.mktemp("kitd"), runtimes={"gpudoctor": {"path": str(kit_runtime)}})
    _with_image(daemon, tmp_path_factory.mktemp("kitd-img"))
    try:
        yield daemon
    finally:
        daemon.stop()


@dataclass(frozen=True)
class PlainDaemon:
    daemon: DockerDaemon
    late_dir: Path  # first on dockerd's PATH and empty at start: a hook put here arrives "after the start"


@pytest.fixture(scope="session")
def plain_daemon(tmp_path_factory: pytest.TempPathFactory, live_host: LiveHost) -> Iterator[PlainDaemon]:
    base = tmp_path_factory.mktemp("plaind")
    late = base / "late-bin"
    late.mkdir()
    with _path_first(late):
        daemon = _start(base / "d")
    _with_image(daemon, tmp_path_factory.mktemp("plaind-img"))
    try:
        yield PlainDaemon(daemon=daemon, late_dir=late)
    finally:
        daemon.stop()


@contextmanager
def _path_first(directory: Path) -> Iterator[None]:
    # start_dockerd passes this process's PATH on to dockerd: put `directory` first on it.
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{directory}:{saved}"
    try:
        yield
    finally:
        os.environ["PATH"] = saved


@dataclass(frozen=True)
class HookDaemon:
    daemon: DockerDaemon
    hook: Path
    marker: Path


def write_stand_in_hook(directory: Path, marker: Path) -> Path:
    """An executable named like NVIDIA's hook that records its argv and attaches nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    hook = directory / HOOK
    hook.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 0\n')
    hook.chmod(0o755)
    return hook


@pytest.fixture(scope="session")
def hook_daemon(tmp_path_factory: pytest.TempPathFactory, live_host: LiveHost) -> Iterator[HookDaemon]:
    base = tmp_path_factory.mktemp("hookd")
    marker = base / "hook-calls.log"
    hook = write_stand_in_hook(base / "toolkit-bin", marker)
    with _path_first(hook.parent):
        daemon = _start(base / "d")
    _with_image(daemon, tmp_path_factory.mktemp("hookd-img"))
    try:
        yield HookDaemon(daemon=daemon, hook=hook, marker=marker)
    finally:
        daemon.stop()


def kit_lib_image(
    daemon: DockerDaemon, tmp: Path, tag: str, spec: KitSpec, *, env: dict[str, str] | None = None
) -> str:
    """The test image plus a libnvidia-ml of `spec`'s driver version in /usr/lib/x86_64-linux-gnu (D3)."""
    lib = build_kit(spec).libnvml
    libdir = "/usr/lib/x86_64-linux-gnu"
    name = f"libnvidia-ml.so.{spec.driver_version}"
    return build_image(
        daemon,
        tmp,
        tag,
        extra_files={f"{libdir}/{name}": lib},
        symlinks={f"{libdir}/libnvidia-ml.so.1": name},
        env=env,
    )
