"""Shared pytest fixtures. Real engines: a private dockerd and private podman storage (tests/infra).

Engine fixtures skip with the reason when the engine is missing or cannot start, unless
GPUDOCTOR_REQUIRE_DOCKER=1 / GPUDOCTOR_REQUIRE_PODMAN=1 is set (CI sets both): then they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.infra.dockerd import DockerDaemon, dockerd_binary, start_dockerd
from tests.infra.image import build_rootfs, import_image
from tests.infra.podman import Podman, podman_binary, start_podman
from tests.infra.system import InfraError

TEST_IMAGE = "gpudoctor-test/busybox-glibc:latest"
GPUDOCTOR_RUNTIME = "gpudoctor"


def _unavailable(what: str, reason: str, require_env: str) -> NoReturn:
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{what} is required ({require_env}=1) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason} (set {require_env}=1 to make this a failure)")


@pytest.fixture(scope="session")
def test_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox + host glibc root filesystem directory (nothing NVIDIA in it). Treat as read-only."""
    try:
        return build_rootfs(tmp_path_factory.mktemp("rootfs") / "busybox-glibc")
    except InfraError as exc:
        _unavailable("the busybox + glibc test rootfs", str(exc), "GPUDOCTOR_REQUIRE_DOCKER")


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerDaemon]:
    """A private dockerd for the session, with runtime "gpudoctor" -> gpudoctor-runtime when installed.

    daemon.runtimes tells which runtimes were registered. Tests that edit daemon.json must restore it
    (or use their own start_dockerd()) since the daemon is shared by the whole session.
    """
    if dockerd_binary() is None:
        _unavailable(
            "dockerd", "dockerd is not installed (apt-get install docker.io)", "GPUDOCTOR_REQUIRE_DOCKER"
        )
    if os.geteuid() != 0:
        _unavailable("dockerd", "a private dockerd needs root", "GPUDOCTOR_REQUIRE_DOCKER")
    runtimes: dict[str, dict[str, Any]] = {}
    shim = shutil.which("gpudoctor-runtime")
    if shim is not None:
        runtimes[GPUDOCTOR_RUNTIME] = {"path": os.path.abspath(shim)}
    try:
        daemon = start_dockerd(tmp_path_factory.mktemp("dockerd"), runtimes=runtimes)
    except InfraError as exc:
        _unavailable("dockerd", str(exc), "GPUDOCTOR_REQUIRE_DOCKER")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def test_image(dockerd: DockerDaemon, test_rootfs: Path) -> str:
    """Tag of the busybox + glibc image in the session dockerd (CMD ["sh"])."""
    return import_image(dockerd, test_rootfs, TEST_IMAGE)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """Rootful podman with private storage for the session (see tests.infra.podman)."""
    if podman_binary() is None:
        _unavailable("podman", "podman is not installed (apt-get install podman)", "GPUDOCTOR_REQUIRE_PODMAN")
    if os.geteuid() != 0:
        _unavailable("podman", "rootful podman needs root", "GPUDOCTOR_REQUIRE_PODMAN")
    try:
        pm = start_podman(tmp_path_factory.mktemp("podman"))
    except InfraError as exc:
        _unavailable("podman", str(exc), "GPUDOCTOR_REQUIRE_PODMAN")
    try:
        yield pm
    finally:
        pm.cleanup()


@pytest.fixture(scope="session")
def podman_test_image(podman: Podman, test_rootfs: Path) -> str:
    """Tag of the busybox + glibc image in the session podman storage."""
    return podman.import_image(test_rootfs, TEST_IMAGE)
