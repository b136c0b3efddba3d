"""A snapshot taken while the real test dockerd runs replays its `runtime.docker_daemon` finding.

The fake host is the healthy scenario (simulated driver, toolkit files); the daemon is the session's
private dockerd, reached through DOCKER_HOST as a user would. The replay runs in another process with no
DOCKER_HOST and no fake /dev: the daemon is never asked again, the recorded probe answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.dockerd import DockerDaemon
from tests.scenarios.builder import build_host, fake_dev_env, healthy_host
from tests.scenarios.hosts import REPO_ROOT, require_root
from tests.snapshot.helpers import bundle_bytes, differences, manifest_of

pytestmark = [pytest.mark.docker, pytest.mark.root]

DAEMON = "runtime.docker_daemon"


def _gpudoctor(args: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpudoctor", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_snapshot_with_dockerd_replays_its_daemon_finding(dockerd: DockerDaemon, tmp_path: Path) -> None:
    require_root()
    root = build_host(tmp_path / "hosts", healthy_host(2, name="docker-host"))
    env = {**os.environ, **fake_dev_env(root), "DOCKER_HOST": dockerd.host}
    archive = tmp_path / "with-dockerd.tar.gz"
    made = _gpudoctor(["snapshot", "-o", str(archive), "--root", str(root)], env)
    assert made.returncode == 0, made.stderr
    live = _gpudoctor(["--check", "--json", "--root", str(root)], env)
    live_report = json.loads(live.stdout)

    replay_env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "GPUDOCTOR_FAKE_DEV_ROOT")}
    (tmp_path / "elsewhere").mkdir()
    replay = _gpudoctor(["--check", "--json", "--root", str(archive)], {**replay_env, "PYTHONPATH": str(REPO_ROOT)},
                        cwd=tmp_path / "elsewhere")
    replay_report = json.loads(replay.stdout)
    assert replay.returncode == live.returncode, replay.stderr

    live_daemon = next(c for c in live_report["checks"] if c["id"] == DAEMON)
    replayed = next(c for c in replay_report["checks"] if c["id"] == DAEMON)
    info = dockerd.info()
    # The daemon answered when the bundle was made: a real finding, not a skip.
    assert live_daemon["status"] in ("pass", "warn", "fail"), live_daemon
    assert f"Docker {info['ServerVersion']} at {dockerd.host} answers" in live_daemon["summary"]
    assert f"endpoint: {dockerd.host} (from $DOCKER_HOST)" in live_daemon["evidence"]
    for key in ("status", "summary", "evidence", "remedy", "fixes"):
        assert replayed[key] == live_daemon[key], key
    assert differences(live_report, replay_report) == []

    data = bundle_bytes(archive)
    probe = json.loads(data["probes/docker.json"])
    assert (probe["status"], probe["server_version"]) == ("ok", info["ServerVersion"])
    docker_info = json.loads(data["diagnostics/docker-info.json"])
    assert docker_info["ServerVersion"] == info["ServerVersion"]
    assert docker_info["ID"] == info["ID"]
    sources = {m["name"]: m["source"] for m in manifest_of(archive)["members"]}
    assert sources["diagnostics/docker-info.json"]["api"] == f"GET {dockerd.host}/info"
    assert sources["probes/docker.json"]["probe"] == "docker"


def test_snapshot_path_imports_the_docker_sdk_only_through_the_probe(dockerd: DockerDaemon, tmp_path: Path) -> None:
    """Offline, nothing imports docker or textual; live, only the probe module's lazy import brings docker in."""
    require_root()
    root = build_host(tmp_path / "hosts", healthy_host(2, name="imports"))
    code = (
        "import sys\n"
        "from gpudoctor.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('MODULES', 'textual' in sys.modules, 'docker' in sys.modules, rc)\n"
    )
    env = {**os.environ, "DOCKER_HOST": dockerd.host}
    offline = subprocess.run([sys.executable, "-c", code, "snapshot", "-o", str(tmp_path / "o.tar.gz"), "--root",
                              str(root), "--offline"], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=300)
    assert "MODULES False False 0" in offline.stdout, offline.stderr
    live = subprocess.run([sys.executable, "-c", code, "snapshot", "-o", str(tmp_path / "l.tar.gz"), "--root",
                           str(root)], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert "MODULES False" in live.stdout, live.stderr


def test_snapshot_of_this_machine_replays_the_daemon_finding(dockerd: DockerDaemon, tmp_path: Path) -> None:
    """On the real root the check also reads dockerd's process (found through SO_PEERCRED): that must replay."""
    from gpudoctor.checks.base import CheckContext, CheckOptions
    from gpudoctor.checks.live_docker import docker_daemon_finding
    from gpudoctor.report.model import Report
    from gpudoctor.snapshot.collect import recording_facts, write_bundle
    from gpudoctor.snapshot.replay import open_snapshot

    facts = recording_facts("/", docker_host=dockerd.host)
    options = CheckOptions(docker_host=dockerd.host)
    live = docker_daemon_finding(CheckContext(host=facts, options=options, results={}))
    assert any(e.startswith(f"/proc/{dockerd.pid}: ") for e in live.evidence), live
    archive = write_bundle(tmp_path / "self.tar.gz", facts=facts,
                           report=Report(checks=[], host={}, generated_at="", duration_ms=0.0)).path
    with open_snapshot(str(archive)) as replay_facts:
        replayed = docker_daemon_finding(CheckContext(host=replay_facts,
                                                      options=CheckOptions(offline=replay_facts.offline),
                                                      results={}))
    assert (replayed.status, replayed.summary, replayed.evidence, replayed.remedy, replayed.fixes) == (
        live.status, live.summary, live.evidence, live.remedy, live.fixes)
