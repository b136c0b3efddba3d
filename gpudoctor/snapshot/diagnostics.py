"""The extra material a bug report needs, beyond the files the checks read.

Each collector returns :class:`Item` objects (a bundle path, its bytes, where they came from) and notes for
what it could not collect. Nothing here raises for what it finds on the host: a missing program, a
permission error or a timeout is a note. Commands run with a timeout, a fixed environment and no shell.

- ``docker info`` / ``docker version`` as JSON, read from the daemon's HTTP API over its socket (the Docker
  SDK is not needed for two GETs, and the snapshot path never imports it);
- dockerd's command line and environment (sensitive values redacted by the caller);
- ``nvidia-smi -q`` and ``dmesg`` (only on the live root ``/``: they describe the machine they run on);
- kernel log lines that mention NVRM or nvidia, from dmesg and ``/var/log/kern.log`` under the root;
- the NVIDIA Container Toolkit's logs: the ``debug`` files named in its config.toml and
  ``/var/log/nvidia-container-*.log``, the last MAX_LOG_BYTES of each.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import stat as stat_mod
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gpudoctor.host.root import HostRoot

COMMAND_TIMEOUT_S = 10.0
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
MAX_LOG_BYTES = 1024 * 1024
MAX_KERNEL_LINES = 2000
TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
KERN_LOGS = ("/var/log/kern.log",)
_KERNEL_LINE = re.compile(r"NVRM|nvidia", re.IGNORECASE)
_COMMAND_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One diagnostics file: `name` below ``diagnostics/``, its `data`, and its `source` for the manifest."""

    name: str
    data: bytes
    source: dict[str, Any]


@dataclass(slots=True)
class Collected:
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- commands ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutput:
    argv: tuple[str, ...]
    returncode: int | None
    stdout: bytes
    stderr: bytes
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0


def run_command(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT_S) -> CommandOutput:
    """Run `argv` (no shell) with a timeout; the outcome, never an exception."""
    args = tuple(argv)
    try:
        proc = subprocess.run(args, capture_output=True, timeout=timeout, env=dict(_COMMAND_ENV),
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        return CommandOutput(argv=args, returncode=None, stdout=(exc.stdout or b"")[:MAX_OUTPUT_BYTES],
                             stderr=(exc.stderr or b"")[:MAX_OUTPUT_BYTES],
                             error=f"timed out after {timeout:g}s")
    except OSError as exc:
        return CommandOutput(argv=args, returncode=None, stdout=b"", stderr=b"",
                             error=exc.strerror or str(exc))
    return CommandOutput(argv=args, returncode=proc.returncode, stdout=proc.stdout[:MAX_OUTPUT_BYTES],
                         stderr=proc.stderr[:MAX_OUTPUT_BYTES])


def _describe(out: CommandOutput) -> str:
    cmd = " ".join(out.argv)
    if out.error is not None:
        return f"`{cmd}`: {out.error}"
    err = out.stderr.decode("utf-8", "replace").strip().splitlines()
    return f"`{cmd}` exited {out.returncode}" + (f": {err[-1][:200]}" if err else "")


def nvidia_smi(root: HostRoot, *, offline: bool, timeout: float,
               search_dirs: Sequence[str] = tuple(_COMMAND_ENV["PATH"].split(":"))) -> Collected:
    """``nvidia-smi -q`` on the live root (the program describes the machine it runs on), found in
    `search_dirs`."""
    got = Collected()
    if offline:
        got.notes.append("nvidia-smi -q: not run (--offline)")
        return got
    if not root.is_live_root:
        got.notes.append(f"nvidia-smi -q: not run (the root is {root.root}, not this machine's /)")
        return got
    binary = next((f"{d}/nvidia-smi" for d in search_dirs if os.access(f"{d}/nvidia-smi", os.X_OK)), None)
    if binary is None:
        got.notes.append("nvidia-smi -q: nvidia-smi is not installed")
        return got
    out = run_command([binary, "-q"], timeout=timeout)
    data = out.stdout + (b"\n--- stderr ---\n" + out.stderr if out.stderr else b"")
    got.items.append(Item(name="nvidia-smi-q.txt", data=data,
                          source={"command": list(out.argv), "exit_code": out.returncode, "error": out.error}))
    if not out.ok:
        got.notes.append(f"nvidia-smi -q: {_describe(out)}")
    return got


def kernel_log(root: HostRoot, *, offline: bool, timeout: float) -> Collected:
    """Lines about NVRM/nvidia from ``dmesg`` (live root only) and the root's /var/log/kern.log."""
    got = Collected()
    if offline:
        got.notes.append("dmesg: not run (--offline)")
    elif not root.is_live_root:
        got.notes.append(f"dmesg: not run (the root is {root.root}, not this machine's /)")
    else:
        out = run_command(["dmesg"], timeout=timeout)
        if out.ok:
            lines = _kernel_lines(out.stdout)
            got.items.append(Item(name="dmesg-nvidia.txt", data=lines,
                                  source={"command": ["dmesg"], "filter": "lines matching /NVRM|nvidia/i",
                                          "exit_code": out.returncode}))
        else:
            # dmesg_restrict=1 makes this EPERM for non-root users; the log file may still be readable.
            got.notes.append(f"dmesg: {_describe(out)}")
    for path in KERN_LOGS:
        data, error = read_tail(root, path, MAX_LOG_BYTES * 8)
        if data is None:
            if error is not None:
                got.notes.append(f"{path}: {error}")
            continue
        got.items.append(Item(name=f"kern-log-nvidia{path.replace('/', '_')}.txt", data=_kernel_lines(data),
                              source={"path": path, "filter": "lines matching /NVRM|nvidia/i"}))
    return got


def _kernel_lines(data: bytes) -> bytes:
    text = data.decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if _KERNEL_LINE.search(line)]
    return ("\n".join(lines[-MAX_KERNEL_LINES:]) + ("\n" if lines else "")).encode("utf-8")


