"""The live Docker probe: which daemon the user's ``docker`` talks to, and what that daemon says.

This is the only module that imports the Docker SDK, and only inside functions, after a plain socket
has shown that a daemon answers ``/_ping``: with no daemon, the SDK (and requests, urllib3) are never
imported. Every call has a timeout. Nothing here raises: failures come back as a status and a message.

- :func:`resolve_endpoint`: ``--docker-host``, then ``$DOCKER_HOST``, then the current docker context
  (``$DOCKER_CONTEXT`` or ``currentContext`` in ``~/.docker/config.json``), then the default socket.
- :func:`probe_daemon` -> :class:`DaemonProbe` (``docker info`` / ``docker version``), with
  ``to_dict``/``from_dict`` so a snapshot can record and replay it.
- :func:`inspect_image`, :func:`pull_image`, :func:`run_container`: what the parity check needs. A
  container started here is always removed: in a ``finally``, and at interpreter exit (Ctrl-C) for one
  still running in another thread.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import pwd
import socket
import stat as stat_mod
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

DEFAULT_HOST = "unix:///var/run/docker.sock"
DESKTOP_CONTEXT = "desktop-linux"
PARITY_LABEL = "io.gpudoctor.parity"
# A pull downloads hundreds of MB; the per-probe timeout is for answers, not for downloads.
PULL_TIMEOUT_S = 600.0
_CLEANUP_TIMEOUT_S = 5.0

DaemonStatus = Literal["ok", "no_socket", "permission", "refused", "timeout", "not_docker", "error"]
DAEMON_STATUSES: frozenset[str] = frozenset(get_args(DaemonStatus))


# -- endpoint ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerEndpoint:
    """Where the Docker API is. `source` says who chose it: --docker-host, $DOCKER_HOST, a context, default."""

    url: str
    source: str
    context: str | None = None

    @property
    def socket_path(self) -> str | None:
        """The socket file for ``unix://`` URLs (and bare paths), else None."""
        if self.url.startswith("unix://"):
            return self.url[len("unix://") :] or None
        if self.url.startswith("/"):
            return self.url
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "source": self.source, "context": self.context}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DockerEndpoint:
        ctx = data.get("context")
        return cls(url=str(data["url"]), source=str(data["source"]), context=None if ctx is None else str(ctx))

    @property
    def is_desktop(self) -> bool:
        """Docker Desktop for Linux: its own VM, which sees none of the host's toolkit or daemon.json."""
        return self.context == DESKTOP_CONTEXT or "/.docker/desktop/" in self.url


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientContext:
    """The docker CLI's current context for one user's config dir."""

    config_dir: str
    name: str | None
    host: str | None
    error: str | None = None

    @property
    def is_desktop(self) -> bool:
        return self.name == DESKTOP_CONTEXT or (self.host is not None and "/.docker/desktop/" in self.host)


def _config_dir(environ: Mapping[str, str], home: str | None) -> str:
    if environ.get("DOCKER_CONFIG"):
        return environ["DOCKER_CONFIG"]
    return os.path.join(home or os.path.expanduser("~"), ".docker")


