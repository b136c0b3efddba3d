"""The live containerd probe: does the daemon answer on its socket, and did its CRI plugin load?

containerd reads its config only at start and has no reload, so a config that registers the nvidia
runtime says nothing about the running daemon. ``ctr plugins ls`` does: the CRI plugin is ``ok``, or
``error`` with containerd's own message (``ctr plugins ls -d id==cri``), e.g. a ``default_runtime_name``
that names no runtime. ``ctr`` is run from this machine's PATH with a timeout; without it only the socket
is tried. The result is plain data with ``to_dict``/``from_dict`` for snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpudoctor.record import Record

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
K3S_ADDRESS = "/run/k3s/containerd/containerd.sock"
# Plugin rows that make up the CRI service: 1.x has one (grpc.v1 cri), 2.x splits it.
CRI_PLUGINS = (
    ("io.containerd.grpc.v1", "cri"),
    ("io.containerd.cri.v1", "runtime"),
    ("io.containerd.cri.v1", "images"),
)


class ContainerdLive(Record):
    """What the containerd at `address` (a host path) said. `cri_status` is ok | error | skip, or None when
    ``ctr`` is not available or does not list the plugin; `cri_error` is containerd's message."""

    address: str
    reachable: bool
    error: str | None = None
    ctr: str | None = None
    server_version: str | None = None
    cri_status: str | None = None
    cri_plugin: str | None = None
    cri_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContainerdLive:
        if not isinstance(data, Mapping) or "address" not in data:
            raise ValueError("a containerd probe must be an object with an address")
        return cls(
            address=str(data["address"]),
            reachable=bool(data.get("reachable")),
            error=data.get("error"),
            ctr=data.get("ctr"),
            server_version=data.get("server_version"),
            cri_status=data.get("cri_status"),
            cri_plugin=data.get("cri_plugin"),
            cri_error=data.get("cri_error"),
        )


def _connect(path: str, timeout: float) -> str | None:
    # socket, subprocess and shutil are imported where used: the offline check imports this module only
    # for its constants and ContainerdLive, and must not pay for them.
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(path)
    except FileNotFoundError:
        return "no socket there: containerd is not running (or listens elsewhere)"
    except PermissionError:
        return "permission denied (run gpudoctor as root)"
    except ConnectionRefusedError:
        return "the socket exists but nothing listens: containerd is not running"
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        return str(exc)
    return None


def _ctr(ctr: str, path: str, args: list[str], timeout: float) -> tuple[str | None, str | None]:
    """(stdout, None) or (None, why)."""
    import subprocess

    try:
        proc = subprocess.run(
            [ctr, "--address", path, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None, f"`ctr {' '.join(args)}` did not finish within {timeout:g}s"
    except OSError as exc:
        return None, f"cannot run {ctr}: {exc}"
    if proc.returncode != 0:
        return None, (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}")[:500]
    return proc.stdout, None


def parse_plugins(text: str) -> list[tuple[str, str, str]]:
    """(type, id, status) rows of ``ctr plugins ls``."""
    rows: list[tuple[str, str, str]] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3:
            rows.append((parts[0], parts[1], parts[-1]))
    return rows


def _detail_message(text: str) -> str | None:
    """The ``Message:`` line of ``ctr plugins ls -d`` (containerd's error for a plugin that failed)."""
    for line in text.splitlines():
        if line.strip().startswith("Message:"):
            return line.split("Message:", 1)[1].strip() or None
    return None


def probe_containerd(real_path: str, *, address: str, timeout: float) -> ContainerdLive:
    """Probe the socket at `real_path` (its host path is `address`); never raises."""
    problem = _connect(real_path, timeout)
    if problem is not None:
        return ContainerdLive(address=address, reachable=False, error=problem)
    import shutil

    ctr = shutil.which("ctr")
    if ctr is None:
        return ContainerdLive(
            address=address, reachable=True, error="ctr is not installed: the CRI plugin's state is unknown"
        )
    out, why = _ctr(ctr, real_path, ["version"], timeout)
    version = None
    if out:
        server = out.split("Server:", 1)[-1]
        for line in server.splitlines():
            if line.strip().startswith("Version:"):
                version = line.split(":", 1)[1].strip()
                break
    out, why = _ctr(ctr, real_path, ["plugins", "ls"], timeout)
    if out is None:
        return ContainerdLive(address=address, reachable=True, ctr=ctr, server_version=version, error=why)
    for ptype, pid, status in parse_plugins(out):
        if (ptype, pid) in CRI_PLUGINS and status != "ok":
            detail, _ = _ctr(ctr, real_path, ["plugins", "ls", "-d", f"id=={pid}"], timeout)
            return ContainerdLive(
                address=address,
                reachable=True,
                ctr=ctr,
                server_version=version,
                cri_status=status,
                cri_plugin=f"{ptype}.{pid}",
                cri_error=_detail_message(detail or ""),
            )
    found = [f"{t}.{i}" for t, i, _ in parse_plugins(out) if (t, i) in CRI_PLUGINS]
    return ContainerdLive(
        address=address,
        reachable=True,
        ctr=ctr,
        server_version=version,
        cri_status="ok" if found else None,
        cri_plugin=found[0] if found else None,
    )