def read_tail(root: HostRoot, host_path: str, limit: int) -> tuple[bytes | None, str | None]:
    """The last `limit` bytes of a regular file under the root: (data, None), (None, why), or (None, None)
    when it does not exist. Never reads from a FIFO or device."""
    try:
        real = root.path(host_path)
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat_mod.S_ISREG(st.st_mode):
            return None, "not a regular file"
        if st.st_size > limit:
            fh.seek(st.st_size - limit)
        return fh.read(limit), None


# -- the toolkit's logs ------------------------------------------------------------------------------------


def toolkit_logs(root: HostRoot) -> Collected:
    """The toolkit's debug logs (config.toml ``debug`` keys) and /var/log/nvidia-container-*.log."""
    from gpudoctor.host.errors import ParseError
    from gpudoctor.host.parsers.configs import parse_toolkit_config

    got = Collected()
    paths: list[str] = []
    text = root.try_read_text(TOOLKIT_CONFIG)
    if text is not None:
        try:
            cfg = parse_toolkit_config(text, path=TOOLKIT_CONFIG)
        except ParseError as exc:
            got.notes.append(f"toolkit logs: {exc} (cannot be parsed), so its debug log paths are unknown")
        else:
            paths += [p for p in (cfg.debug_log, cfg.cli_debug_log) if p and p.startswith("/")]
    paths += root.glob("/var/log/nvidia-container-*.log")
    for path in dict.fromkeys(paths):
        data, error = read_tail(root, path, MAX_LOG_BYTES)
        if data is None:
            if error is not None:
                got.notes.append(f"toolkit log {path}: {error}")
            continue
        got.items.append(Item(name=f"toolkit-logs{path}", data=data,
                              source={"path": path, "tail_bytes": MAX_LOG_BYTES}))
    return got