def read_client_context(config_dir: str, name: str | None = None) -> ClientContext:
    """The context `name` (default: currentContext in config.json) and its docker endpoint."""
    if name is None:
        try:
            with open(os.path.join(config_dir, "config.json"), encoding="utf-8") as fh:
                cfg = json.load(fh)
        except FileNotFoundError:
            cfg = {}
        except (OSError, ValueError) as exc:
            return ClientContext(
                config_dir=config_dir, name=None, host=None, error=f"{config_dir}/config.json: {exc}"
            )
        name = cfg.get("currentContext") if isinstance(cfg, dict) else None
    if not name or name == "default":
        return ClientContext(config_dir=config_dir, name=name or None, host=None)
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = os.path.join(config_dir, "contexts", "meta", digest, "meta.json")
    try:
        with open(meta, encoding="utf-8") as fh:
            data = json.load(fh)
        host = data["Endpoints"]["docker"]["Host"]
    except FileNotFoundError:
        return ClientContext(
            config_dir=config_dir,
            name=name,
            host=None,
            error=f"context {name!r} has no {meta}: `docker context ls` lists the ones that exist",
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ClientContext(config_dir=config_dir, name=name, host=None, error=f"{meta}: {exc}")
    return ClientContext(config_dir=config_dir, name=name, host=str(host) if host else None)


def _url(value: str) -> str:
    """A bare socket path means ``unix://`` (as the docker CLI reads ``-H /path``)."""
    return f"unix://{value}" if value.startswith("/") else value


def resolve_endpoint(explicit: str | None, *, environ: Mapping[str, str] | None = None) -> DockerEndpoint:
    """The daemon the docker CLI would talk to (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    if explicit:
        return DockerEndpoint(url=_url(explicit), source="--docker-host")
    if env.get("DOCKER_HOST"):
        return DockerEndpoint(url=_url(env["DOCKER_HOST"]), source="$DOCKER_HOST")
    ctx = read_client_context(_config_dir(env, env.get("HOME")), env.get("DOCKER_CONTEXT") or None)
    if ctx.name and ctx.host:
        via = "$DOCKER_CONTEXT" if env.get("DOCKER_CONTEXT") else f"{ctx.config_dir}/config.json"
        return DockerEndpoint(url=ctx.host, source=f"docker context {ctx.name!r} ({via})", context=ctx.name)
    return DockerEndpoint(url=DEFAULT_HOST, source="the default socket", context=ctx.name)


def sudo_user_context(environ: Mapping[str, str] | None = None) -> tuple[str, ClientContext] | None:
    """Under sudo: (user, that user's own docker context), which may differ from root's."""
    env = os.environ if environ is None else environ
    user = env.get("SUDO_USER")
    if not user or user == "root":
        return None
    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:
        return None
    return user, read_client_context(os.path.join(home, ".docker"))


# -- daemon probe ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonProbe:
    """What the daemon at `url` said (`status` "ok"), or why it could not be asked.

    `runtimes` maps each registered runtime to its path (None for built-ins without one). `cdi_spec_dirs`
    is None when the daemon does not report it (Docker < 25) and empty when CDI is off.
    """

    url: str
    source: str
    status: DaemonStatus
    error: str | None = None
    socket_owner: str | None = None
    server_version: str | None = None
    api_version: str | None = None
    operating_system: str | None = None
    name: str | None = None
    runtimes: Mapping[str, str | None] = field(default_factory=dict)
    default_runtime: str | None = None
    cgroup_driver: str | None = None
    cgroup_version: str | None = None
    security_options: tuple[str, ...] = ()
    docker_root_dir: str | None = None
    cdi_spec_dirs: tuple[str, ...] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def rootless(self) -> bool:
        return any("name=rootless" in opt for opt in self.security_options)

    @property
    def desktop(self) -> bool:
        return "docker desktop" in (self.operating_system or "").lower()

    def version_tuple(self) -> tuple[int, ...] | None:
        """``20.10.24+dfsg1`` -> (20, 10, 24); None when unknown."""
        return parse_version(self.server_version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "source": self.source, "status": self.status, "error": self.error,
            "socket_owner": self.socket_owner, "server_version": self.server_version,
            "api_version": self.api_version, "operating_system": self.operating_system, "name": self.name,
            "runtimes": dict(self.runtimes), "default_runtime": self.default_runtime,
            "cgroup_driver": self.cgroup_driver, "cgroup_version": self.cgroup_version,
            "security_options": list(self.security_options), "docker_root_dir": self.docker_root_dir,
            "cdi_spec_dirs": list(self.cdi_spec_dirs) if self.cdi_spec_dirs is not None else None,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DaemonProbe:
        """Inverse of to_dict. Raises ValueError on malformed data."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a Docker probe must be an object, got {type(data).__name__}")
        status = data.get("status")
        if status not in DAEMON_STATUSES:
            raise ValueError(f"unknown Docker probe status {status!r}")
        runtimes = data.get("runtimes") or {}
        if not isinstance(runtimes, Mapping):
            raise ValueError("runtimes must be an object")
        cdi = data.get("cdi_spec_dirs")
        return cls(
            url=str(data.get("url", "")),
            source=str(data.get("source", "")),
            status=cast(DaemonStatus, status),
            error=_opt(data, "error"),
            socket_owner=_opt(data, "socket_owner"),
            server_version=_opt(data, "server_version"),
            api_version=_opt(data, "api_version"),
            operating_system=_opt(data, "operating_system"),
            name=_opt(data, "name"),
            runtimes={str(k): (str(v) if v is not None else None) for k, v in runtimes.items()},
            default_runtime=_opt(data, "default_runtime"),
            cgroup_driver=_opt(data, "cgroup_driver"),
            cgroup_version=_opt(data, "cgroup_version"),
            security_options=tuple(str(s) for s in data.get("security_options") or ()),
            docker_root_dir=_opt(data, "docker_root_dir"),
            cdi_spec_dirs=tuple(str(d) for d in cdi) if isinstance(cdi, list) else None,
        )


def _opt(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts: list[int] = []
    for piece in text.split("+")[0].split("-")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts) or None


def _socket_owner(path: str) -> str | None:
    """``srw-rw---- root:docker`` for the socket file, as evidence for a permission problem."""
    try:
        st = os.stat(path)
    except PermissionError:
        return "cannot be looked at: a directory above it is not searchable for this user"
    except OSError:
        return None
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        import grp

        group = grp.getgrgid(st.st_gid).gr_name
    except (KeyError, ImportError):
        group = str(st.st_gid)
    return f"{stat_mod.filemode(st.st_mode)} {user}:{group}"


def _http_ping(conn: socket.socket) -> tuple[DaemonStatus, str | None]:
    conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
    data = b""
    while len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    if head.startswith("HTTP/1.") and " 200" in head:
        return "ok", None
    if head.startswith("HTTP/1."):
        return "not_docker", f"GET /_ping answered {head!r}, not 200 OK"
    return "not_docker", "the endpoint does not speak HTTP (is it a Docker socket?)"


def ping(endpoint: DockerEndpoint, *, timeout: float) -> tuple[DaemonStatus, str | None]:
    """GET /_ping over a plain socket (no SDK). ("ok", None) when a Docker API answered.

    Only ``unix://`` and plain ``tcp://`` can be checked this way; other schemes (ssh, TLS) report "ok"
    here and are left to the SDK.
    """
    path = endpoint.socket_path
    try:
        if path is not None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout)
                conn.connect(path)
                return _http_ping(conn)
        if endpoint.url.startswith("tcp://") and not os.environ.get("DOCKER_TLS_VERIFY"):
            hostport = endpoint.url[len("tcp://") :].split("/", 1)[0]
            host, _, port = hostport.rpartition(":")
            if not host:
                host, port = hostport, "2375"
            if port == "2376":
                return "ok", None  # TLS: the SDK does the handshake
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
                conn.settimeout(timeout)
                return _http_ping(conn)
    except FileNotFoundError:
        return "no_socket", f"{path} does not exist"
    except PermissionError:
        return "permission", (
            f"permission denied while trying to connect to the Docker daemon socket at {endpoint.url}"
        )
    except ConnectionRefusedError:
        where = (
            f"{path} exists but nothing listens on it" if path else f"{endpoint.url} refused the connection"
        )
        return "refused", where
    except TimeoutError:
        return "timeout", f"{endpoint.url} did not answer GET /_ping within {timeout:g}s"
    except (OSError, ValueError) as exc:
        return "error", f"cannot connect to {endpoint.url}: {exc}"
    return "ok", None


