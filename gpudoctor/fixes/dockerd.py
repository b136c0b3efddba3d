"""Find the running dockerd that a fix must configure, and ask it what it knows.

The daemon.json to edit is the one the daemon reads: ``--config-file`` on its command line, else
``/etc/docker/daemon.json`` (rootful) or ``$XDG_CONFIG_HOME/docker/daemon.json`` (rootless). The daemon is
the one behind the Docker socket gpudoctor talks to (``--docker-host``, ``$DOCKER_HOST``, the default
socket): its PID comes from the socket's peer credentials (``SO_PEERCRED``, as NVIDIA's installer does),
then the pidfile, then a scan of /proc. No Docker SDK: a few lines of HTTP over the unix socket suffice.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

from gpudoctor.host.root import HostRoot

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_PIDFILE = "/var/run/docker.pid"
DEFAULT_CONFIG = "/etc/docker/daemon.json"


@dataclass(slots=True, frozen=True, kw_only=True)
class Dockerd:
    """A running dockerd: its PID, argv, owner, and the daemon.json it reads."""

    pid: int
    argv: tuple[str, ...]
    uid: int
    config_file: str
    socket_path: str | None

    def flag_values(self, name: str) -> list[str]:
        """Values of ``--name X`` / ``--name=X`` on the daemon's command line."""
        out: list[str] = []
        args = self.argv[1:]
        for i, arg in enumerate(args):
            if arg == name and i + 1 < len(args):
                out.append(args[i + 1])
            elif arg.startswith(name + "="):
                out.append(arg[len(name) + 1:])
        return out


def socket_path_of(docker_host: str | None) -> str | None:
    """The unix socket path for a Docker host URL (None for tcp:// and other transports)."""
    host = docker_host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if host.startswith("/"):
        return host
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def docker_info(socket_path: str, *, timeout: float = 5.0) -> dict[str, Any] | None:
    """``GET /info`` from the daemon on `socket_path`; None when it does not answer."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        conn.request("GET", "/info")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        data = json.loads(body)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def runtimes_known(info: dict[str, Any] | None) -> set[str] | None:
    """Runtime names the daemon has loaded, from /info; None when unknown."""
    if info is None or not isinstance(info.get("Runtimes"), dict):
        return None
    return set(info["Runtimes"])


def peer_pid(socket_path: str) -> int | None:
    """PID of the process that listens on a unix socket (SO_PEERCRED); None when it cannot be asked."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(socket_path)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid if pid > 0 else None


def _proc_argv(root: HostRoot, pid: int) -> tuple[str, ...] | None:
    raw = root.try_read_bytes(f"/proc/{pid}/cmdline")
    if not raw:
        return None
    return tuple(a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0"))


def _is_dockerd(argv: tuple[str, ...] | None) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "dockerd"  # type: ignore[index]


def _proc_uid(root: HostRoot, pid: int) -> int:
    status = root.try_read_text(f"/proc/{pid}/status") or ""
    for line in status.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            if len(fields) > 1 and fields[1].isdigit():
                return int(fields[1])
    return 0


def _proc_env(root: HostRoot, pid: int) -> dict[str, str]:
    raw = root.try_read_bytes(f"/proc/{pid}/environ") or b""
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            env[key] = value
    return env


def _config_file(root: HostRoot, pid: int, argv: tuple[str, ...], uid: int) -> str:
    probe = Dockerd(pid=pid, argv=argv, uid=uid, config_file="", socket_path=None)
    given = probe.flag_values("--config-file")
    if given:
        path = given[-1]
        if not path.startswith("/"):
            cwd = (root.readlink(f"/proc/{pid}/cwd") if root.is_live_root else None) or "/"
            path = os.path.normpath(os.path.join(cwd, path))
        return path
    if uid == 0:
        return DEFAULT_CONFIG
    # Rootless dockerd: ~/.config/docker/daemon.json of the user running it.
    env = _proc_env(root, pid)
    base = env.get("XDG_CONFIG_HOME") or (env.get("HOME", "") + "/.config")
    return f"{base}/docker/daemon.json"


def _listens_on(argv: tuple[str, ...], socket_path: str | None) -> bool:
    probe = Dockerd(pid=0, argv=argv, uid=0, config_file="", socket_path=None)
    hosts = probe.flag_values("--host") + probe.flag_values("-H")
    if not hosts:
        return socket_path in (None, DEFAULT_SOCKET, "/run/docker.sock")
    return any(socket_path_of(h) == socket_path for h in hosts) or (
        socket_path in (DEFAULT_SOCKET, "/run/docker.sock") and any(h.startswith("fd://") for h in hosts)
    )


def find_dockerd(root: HostRoot, docker_host: str | None) -> Dockerd | None:
    """The running dockerd behind `docker_host` on the live root; None when none is found.

    Only meaningful when `root` is the live ``/`` (other roots have no processes of their own).
    """
    if not root.is_live_root:
        return None
    sock = socket_path_of(docker_host)
    candidates: list[int] = []
    if sock is not None:
        pid = peer_pid(sock)
        if pid is not None:
            candidates.append(pid)
    if docker_host is None or sock in (DEFAULT_SOCKET, "/run/docker.sock"):
        text = root.try_read_text(DEFAULT_PIDFILE)
        if text and text.strip().isdigit():
            candidates.append(int(text.strip()))
    for pid in candidates:
        argv = _proc_argv(root, pid)
        if argv is not None and _is_dockerd(argv):
            uid = _proc_uid(root, pid)
            return Dockerd(pid=pid, argv=argv, uid=uid, config_file=_config_file(root, pid, argv, uid),
                           socket_path=sock)
    # Socket-activated daemons (systemd holds the socket) and odd set-ups: scan /proc.
    for name in root.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        argv = _proc_argv(root, pid)
        if argv is None or not _is_dockerd(argv) or not _listens_on(argv, sock):
            continue
        uid = _proc_uid(root, pid)
        return Dockerd(pid=pid, argv=argv, uid=uid, config_file=_config_file(root, pid, argv, uid), socket_path=sock)
    return None
