"""runtime.docker_daemon against real dockerds (and against endpoints where no daemon answers).

Tests that read dockerd's process use the real ``/`` as the root (its /proc is where the daemons run); the
check's file reads then look at the daemon's own config file (named by ``--config-file`` on its command
line), which belongs to the test's private daemon.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpudoctor.checks.base import CheckOptions, Status
from gpudoctor.checks.live_docker import docker_daemon_finding, docker_state
from gpudoctor.host.daemon_process import find_daemon
from gpudoctor.host.docker_probe import DaemonProbe, resolve_endpoint
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot
from tests.infra.dockerd import DockerDaemon
from tests.live.conftest import HOOK, TEST_IMAGE, HookDaemon, LiveHost, PlainDaemon, write_stand_in_hook
from tests.live.helpers import context, doctor, options

pytestmark = [pytest.mark.docker, pytest.mark.root]

DAEMON = "runtime.docker_daemon"
REPO = Path(__file__).resolve().parents[2]


def test_reports_version_runtimes_and_cgroups(live_host: LiveHost, kit_daemon: DockerDaemon) -> None:
    f = docker_daemon_finding(context(live_host.root, options(kit_daemon, TEST_IMAGE)))
    info = kit_daemon.info()
    assert f.status is Status.PASS, f
    assert f"Docker {info['ServerVersion']} at {kit_daemon.host} answers" in f.summary
    assert "GPU routes: --runtime gpudoctor" in f.summary
    assert f"endpoint: {kit_daemon.host} (from --docker-host)" in f.evidence
    assert any(e.startswith("docker info: runtimes gpudoctor (") for e in f.evidence)
    assert f"docker info: cgroup driver {info['CgroupDriver']}, cgroup v{info['CgroupVersion']}" in f.evidence
    # The fake root has no /proc of dockerd: the check says what it could not see, instead of guessing.
    assert any("dockerd's process is not visible in" in e for e in f.evidence)


def test_finds_dockerd_and_reads_its_path(plain_daemon: PlainDaemon) -> None:
    daemon = plain_daemon.daemon
    f = docker_daemon_finding(context("/", options(daemon, TEST_IMAGE)))
    assert any(e.startswith(f"/proc/{daemon.pid}: ") for e in f.evidence), f
    path_line = next(e for e in f.evidence if e.startswith(f"dockerd's PATH (/proc/{daemon.pid}/environ): "))
    assert str(plain_daemon.late_dir) in path_line
    assert f"{HOOK}: not on dockerd's PATH (no `--gpus`; runtimes may still attach GPUs)" in f.evidence
    assert any(e.startswith(f"{daemon.config_path}: the file the running dockerd reads") for e in f.evidence)
    # No hook and no GPU runtime: this daemon cannot attach a GPU by itself.
    assert f.status is Status.WARN and "cannot attach a GPU by itself" in f.summary
    assert f.remedy and "gpudoctor fix docker-runtime" in f.remedy


def test_hook_on_dockerd_path_gives_the_gpus_route(hook_daemon: HookDaemon) -> None:
    ctx = context("/", options(hook_daemon.daemon, TEST_IMAGE))
    f = docker_daemon_finding(ctx)
    assert f.status is Status.PASS, f
    assert f"{HOOK}: {hook_daemon.hook} (on dockerd's PATH)" in f.evidence
    assert "GPU routes: --gpus all" in f.summary
    routes = docker_state(ctx).routes(ctx)
    assert routes[0].route == "gpus" and not routes[0].tentative


@pytest.fixture
def restore_config(plain_daemon: PlainDaemon) -> Iterator[Path]:
    daemon = plain_daemon.daemon
    saved, st = daemon.read_config(), daemon.config_path.stat()
    try:
        yield daemon.config_path
    finally:
        # A reload keeps the runtimes it knows unless the file sets "runtimes": say explicitly that there are none.
        daemon.write_config({"runtimes": {}, **saved})
        daemon.reload()
        os.utime(daemon.config_path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _later_than_start(daemon: DockerDaemon, path: Path) -> None:
    # The edit must be later than dockerd's start beyond /proc's clock-tick resolution; make that explicit
    # rather than depend on how long the fixture took.
    lookup = find_daemon(HostRoot("/"), names=("dockerd",), socket_path=str(daemon.socket_path))
    assert lookup.process is not None and lookup.process.start_time is not None
    moment = max(path.stat().st_mtime, lookup.process.start_time + 5)
    os.utime(path, (moment, moment))


def test_daemon_json_changed_after_start_needs_a_restart(
    plain_daemon: PlainDaemon, restore_config: Path
) -> None:
    daemon = plain_daemon.daemon
    shim = REPO / "gpudoctor" / "engine" / "entry.py"
    daemon.write_config({**daemon.read_config(), "runtimes": {"nvidia": {"path": str(shim)}}})
    _later_than_start(daemon, restore_config)
    f = docker_daemon_finding(context("/", options(daemon, TEST_IMAGE)))
    assert f.status is Status.FAIL, f
    assert f"dockerd started before {restore_config} last changed and has not applied it" in f.summary
    assert "runtime 'nvidia'" in f.summary
    assert f.remedy and "`sudo systemctl restart docker`" in f.remedy

    # After a reload the runtimes are applied: only the settings that need a restart are in doubt.
    daemon.reload()
    _later_than_start(daemon, restore_config)
    f = docker_daemon_finding(context("/", options(daemon, TEST_IMAGE)))
    assert f.status is Status.WARN, f
    assert "its runtimes are applied (it was reloaded)" in f.summary


def test_hook_installed_after_dockerd_started(plain_daemon: PlainDaemon, tmp_path: Path) -> None:
    hook = write_stand_in_hook(plain_daemon.late_dir, tmp_path / "calls.log")
    try:
        ctx = context("/", options(plain_daemon.daemon, TEST_IMAGE))
        f = docker_daemon_finding(ctx)
        routes = docker_state(ctx).routes(ctx)
    finally:
        hook.unlink()
    assert f.status is Status.FAIL, f
    assert f"{hook} appeared after dockerd started" in f.summary
    assert 'could not select device driver "" with capabilities: [[gpu]]' in f.summary
    assert f.remedy and "sudo systemctl restart docker" in f.remedy
    assert [r.route for r in routes] == [
        "direct"
    ]  # `--gpus` is not offered by a daemon that lacks the driver


# -- daemons that do not answer ----------------------------------------------------------------------------


def test_no_socket_is_skip_with_the_start_command(live_host: LiveHost, tmp_path: Path) -> None:
    results, _ = doctor(
        live_host.root,
        options(None, TEST_IMAGE, docker_host=f"unix://{tmp_path}/docker.sock"),
        DAEMON,
        "parity.nvidia_smi",
        env=live_host.env,
    )
    f = results[DAEMON]
    assert f.status is Status.SKIP
    assert f"no Docker daemon at unix://{tmp_path}/docker.sock (from --docker-host)" in f.summary
    assert f.remedy and "sudo systemctl start docker" in f.remedy
    assert results["parity.nvidia_smi"].status is Status.SKIP


def test_refused_socket_is_skip(live_host: LiveHost, tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening: what a crashed daemon leaves behind
    f = docker_daemon_finding(
        context(live_host.root, options(None, TEST_IMAGE, docker_host=f"unix://{path}"))
    )
    assert f.status is Status.SKIP
    assert "is not running" in f.summary and "nothing listens" in f.summary
    assert f.remedy and "journalctl -u docker" in f.remedy


def test_hung_daemon_is_skip_not_a_hang(live_host: LiveHost, tmp_path: Path) -> None:
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)  # accepts connections (backlog) but never answers
    try:
        opts = options(None, TEST_IMAGE, docker_host=f"unix://{path}", timeout=1.0)
        f = docker_daemon_finding(context(live_host.root, opts))
    finally:
        server.close()
    assert f.status is Status.SKIP
    assert "does not answer" in f.summary and "within 1s" in f.summary


def test_permission_denied_is_skip_with_the_docker_group_fix(
    live_host: LiveHost, plain_daemon: PlainDaemon
) -> None:
    # The probe runs as nobody against the root-owned socket: a real EACCES. Its record is then replayed.
    code = (
        "import json,sys; from gpudoctor.host.docker_probe import DockerEndpoint, probe_daemon; "
        "p = probe_daemon(DockerEndpoint(url=sys.argv[1], source='$DOCKER_HOST'), timeout=5); "
        "print(json.dumps(p.to_dict())); print(sorted(m for m in sys.modules if m.split('.')[0] == 'docker'))"
    )
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", code, plain_daemon.daemon.host],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        user=65534,
        group=65534,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    probe = json.loads(lines[0])
    assert probe["status"] == "permission"
    assert lines[1] == "[]"  # the SDK was never imported
    facts = HostFacts(root=HostRoot(live_host.root), recorded_probes={"docker": probe})
    from gpudoctor.checks.base import CheckContext

    f = docker_daemon_finding(CheckContext(host=facts, options=CheckOptions(), results={}))
    assert f.status is Status.SKIP
    assert "permission denied while trying to connect to the Docker daemon socket" in f.summary
    assert f.remedy and "sudo usermod -aG docker $USER" in f.remedy
    # The socket's mode and owner, or (here, under pytest's 0700 tmp dir) why they cannot be seen.
    assert any("srw" in e or "not searchable" in e for e in f.evidence), f.evidence


# -- which daemon --------------------------------------------------------------------------------------------


def test_endpoint_order_and_docker_desktop_context(tmp_path: Path) -> None:
    import hashlib

    config = tmp_path / "dockercfg"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"desktop-linux").hexdigest()
    meta.mkdir(parents=True)
    (config / "config.json").write_text(json.dumps({"currentContext": "desktop-linux"}))
    desktop_sock = f"unix://{tmp_path}/.docker/desktop/docker.sock"
    (meta / "meta.json").write_text(
        json.dumps({"Name": "desktop-linux", "Endpoints": {"docker": {"Host": desktop_sock}}})
    )
    env = {"DOCKER_CONFIG": str(config)}
    ep = resolve_endpoint(None, environ=env)
    assert (ep.url, ep.context, ep.is_desktop) == (desktop_sock, "desktop-linux", True)
    assert "docker context 'desktop-linux'" in ep.source
    assert resolve_endpoint(None, environ={**env, "DOCKER_HOST": "unix:///x.sock"}).url == "unix:///x.sock"
    assert (
        resolve_endpoint("unix:///y.sock", environ={**env, "DOCKER_HOST": "unix:///x.sock"}).source
        == "--docker-host"
    )
    assert (
        resolve_endpoint(None, environ={"DOCKER_CONFIG": str(tmp_path / "none")}).url
        == "unix:///var/run/docker.sock"
    )


def test_docker_desktop_daemon_is_a_failure(live_host: LiveHost) -> None:
    probe = DaemonProbe(
        url="unix:///home/u/.docker/desktop/docker.sock",
        source="docker context 'desktop-linux'",
        status="ok",
        server_version="27.3.1",
        operating_system="Docker Desktop",
        runtimes={"runc": "runc"},
        default_runtime="runc",
    )
    facts = HostFacts(root=HostRoot(live_host.root), recorded_probes={"docker": probe.to_dict()})
    from gpudoctor.checks.base import CheckContext

    f = docker_daemon_finding(CheckContext(host=facts, options=CheckOptions(), results={}))
    assert f.status is Status.FAIL
    assert "this is Docker Desktop" in f.summary
    assert f.remedy and "docker context use default" in f.remedy


# -- the headless path never imports the SDK without a daemon ---------------------------------------------


_IMPORTS = (
    "import sys; from gpudoctor.cli import main; code = main(sys.argv[1:]); "
    "sys.stderr.write('\\nSDK-MODULES=' + ','.join(sorted(m for m in sys.modules "
    "if m.split('.')[0] in ('docker', 'requests', 'urllib3', 'textual'))) + '\\n'); sys.exit(code)"
)


@pytest.mark.parametrize("extra", [["--offline"], ["--docker-host", "unix:///nonexistent/docker.sock"], []])
def test_headless_check_without_a_daemon_never_imports_the_sdk(live_host: LiveHost, extra: list[str]) -> None:
    env = {**os.environ, **live_host.env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTS, "--check", "--json", "--root", str(live_host.root), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert {c["id"]: c["status"] for c in report["checks"]}[DAEMON] == "skip"
    assert proc.stderr.rstrip().splitlines()[-1] == "SDK-MODULES=", proc.stderr


def test_probe_is_thread_safe_and_runs_once(live_host: LiveHost, kit_daemon: DockerDaemon) -> None:
    ctx = context(live_host.root, options(kit_daemon, TEST_IMAGE))
    states = []
    threads = [threading.Thread(target=lambda: states.append(docker_state(ctx))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in states}) == 1
    assert ctx.host.probe_log["docker"]["status"] == "ok"
