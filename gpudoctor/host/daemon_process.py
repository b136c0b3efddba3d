"""Find a running daemon (dockerd, containerd, k3s) in the root's ``/proc`` and read what it runs with.

Files say what a daemon is configured to do; its process says what it actually runs with: the command
line (``--config-file``), the PATH it looks programs up in (``/proc/<pid>/environ``), its uid (rootless)
and when it started, which tells whether it predates a config edit or a newly installed binary.

Everything is read under the HostRoot, so ``--root /host`` reads the host's ``/proc`` (a DaemonSet with
``hostPID``). Nothing here raises for what it finds: an unreadable file is a note, a missing process is
``None``. Only the few environment variables that decide lookups are kept (PATH, HOME, XDG_*): a daemon's
environment can hold secrets, so it is read without being recorded for snapshots and never stored whole.
"""

from __future__ import annotations

import os
import re
import stat as stat_mod
import time
from collections.abc import Iterable, Mapping
from typing import Any

from gpudoctor.host.parsers.procfs import flag_values
from gpudoctor.host.root import HostRoot
from gpudoctor.record import Record, field

# The environment variables a daemon's lookups depend on; nothing else from environ is kept.
KEPT_ENV = ("PATH", "HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "DOCKER_CONFIG")
# /proc start times come from btime (whole seconds) when /proc/uptime cannot be used; allow for it.
BTIME_SLACK_S = 1.0
UPTIME_SLACK_S = 0.05
_MAX_FDS = 4096


class DaemonProcess(Record):
    """A daemon's process as read from ``/proc/<pid>``.

    `env` holds only KEPT_ENV (None when environ could not be read: `env_error` says why). `start_time`
    is seconds since the epoch (None when unknown) and `start_slack` its uncertainty. `found_by` says
    how the process was identified (socket, pidfile, name).
    """

    pid: int
    comm: str
    cmdline: tuple[str, ...] = ()
    exe: str | None = None
    uid: int | None = None
    env: Mapping[str, str] | None = None
    env_error: str | None = None
    start_time: float | None = None
    start_slack: float = BTIME_SLACK_S
    found_by: str = ""

    def flag_values(self, *flags: str) -> list[str]:
        """Values of ``--flag=v`` / ``--flag v`` on the command line, in order."""
        return flag_values(self.cmdline[1:], *flags)

    @property
    def path_dirs(self) -> tuple[str, ...] | None:
        """The absolute directories of the daemon's PATH (None when its environment is unknown)."""
        if self.env is None:
            return None
        return tuple(d for d in self.env.get("PATH", "").split(":") if d.startswith("/"))

    def started_before(self, moment: float) -> bool | None:
        """True when the process started before `moment` (beyond the start time's uncertainty)."""
        if self.start_time is None:
            return None
        return self.start_time + self.start_slack < moment

    def describe(self) -> str:
        cmd = " ".join(self.cmdline)[:300] or self.comm
        return (
            f"/proc/{self.pid}: {cmd} (found by {self.found_by})"
            if self.found_by
            else f"/proc/{self.pid}: {cmd}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid, "comm": self.comm, "cmdline": list(self.cmdline), "exe": self.exe, "uid": self.uid,
            "env": dict(self.env) if self.env is not None else None, "env_error": self.env_error,
            "start_time": self.start_time, "start_slack": self.start_slack, "found_by": self.found_by,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DaemonProcess:
        env = data.get("env")
        return cls(
            pid=int(data["pid"]),
            comm=str(data["comm"]),
            cmdline=tuple(str(a) for a in data.get("cmdline") or ()),
            exe=data.get("exe"),
            uid=data.get("uid"),
            env={str(k): str(v) for k, v in env.items()} if isinstance(env, Mapping) else None,
            env_error=data.get("env_error"),
            start_time=data.get("start_time"),
            start_slack=float(data.get("start_slack", BTIME_SLACK_S)),
            found_by=str(data.get("found_by", "")),
        )


class ProcessLookup(Record):
    """The outcome of looking for a daemon: the process (or None) and what was tried."""

    process: DaemonProcess | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"process": self.process.to_dict() if self.process else None, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessLookup:
        raw = data.get("process")
        return cls(
            process=DaemonProcess.from_dict(raw) if isinstance(raw, Mapping) else None,
            notes=tuple(str(n) for n in data.get("notes", ())),
        )


# -- /proc readers -----------------------------------------------------------------------------------------


def _pids(root: HostRoot) -> list[int]:
    try:
        names = os.listdir(root.path("/proc"))
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def _comm(root: HostRoot, pid: int) -> str | None:
    try:
        with open(root.path(f"/proc/{pid}/comm"), "rb") as fh:
            return fh.read(64).decode("utf-8", "replace").strip()
    except OSError:
        return None


def _cmdline(root: HostRoot, pid: int) -> tuple[str, ...]:
    data = root.try_read_bytes(f"/proc/{pid}/cmdline", max_bytes=64 * 1024) or b""
    return tuple(a.decode("utf-8", "replace") for a in data.split(b"\0") if a)


def _uid(root: HostRoot, pid: int) -> int | None:
    text = root.try_read_text(f"/proc/{pid}/status") or ""
    m = re.search(r"^Uid:\s+(\d+)\s+(\d+)", text, re.MULTILINE)
    return int(m.group(2)) if m else None


def _environ(root: HostRoot, pid: int) -> tuple[dict[str, str] | None, str | None]:
    # Read without HostRoot's access log: environ may hold secrets and must never go into a snapshot.
    try:
        with open(root.path(f"/proc/{pid}/environ"), "rb") as fh:
            data = fh.read(1024 * 1024)
    except PermissionError:
        return None, f"/proc/{pid}/environ: permission denied (run gpudoctor as root to read it)"
    except OSError as exc:
        return None, f"/proc/{pid}/environ: {exc.strerror or exc}"
    env: dict[str, str] = {}
    for entry in data.split(b"\0"):
        key, sep, value = entry.decode("utf-8", "replace").partition("=")
        if sep and key in KEPT_ENV:
            env[key] = value
    return env, None


def _start_time(root: HostRoot, pid: int) -> tuple[float | None, float]:
    """(start time in epoch seconds, its uncertainty) from /proc/<pid>/stat field 22."""
    text = root.try_read_text(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None, BTIME_SLACK_S
    fields = text.rsplit(")", 1)[1].split()
    try:
        ticks = int(fields[19])  # field 22 (starttime); fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None, BTIME_SLACK_S
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    since_boot = ticks / hz
    if root.is_live_root:
        # /proc/uptime has 10 ms resolution; btime only whole seconds.
        uptime = root.try_read_text("/proc/uptime")
        if uptime:
            try:
                up = float(uptime.split()[0])
                return time.time() - up + since_boot, UPTIME_SLACK_S
            except (IndexError, ValueError):
                pass
    stat = root.try_read_text("/proc/stat") or ""
    m = re.search(r"^btime\s+(\d+)", stat, re.MULTILINE)
    if not m:
        return None, BTIME_SLACK_S
    return int(m.group(1)) + since_boot, BTIME_SLACK_S


def read_process(root: HostRoot, pid: int, *, found_by: str = "") -> DaemonProcess | None:
    """The process `pid` under the root, or None when it does not exist."""
    comm = _comm(root, pid)
    if comm is None:
        return None
    env, env_error = _environ(root, pid)
    start, slack = _start_time(root, pid)
    return DaemonProcess(
        pid=pid,
        comm=comm,
        cmdline=_cmdline(root, pid),
        exe=root.readlink(f"/proc/{pid}/exe"),
        uid=_uid(root, pid),
        env=env,
        env_error=env_error,
        start_time=start,
        start_slack=slack,
        found_by=found_by,
    )


def _socket_inodes(root: HostRoot, socket_path: str) -> set[str]:
    """Inodes of listening unix sockets bound to `socket_path` (from /proc/net/unix)."""
    text = root.try_read_text("/proc/net/unix") or ""
    wanted = {socket_path, os.path.normpath(socket_path)}
    out: set[str] = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7] in wanted:
            out.add(parts[6])
    return out


def _holds_socket(root: HostRoot, pid: int, inodes: set[str]) -> bool:
    fd_dir = root.path(f"/proc/{pid}/fd")
    try:
        fds = os.listdir(fd_dir)[:_MAX_FDS]
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def peer_pid(socket_path: str, *, timeout: float = 2.0) -> int | None:
    """The PID behind a unix socket (SO_PEERCRED), or None. With socket activation it is systemd's."""
    import socket  # deferred: only live runs connect; `--check --offline` never loads the socket module
    import struct

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(socket_path)
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid if pid > 0 else None


def find_daemon(
    root: HostRoot,
    *,
    names: Iterable[str],
    socket_path: str | None = None,
    pidfiles: Iterable[str] = (),
    by_name: bool = True,
) -> ProcessLookup:
    """Find the daemon named one of `names` (``/proc/<pid>/comm``) that serves `socket_path`.

    In order: the socket's peer (SO_PEERCRED, live root only), the process holding the listening socket
    (exact, needs root to read other users' fds), a
    pidfile naming a live process of that name, and the only process of that name. With several
    candidates and no socket match, None (the notes say why) rather than a guess. `by_name` False: only a
    socket (or pidfile) match counts, for hosts that run several instances (containerd for Docker and k3s).
    """
    wanted = set(names)
    notes: list[str] = []
    candidates = [pid for pid in _pids(root) if _comm(root, pid) in wanted]
    label = "/".join(sorted(wanted))
    if not candidates:
        return ProcessLookup(process=None, notes=(f"no process named {label}",))
    if socket_path:
        peer = peer_pid(socket_path) if root.is_live_root else None
        if peer is not None and peer in candidates:
            return ProcessLookup(
                process=read_process(root, peer, found_by=f"the peer of {socket_path} (SO_PEERCRED)")
            )
        inodes = _socket_inodes(root, socket_path)
        if inodes:
            for pid in candidates:
                if _holds_socket(root, pid, inodes):
                    return ProcessLookup(
                        process=read_process(root, pid, found_by=f"it listens on {socket_path}")
                    )
            notes.append(f"no {label} process holds {socket_path} (or its file descriptors are not readable)")
        else:
            notes.append(f"/proc/net/unix lists no socket bound at {socket_path}")
    for pidfile in pidfiles:
        text = root.try_read_text(pidfile)
        if text and text.strip().isdigit() and int(text.strip()) in candidates:
            return ProcessLookup(
                process=read_process(root, int(text.strip()), found_by=f"pidfile {pidfile}"),
                notes=tuple(notes),
            )
    if len(candidates) == 1 and by_name:
        return ProcessLookup(
            process=read_process(root, candidates[0], found_by=f"the only {label} process"),
            notes=tuple(notes),
        )
    notes.append(
        f"{len(candidates)} {label} processes ({', '.join(map(str, candidates[:8]))}); cannot tell "
        "which one serves this endpoint"
    )
    return ProcessLookup(process=None, notes=tuple(notes))


def lookup_on_path(root: HostRoot, name: str, dirs: Iterable[str]) -> str | None:
    """The first executable `name` in `dirs`, resolved under the root (as the daemon's exec.LookPath would)."""
    for d in dirs:
        candidate = f"{d.rstrip('/')}/{name}"
        st = root.stat(candidate)
        if st is not None and not stat_mod.S_ISDIR(st.st_mode) and st.st_mode & 0o111:
            return candidate
    return None
