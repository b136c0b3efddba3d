"""docker-runtime against the real test dockerd: apply, SIGHUP, `docker info` lists the runtime, and a GPU
container (the simulated driver) runs through it.

The fix finds the daemon behind ``--docker-host`` (its PID from the socket's peer credentials) and edits
the daemon.json that daemon was started with (``--config-file`` on its command line), exactly as it does
on a real host; nothing outside the test daemon's own directory is touched. daemon.json is restored after.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpudoctor.engine.settings import Settings, render_settings
from tests.engine.conftest import kit_host  # noqa: F401  (the session's simulated host driver)
from tests.engine.engine_kit import CONTAINER_PROBE, probe_smi
from tests.infra.dockerd import DockerDaemon
from tests.kit.driver_root import DriverRootInfo

pytestmark = [pytest.mark.docker, pytest.mark.root]

KEPT = {"labels": ["gpudoctor.test=fix-live"], "debug": False, "max-concurrent-downloads": 2}


@pytest.fixture
def daemon_without_gpudoctor(dockerd: DockerDaemon) -> Iterator[DockerDaemon]:
    """The session daemon with no `gpudoctor` runtime and a few keys the fix must keep; restored after."""
    original = dockerd.config_path.read_bytes()
    config = dockerd.read_config()
    runtimes = {k: v for k, v in config.get("runtimes", {}).items() if k != "gpudoctor"}
    config = {**config, **KEPT, "runtimes": runtimes}
    dockerd.write_config(config)
    dockerd.reload()
    assert "gpudoctor" not in dockerd.info()["Runtimes"]
    backups = Path("/var/backups/gpudoctor") / str(dockerd.config_path.parent).lstrip("/")
    try:
        yield dockerd
    finally:
        dockerd.config_path.write_bytes(original)
        dockerd.reload()
        shutil.rmtree(backups, ignore_errors=True)  # the live root's backups of this test daemon's file
        for parent in backups.parents:  # and the directories made for them, if nothing else is there
            if parent == Path("/var/backups"):
                break
            with contextlib.suppress(OSError):
                parent.rmdir()


def _fix(daemon: DockerDaemon, base: Path, settings: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudoctor", "fix", "docker-runtime", "--yes", "--docker-host", daemon.host,
         "--runtime", "gpudoctor", "--runtime-path", str(base / "gpudoctor-runtime"),
         "--runtime-config", str(settings)],
        capture_output=True, text=True, timeout=180,
    )


def test_apply_sighup_and_run_a_gpu_container(
    daemon_without_gpudoctor: DockerDaemon, test_image: str, kit_host: DriverRootInfo, tmp_path: Path  # noqa: F811
) -> None:
    daemon = daemon_without_gpudoctor
    settings = tmp_path / "runtime.toml"
    settings.write_text(render_settings(Settings(runc="/usr/sbin/runc", driver_root=str(kit_host.root),
                                                 cache_dir=str(tmp_path / "cache"))))
    before = daemon.read_config()

    res = _fix(daemon, tmp_path, settings)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"$ kill -HUP {daemon.pid}" in res.stdout
    assert f"dockerd (PID {daemon.pid}) reloaded: `docker info` lists the gpudoctor runtime" in res.stdout

    info = daemon.info()
    assert info["Runtimes"]["gpudoctor"]["path"] == str(tmp_path / "gpudoctor-runtime")
    after = daemon.read_config()
    for key, value in before.items():  # every other key and value kept, in order
        if key != "runtimes":
            assert after[key] == value
    assert list(after)[: len(before)] == list(before)
    for name, entry in before["runtimes"].items():
        assert after["runtimes"][name] == entry
    backups = list((Path("/var/backups/gpudoctor") / str(daemon.config_path).lstrip("/")).parent.glob(
        daemon.config_path.name + ".*"))
    assert any(json.loads(b.read_text()) == before for b in backups)

    # A plain container runs through the launcher straight to runc; a GPU container through the shim.
    plain = daemon.run(test_image, "echo", "plain-ok", runtime="gpudoctor")
    assert plain.stdout.strip() == "plain-ok"
    gpu = daemon.run(test_image, "sh", "-c", CONTAINER_PROBE, runtime="gpudoctor",
                     options=["-e", "NVIDIA_VISIBLE_DEVICES=all"])
    assert probe_smi(gpu.stdout) == [
        f"GPU {i}: {g.name} (UUID: {g.uuid})" for i, g in enumerate(kit_host.spec.gpus)
    ]

    again = _fix(daemon, tmp_path, settings)
    assert again.returncode == 0, again.stdout
    assert "nothing to do: already in place" in again.stdout
    assert daemon.read_config() == after
