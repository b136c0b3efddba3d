"""The live half of runtime.containerd against real containerd daemons with the CRI plugin enabled.

Each test starts its own containerd (own root, state and socket); nothing is written outside tmp dirs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpudoctor.checks import load_checks
from gpudoctor.checks.base import CheckOptions, Status
from gpudoctor.checks.live_containerd import containerd_live
from gpudoctor.host import runtime_facts as rf
from gpudoctor.host.daemon_process import find_daemon
from gpudoctor.host.parsers.configs import read_containerd_config
from gpudoctor.host.root import HostRoot
from tests.infra.system import kill_and_wait, log_tail
from tests.live.helpers import context

pytestmark = [pytest.mark.root]

RUNC_RUNTIME = """
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
"""
NVIDIA_RUNTIME = """
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
  BinaryName = "/usr/bin/nvidia-container-runtime"
"""


def _config(base: Path, address: str, body: str) -> str:
    return f"""version = 2
root = {json.dumps(str(base / "root"))}
state = {json.dumps(str(base / "state"))}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = {json.dumps(address)}
[ttrpc]
  address = {json.dumps(address + ".ttrpc")}
[plugins."io.containerd.internal.v1.opt"]
  path = {json.dumps(str(base / "opt"))}
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = {json.dumps(str(base / "cni-bin"))}
  conf_dir = {json.dumps(str(base / "cni-conf"))}
{body}"""


class Containerd:
    def __init__(self, base: Path, config: Path, socket_path: Path) -> None:
        self.base, self.config, self.socket_path = base, config, socket_path
        self.log = base / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        binary = shutil.which("containerd", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")
        if binary is None:
            pytest.skip("containerd is not installed")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log_tail(self.log)
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket_path))
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"containerd did not start:\n{log_tail(self.log)}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_and_wait([self.proc.pid])
            self.proc.wait()


@pytest.fixture
def make_containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Containerd]]:
    if os.geteuid() != 0:
        pytest.skip("a private containerd needs root")
    started: list[Containerd] = []

    def make(body: str, *, socket_path: Path | None = None, address: str | None = None) -> Containerd:
        base = Path(tmp_path_factory.mktemp("ctd"))
        sock = socket_path or base / "c.sock"
        sock.parent.mkdir(parents=True, exist_ok=True)
        config = base / "config.toml"
        config.write_text(_config(base, address or str(sock), body))
        # The daemon itself must listen on the real path even when the config names a host path.
        real = base / "real-config.toml"
        real.write_text(_config(base, str(sock), body))
        daemon = Containerd(base, real if address else config, sock)
        daemon.start()
        started.append(daemon)
        return daemon

    yield make
    for d in started:
        d.stop()


def _setup(path: Path) -> rf.ContainerdSetup:
    cfg = read_containerd_config(HostRoot("/"), str(path))
    return rf.ContainerdSetup(flavor="containerd", loaded=rf.Loaded(path=str(path), exists=True, value=cfg))


def test_config_changed_after_start_leaves_nvidia_unregistered(
    make_containerd: Callable[..., Containerd],
) -> None:
    d = make_containerd(RUNC_RUNTIME)
    # nvidia-ctk adds the runtime; nobody restarts containerd.
    d.config.write_text(d.config.read_text() + NVIDIA_RUNTIME)
    proc = find_daemon(HostRoot("/"), names=("containerd",), socket_path=str(d.socket_path)).process
    assert proc is not None and proc.start_time is not None
    moment = max(d.config.stat().st_mtime, proc.start_time + 5)  # beyond /proc's start-time resolution
    os.utime(d.config, (moment, moment))
    problems, ctx_lines = containerd_live(context("/", CheckOptions(timeout=20)), [_setup(d.config)])
    assert [p.status for p in problems] == [Status.FAIL], problems
    assert f"{d.config} changed after containerd started" in problems[0].summary
    assert "runtime 'nvidia' is not registered in the running daemon" in problems[0].summary
    assert problems[0].remedy == "`sudo systemctl restart containerd`."
    assert any(line.startswith(f"/proc/{d.pid}: containerd reads {d.config}") for line in ctx_lines)
    assert any("CRI plugin io.containerd.grpc.v1.cri: ok" in line for line in ctx_lines), ctx_lines


def test_cri_plugin_error_is_reported_with_containerds_message(
    make_containerd: Callable[..., Containerd],
) -> None:
    d = make_containerd(
        RUNC_RUNTIME + '\n[plugins."io.containerd.grpc.v1.cri".containerd]\n'
        '  default_runtime_name = "nvidia"\n'
    )
    problems, _ = containerd_live(context("/", CheckOptions(timeout=20)), [_setup(d.config)])
    assert [p.status for p in problems] == [Status.FAIL], problems
    assert "CRI plugin is in state 'error'" in problems[0].summary
    assert 'default_runtime_name = "nvidia"' in problems[0].summary
    assert any("plugins ls" in e for e in problems[0].evidence)


def test_offline_skips_the_socket_but_not_the_process(make_containerd: Callable[..., Containerd]) -> None:
    d = make_containerd(RUNC_RUNTIME)
    _, ctx_lines = containerd_live(context("/", CheckOptions(offline=True)), [_setup(d.config)])
    assert any(line.startswith(f"/proc/{d.pid}: containerd reads") for line in ctx_lines)
    assert not any("CRI plugin" in line for line in ctx_lines)


def test_runtime_containerd_check_shows_the_live_state_under_a_root(
    make_containerd: Callable[..., Containerd], tmp_path: Path
) -> None:
    # A host tree at `root` whose /etc/containerd/config.toml names the host socket /run/containerd/...; the
    # daemon listens at <root>/run/containerd/containerd.sock, which is that host path seen under --root.
    root = tmp_path / "r"
    sock = root / "run" / "containerd" / "containerd.sock"
    if len(str(sock)) > 100:
        pytest.skip("the tmp path is too long for a unix socket")
    d = make_containerd(
        RUNC_RUNTIME + NVIDIA_RUNTIME, socket_path=sock, address="/run/containerd/containerd.sock"
    )
    etc = root / "etc" / "containerd"
    etc.mkdir(parents=True)
    shutil.copy(d.base / "config.toml", etc / "config.toml")
    spec = load_checks()["runtime.containerd"]
    f = spec.func(context(root, CheckOptions(timeout=20)))
    assert any(
        e.startswith("/run/containerd/containerd.sock: containerd ") and "CRI plugin" in e and ": ok" in e
        for e in f.evidence
    ), f


def _fake_proc(root: Path, *, pid: int, socket_host_path: str, cmdline: list[str], btime: int) -> None:
    """A /proc tree for one containerd process that listens on `socket_host_path` (as the kernel lays it out)."""
    proc = root / "proc"
    (proc / str(pid) / "fd").mkdir(parents=True)
    (proc / "net").mkdir()
    (proc / "stat").write_text(f"cpu  1 2 3 4\nbtime {btime}\n")
    (proc / "net" / "unix").write_text(
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        f"0000000000000000: 00000002 00000000 00010000 0001 01 4242 {socket_host_path}\n"
    )
    (proc / str(pid) / "comm").write_text("containerd\n")
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in cmdline) + b"\0")
    fields = ["S", "1"] + ["0"] * 17 + ["500"]  # field 22 (starttime) = 500 ticks after boot
    (proc / str(pid) / "stat").write_text(f"{pid} (containerd) {' '.join(fields)} 0 0\n")
    (proc / str(pid) / "fd" / "3").symlink_to("socket:[4242]")


def test_k3s_started_before_the_toolkit_and_template(tmp_path: Path) -> None:
    from gpudoctor.host.facts import HostFacts
    from tests.scenarios.runtime_fragments import executable, k3s_containerd, merge, write_tree

    root = tmp_path / "k3s-host"
    write_tree(
        root,
        merge(
            k3s_containerd(nvidia=False, template=True), {"/usr/bin/nvidia-container-runtime": executable()}
        ),
    )
    config = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
    _fake_proc(
        root,
        pid=77,
        socket_host_path="/run/k3s/containerd/containerd.sock",
        btime=1_000_000,
        cmdline=["containerd", "-c", config, "-a", "/run/k3s/containerd/containerd.sock"],
    )
    facts = HostFacts(root=HostRoot(root))
    setups = [s for s in rf.containerd_setups(facts) if s.flavor == "k3s"]
    assert setups and setups[0].template is not None
    ctx = context(root, CheckOptions(offline=True))
    problems, ctx_lines = containerd_live(ctx, setups)
    by_status = {p.status: p for p in problems}
    assert (
        "/proc/77: containerd reads "
        + config
        + " (found by it listens on /run/k3s/containerd/containerd.sock)"
        in ctx_lines
    )
    fail = by_status[Status.FAIL]
    assert "/usr/bin/nvidia-container-runtime was installed after k3s started" in fail.summary
    assert fail.remedy and "`sudo systemctl restart k3s`" in fail.remedy
    warn = by_status[Status.WARN]
    assert f"{config}.tmpl changed after k3s started" in warn.summary