# -- the Docker daemon -------------------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, *, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def docker_api_get(url: str, path: str, *, timeout: float) -> tuple[Any, str | None]:
    """GET `path` from the Docker API at `url` (``unix://`` or ``tcp://``/``http://``): (JSON, None) or
    (None, why)."""
    conn: http.client.HTTPConnection
    if url.startswith("unix://") or url.startswith("/"):
        conn = _UnixConnection(url[len("unix://"):] if url.startswith("unix://") else url, timeout=timeout)
    elif url.startswith(("tcp://", "http://")):
        parts = urlsplit(url.replace("tcp://", "http://", 1))
        if not parts.hostname:
            return None, f"cannot parse the endpoint {url}"
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 2375, timeout=timeout)
    else:
        return None, f"endpoint {url}: only unix:// and tcp:// endpoints are queried"
    try:
        conn.request("GET", path, headers={"Host": "docker"})
        resp = conn.getresponse()
        body = resp.read(MAX_OUTPUT_BYTES)
        if resp.status != 200:
            return None, f"GET {path}: HTTP {resp.status} {body[:200].decode('utf-8', 'replace').strip()}"
        return json.loads(body), None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return None, f"GET {path}: {exc}"
    finally:
        conn.close()


def docker_daemon(url: str | None, *, offline: bool, timeout: float) -> Collected:
    """``docker info`` and ``docker version`` as JSON from the daemon the doctor talked to."""
    got = Collected()
    if offline:
        got.notes.append("docker info: not queried (--offline)")
        return got
    if not url:
        got.notes.append("docker info: no Docker endpoint was probed")
        return got
    for api, name, what in (("/info", "docker-info.json", "docker info"),
                            ("/version", "docker-version.json", "docker version")):
        data, error = docker_api_get(url, api, timeout=timeout)
        if error is not None:
            got.notes.append(f"{what} ({url}): {error}")
            continue
        got.items.append(Item(name=name, data=json.dumps(data, indent=2, sort_keys=True).encode() + b"\n",
                              source={"command": [what, "--format", "{{json .}}"], "api": f"GET {url}{api}"}))
    return got


def dockerd_process(root: HostRoot, *, socket_path: str | None) -> Collected:
    """dockerd's command line and whole environment, from the root's /proc (the caller redacts)."""
    from gpudoctor.host.daemon_process import find_daemon

    got = Collected()
    lookup = find_daemon(root, names=("dockerd",), socket_path=socket_path,
                         pidfiles=("/var/run/docker.pid", "/run/docker.pid"))
    process = lookup.process
    if process is None:
        got.notes.append("dockerd process: " + ("; ".join(lookup.notes) or "not found"))
        return got
    env: dict[str, str] | None = None
    env_error: str | None = None
    try:
        with open(root.path(f"/proc/{process.pid}/environ"), "rb") as fh:
            raw = fh.read(MAX_OUTPUT_BYTES)
        env = {}
        for entry in raw.split(b"\0"):
            key, sep, value = entry.decode("utf-8", "replace").partition("=")
            if sep:
                env[key] = value
    except OSError as exc:
        env_error = f"/proc/{process.pid}/environ: {exc.strerror or exc}"
        got.notes.append(f"dockerd environment: {env_error}")
    data: dict[str, Any] = {"pid": process.pid, "found_by": process.found_by, "exe": process.exe,
                            "cmdline": list(process.cmdline), "uid": process.uid, "start_time": process.start_time,
                            "environ": env, "environ_error": env_error}
    got.items.append(Item(name="dockerd.json", data=json.dumps(data, indent=2).encode() + b"\n",
                          source={"paths": [f"/proc/{process.pid}/cmdline", f"/proc/{process.pid}/environ"]}))
    return got


def merge(*parts: Collected) -> Collected:
    out = Collected()
    for part in parts:
        out.items += part.items
        out.notes += part.notes
    return out


def endpoint_url(probe_log: Mapping[str, Any], explicit: str | None) -> str:
    """The endpoint the doctor's Docker probe used (from its recorded result); when the checks did not get
    that far, the one the docker CLI would use (--docker-host, $DOCKER_HOST, the context, the default)."""
    docker = probe_log.get("docker")
    if isinstance(docker, Mapping) and isinstance(docker.get("url"), str) and docker.get("url"):
        return str(docker["url"])
    from gpudoctor.host.docker_probe import resolve_endpoint  # no Docker SDK: that is imported lazily there

    return resolve_endpoint(explicit).url