def _client(url: str, *, timeout: float) -> Any:
    """A low-level docker.APIClient for `url` (TLS settings from the environment, as the CLI has them)."""
    import docker  # the only docker import in gpudoctor; see the module docstring

    kwargs: dict[str, Any] = {}
    if url.startswith("tcp://") and os.environ.get("DOCKER_TLS_VERIFY"):
        kwargs = docker.utils.kwargs_from_env()
        kwargs.pop("base_url", None)
    if url.startswith("ssh://"):
        kwargs["use_ssh_client"] = True
    return docker.APIClient(base_url=url, version="auto", timeout=timeout, **kwargs)


def _api_error(exc: BaseException) -> str:
    """The daemon's own words for an API error (what the docker CLI would print)."""
    explanation = getattr(exc, "explanation", None)
    if explanation:
        text = explanation.decode("utf-8", "replace") if isinstance(explanation, bytes) else str(explanation)
        return text.strip()
    text = str(exc).strip()
    return text or type(exc).__name__


def _is_timeout(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        if isinstance(cur, TimeoutError) or name in (
            "ReadTimeout",
            "ConnectTimeout",
            "ReadTimeoutError",
            "Timeout",
        ):
            return True
        if "timed out" in str(cur).lower():
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def probe_daemon(endpoint: DockerEndpoint, *, timeout: float) -> DaemonProbe:
    """Ask the daemon at `endpoint` for ``docker info`` and ``docker version`` (never raises)."""
    base: dict[str, Any] = {"url": endpoint.url, "source": endpoint.source}
    path = endpoint.socket_path
    owner = _socket_owner(path) if path else None
    status, error = ping(endpoint, timeout=timeout)
    if status != "ok":
        return DaemonProbe(**base, status=status, error=error, socket_owner=owner)
    try:
        client = _client(endpoint.url, timeout=timeout)
        try:
            info = client.info()
            version = client.version()
        finally:
            client.close()
    except Exception as exc:  # the SDK raises many types (DockerException, requests, paramiko)
        if _is_timeout(exc):
            return DaemonProbe(
                **base,
                status="timeout",
                socket_owner=owner,
                error=f"{endpoint.url} did not answer `docker info` within {timeout:g}s",
            )
        return DaemonProbe(**base, status="error", socket_owner=owner, error=_api_error(exc))
    runtimes = info.get("Runtimes") or {}
    cdi = info.get("CDISpecDirs")
    return DaemonProbe(
        **base,
        status="ok",
        socket_owner=owner,
        server_version=info.get("ServerVersion") or version.get("Version"),
        api_version=version.get("ApiVersion"),
        operating_system=info.get("OperatingSystem"),
        name=info.get("Name"),
        runtimes={str(k): (v.get("path") if isinstance(v, dict) else None) for k, v in runtimes.items()},
        default_runtime=info.get("DefaultRuntime"),
        cgroup_driver=info.get("CgroupDriver"),
        cgroup_version=str(info["CgroupVersion"]) if info.get("CgroupVersion") else None,
        security_options=tuple(str(s) for s in info.get("SecurityOptions") or ()),
        docker_root_dir=info.get("DockerRootDir"),
        cdi_spec_dirs=tuple(str(d) for d in cdi) if isinstance(cdi, list) else None,
    )


# -- images ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageInfo:
    """Whether `name` is present in the daemon; its Config.Env when it is. `error` for other failures."""

    name: str
    present: bool
    image_id: str | None = None
    env: tuple[str, ...] = ()
    error: str | None = None


def inspect_image(url: str, name: str, *, timeout: float) -> ImageInfo:
    try:
        from docker.errors import ImageNotFound, NotFound

        client = _client(url, timeout=timeout)
        try:
            data = client.inspect_image(name)
        finally:
            client.close()
    except (ImageNotFound, NotFound):
        return ImageInfo(name=name, present=False)
    except Exception as exc:
        if _is_timeout(exc):
            return ImageInfo(
                name=name, present=False, error=f"`docker image inspect {name}` timed out after {timeout:g}s"
            )
        return ImageInfo(name=name, present=False, error=_api_error(exc))
    config = data.get("Config") or {}
    return ImageInfo(name=name, present=True, image_id=data.get("Id"), env=tuple(config.get("Env") or ()))


def pull_image(url: str, name: str, *, timeout: float = PULL_TIMEOUT_S) -> str | None:
    """``docker pull name``; None on success, else the daemon's error."""
    repo, tag = name, None
    last = name.rsplit("/", 1)[-1]
    if "@" not in name and ":" in last:
        repo, tag = name.rsplit(":", 1)
    try:
        client = _client(url, timeout=timeout)
        try:
            client.pull(repo, tag=tag)
        finally:
            client.close()
    except Exception as exc:
        if _is_timeout(exc):
            return f"`docker pull {name}` did not finish within {timeout:g}s"
        return _api_error(exc)
    return None


# -- containers --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerRequest:
    """One short-lived container. `devices` and `binds` are (host path, container path) pairs; binds are
    read-only. `gpus_all` is ``--gpus all``. The entrypoint is replaced so that no image banner runs."""

    name: str
    image: str
    entrypoint: tuple[str, ...]
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    runtime: str | None = None
    gpus_all: bool = False
    devices: tuple[tuple[str, str], ...] = ()
    binds: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerResult:
    """What happened. `error` is the daemon's message when create/start failed; `timed_out` when the
    container ran past the timeout (it was killed). `removed` is False only if removal failed too."""

    name: str
    created: bool = False
    started: bool = False
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    timed_out: bool = False
    removed: bool = True
    remove_error: str | None = None


class _Cleanup:
    """Containers that exist right now, so that interpreter exit (Ctrl-C) can remove them.

    A check runs in a worker thread; Ctrl-C ends the main thread and the process exits around it. The
    atexit hook waits briefly for creates in flight, refuses new ones, and removes what is left.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._live: dict[str, str] = {}  # name -> url
        self._creating = 0
        self._closing = False
        self._registered = False

    def begin_create(self, name: str, url: str) -> bool:
        with self._cond:
            if self._closing:
                return False
            if not self._registered:
                atexit.register(self.at_exit)
                self._registered = True
            self._creating += 1
            self._live[name] = url
            return True

    def end_create(self) -> None:
        with self._cond:
            self._creating -= 1
            self._cond.notify_all()

    def closing(self) -> bool:
        with self._cond:
            return self._closing

    def done(self, name: str) -> None:
        with self._cond:
            self._live.pop(name, None)

    def at_exit(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.wait_for(lambda: self._creating == 0, timeout=_CLEANUP_TIMEOUT_S)
            live = dict(self._live)
            self._live.clear()
        for name, url in live.items():
            _remove(url, name)


_CLEANUP = _Cleanup()


def _remove(url: str, name: str) -> str | None:
    """``docker rm -f name``; None when it is gone (or never existed)."""
    try:
        from docker.errors import NotFound

        client = _client(url, timeout=_CLEANUP_TIMEOUT_S * 2)
        try:
            client.remove_container(name, force=True, v=True)
        finally:
            client.close()
    except NotFound:
        return None
    except Exception as exc:
        return _api_error(exc)
    return None


def _decode(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data or "")


def run_container(url: str, request: ContainerRequest, *, timeout: float) -> ContainerResult:
    """Create, start and wait for one container, then collect its output and remove it, always.

    The container runs with ``--network none``, labelled PARITY_LABEL. Ctrl-C while it runs: the
    ``finally`` (or the atexit hook, when the wait is in another thread) removes it.
    """
    if not _CLEANUP.begin_create(request.name, url):
        return ContainerResult(name=request.name, error="gpudoctor is exiting; no container was started")
    try:
        result = _run(url, request, timeout=timeout)
    finally:
        problem = _remove(url, request.name)
        _CLEANUP.done(request.name)
    if problem is not None:
        return replace(result, removed=False, remove_error=problem)
    return result


def _run(url: str, request: ContainerRequest, *, timeout: float) -> ContainerResult:
    out: dict[str, Any] = {"name": request.name}
    client: Any = None
    try:
        try:
            from docker.types import DeviceRequest, Mount

            client = _client(url, timeout=timeout)
            host_config = client.create_host_config(
                network_mode="none",
                runtime=request.runtime,
                devices=[f"{h}:{c}:rw" for h, c in request.devices] or None,
                mounts=[
                    Mount(target=c, source=h, type="bind", read_only=True, propagation="rprivate")
                    for h, c in request.binds
                ]
                or None,
                device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])]
                if request.gpus_all
                else None,
            )
            client.create_container(
                request.image,
                name=request.name,
                entrypoint=list(request.entrypoint),
                command=list(request.command),
                environment=dict(request.env),
                host_config=host_config,
                labels={PARITY_LABEL: "1"},
            )
        finally:
            _CLEANUP.end_create()
        out["created"] = True
        if _CLEANUP.closing():
            return ContainerResult(**out, error="gpudoctor is exiting; the container was not started")
        try:
            client.start(request.name)
        except Exception as exc:
            return ContainerResult(**out, error=_api_error(exc))
        out["started"] = True
        try:
            status = client.wait(request.name, timeout=timeout)
        except Exception as exc:
            if _is_timeout(exc):
                return ContainerResult(
                    **out,
                    timed_out=True,
                    error=f"the container did not finish within {timeout:g}s; it was killed",
                )
            return ContainerResult(**out, error=_api_error(exc))
        code = status.get("StatusCode") if isinstance(status, dict) else None
        wait_error = (status.get("Error") or {}).get("Message") if isinstance(status, dict) else None
        stdout = _decode(client.logs(request.name, stdout=True, stderr=False))
        stderr = _decode(client.logs(request.name, stdout=False, stderr=True))
        return ContainerResult(**out, exit_code=code, stdout=stdout, stderr=stderr, error=wait_error or None)
    except Exception as exc:
        if _is_timeout(exc):
            return ContainerResult(
                **out, timed_out=True, error=f"the Docker API did not answer within {timeout:g}s"
            )
        return ContainerResult(**out, error=_api_error(exc))
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
