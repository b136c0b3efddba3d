"""The parity probe: run ``nvidia-smi`` in one short-lived container and record what it printed.

The GPUs are attached by the best route the daemon offers, in this order:

1. ``--gpus all``: dockerd's built-in ``nvidia`` device driver, which exists only when
   ``nvidia-container-runtime-hook`` was on dockerd's PATH when it started;
2. ``--runtime nvidia``: NVIDIA's runtime, registered in the daemon;
3. ``--runtime gpudoctor``: gpudoctor's runtime shim, registered in the daemon;
4. ``direct``: gpudoctor's engine (discover + select) rendered as explicit ``--device HOST:CONTAINER`` and
   read-only bind mounts, so a container can be checked with no GPU runtime registered at all. The
   engine's createContainer hooks cannot be passed on a ``docker run`` command line, so their work is
   done another way: each library is also mounted under its soname (the symlink hook's job) and
   ``LD_LIBRARY_PATH`` names the library directories (the ldcache hook's job).

When ``--gpus all`` was chosen without seeing dockerd's PATH and the daemon answers ``could not select
device driver``, the next route is tried and both attempts are recorded.

The entrypoint is replaced by ``nvidia-smi`` (CUDA images print a banner from theirs), the container has
no network, and it is always removed (see gpudoctor.host.docker_probe.run_container). The result is
plain data with ``to_dict``/``from_dict`` so that snapshots record and replay it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from gpudoctor.host.docker_probe import ContainerRequest, DaemonProbe, run_container
from gpudoctor.host.root import HostRoot

SMI = "nvidia-smi"
SMI_ARGS: tuple[str, ...] = ("--query-gpu=uuid,name,driver_version", "--format=csv,noheader")
GPUS_MIN_VERSION = (19, 3)
GPU_DRIVER_ERROR = "could not select device driver"
GPUDOCTOR_RUNTIME_BASENAME = "gpudoctor-runtime"
NVIDIA_RUNTIME_BASENAME = "nvidia-container-runtime"
MAX_SHOWN_MOUNTS = 4

Route = Literal["gpus", "runtime-nvidia", "runtime-gpudoctor", "direct"]
ROUTES: tuple[str, ...] = get_args(Route)
RunStatus = Literal["ran", "no_image", "image_error", "pull_failed", "plan_error"]
RUN_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))


# -- route choice ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteChoice:
    """A way to attach the GPUs. `runtime` is the runtime name for the runtime routes; `why` is evidence.
    `tentative` marks ``--gpus`` chosen without knowing dockerd's PATH (a fallback follows it)."""

    route: Route
    runtime: str | None = None
    why: str = ""
    tentative: bool = False

    @property
    def flag(self) -> str:
        if self.route == "gpus":
            return "--gpus all"
        if self.route == "direct":
            return "explicit --device/-v (gpudoctor's engine, no runtime)"
        return f"--runtime {self.runtime}"


def _runtime_named(runtimes: Mapping[str, str | None], name: str, basename: str) -> str | None:
    if name in runtimes:
        return name
    for rt, path in sorted(runtimes.items()):
        if path and os.path.basename(path).startswith(basename):
            return rt
    return None


def choose_routes(
    *,
    daemon: DaemonProbe,
    hook_on_daemon_path: str | None,
    daemon_path_known: bool,
    hook_predates_daemon: bool | None,
    hook_in_root: str | None,
) -> list[RouteChoice]:
    """The usable routes, best first (see the module docstring). Never empty: `direct` is always last.

    `hook_on_daemon_path` is the hook found on dockerd's PATH (`daemon_path_known` False when that PATH
    could not be read; then `hook_in_root`, the hook on the root's service PATH, stands in, tentatively).
    `hook_predates_daemon` False means the hook appeared after dockerd started, so dockerd has no nvidia
    device driver yet.
    """
    out: list[RouteChoice] = []
    version = daemon.version_tuple()
    gpus_supported = version is None or version[:2] >= GPUS_MIN_VERSION
    if gpus_supported:
        if daemon_path_known and hook_on_daemon_path and hook_predates_daemon is not False:
            out.append(RouteChoice(route="gpus", why=f"{hook_on_daemon_path} is on dockerd's PATH"))
        elif not daemon_path_known and hook_in_root:
            out.append(
                RouteChoice(
                    route="gpus",
                    tentative=True,
                    why=f"{hook_in_root} is installed; dockerd's own PATH could not be read",
                )
            )
    nvidia = _runtime_named(daemon.runtimes, "nvidia", NVIDIA_RUNTIME_BASENAME)
    if nvidia is not None:
        out.append(
            RouteChoice(
                route="runtime-nvidia",
                runtime=nvidia,
                why=f"registered in the daemon as {daemon.runtimes.get(nvidia) or 'a runtime'}",
            )
        )
    ours = _runtime_named(daemon.runtimes, "gpudoctor", GPUDOCTOR_RUNTIME_BASENAME)
    if ours is not None:
        out.append(
            RouteChoice(
                route="runtime-gpudoctor",
                runtime=ours,
                why=f"registered in the daemon as {daemon.runtimes.get(ours) or 'a runtime'}",
            )
        )
    why = "no GPU route is registered in the daemon" if not out else "the last resort"
    out.append(
        RouteChoice(
            route="direct", why=f"{why}: gpudoctor's engine passes the devices and driver files explicitly"
        )
    )
    return out


# -- the direct route --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectPlan:
    """Explicit devices, read-only binds and env for the direct route (`error` when the engine refused)."""

    devices: tuple[tuple[str, str], ...] = ()
    binds: tuple[tuple[str, str], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None


def _env_value(env: Iterable[str], key: str) -> str | None:
    for entry in env:
        k, sep, v = entry.partition("=")
        if sep and k == key:
            return v
    return None


def direct_plan(root: HostRoot, *, host_paths: bool, image_env: Sequence[str] = ()) -> DirectPlan:
    """The engine's edits for ``NVIDIA_VISIBLE_DEVICES=all`` (utility, compute) as docker arguments.

    Source paths are the real paths under the root (a fake tree on this machine), or with `host_paths`
    the host paths (the root is the daemon's own filesystem mounted here, e.g. ``/host``).
    """
    from gpudoctor.engine.inventory import DiscoveryError, discover
    from gpudoctor.engine.request import ALL, DEFAULT_CAPABILITIES, Request
    from gpudoctor.engine.selection import DEV_LINKS, SelectionError, select

    base = str(root.root)

    def source(path: str) -> str:
        if host_paths and not root.is_live_root and (path == base or path.startswith(base + "/")):
            return path[len(base) :] or "/"
        return path

    try:
        inventory = discover(base)
        edits = select(
            inventory,
            Request(devices=(ALL,), capabilities=DEFAULT_CAPABILITIES, source="gpudoctor's parity check"),
            hooks=False,
        )
    except (DiscoveryError, SelectionError, OSError, ValueError) as exc:
        return DirectPlan(error=str(exc))
    devices = tuple((source(n.host_path), n.path) for n in edits.device_nodes)
    binds: list[tuple[str, str]] = []
    targets: set[str] = set()
    libdirs: list[str] = []
    sonames = {f.container_path: f.soname for f in inventory.files if f.kind == "library" and f.soname}
    for m in edits.mounts:
        if "ro" not in m.options:
            continue  # IPC sockets need writes; nvidia-smi does not need them
        binds.append((source(m.host_path), m.container_path))
        targets.add(m.container_path)
        soname = sonames.get(m.container_path)
        if soname is None:
            continue
        directory = m.container_path.rsplit("/", 1)[0]
        if directory not in libdirs:
            libdirs.append(directory)
        # What the create-symlinks hook would do: the soname (and development link) resolve to this file.
        for link in (soname, DEV_LINKS.get(soname)):
            target = f"{directory}/{link}" if link else None
            if target and target not in targets and target != m.container_path:
                binds.append((source(m.host_path), target))
                targets.add(target)
    env: dict[str, str] = {}
    if libdirs:
        existing = _env_value(image_env, "LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = ":".join([*libdirs, *([existing] if existing else [])])
    return DirectPlan(devices=devices, binds=tuple(binds), env=env)


# -- the run -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One container run through one route."""

    route: Route
    runtime: str | None
    why: str
    command: str
    started: bool = False
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    timed_out: bool = False
    removed: bool = True
    remove_error: str | None = None
    devices: int = 0
    mounts: int = 0

    @property
    def flag(self) -> str:
        return RouteChoice(route=self.route, runtime=self.runtime).flag

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        route = data.get("route")
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        return cls(
            route=cast(Route, route),
            runtime=data.get("runtime"),
            why=str(data.get("why", "")),
            command=str(data.get("command", "")),
            started=bool(data.get("started")),
            exit_code=data.get("exit_code"),
            stdout=str(data.get("stdout", "")),
            stderr=str(data.get("stderr", "")),
            error=data.get("error"),
            timed_out=bool(data.get("timed_out")),
            removed=bool(data.get("removed", True)),
            remove_error=data.get("remove_error"),
            devices=int(data.get("devices", 0)),
            mounts=int(data.get("mounts", 0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ParityRun:
    """The parity probe's record. `status` "ran" means `attempts` holds the run(s), the last one decisive."""

    image: str
    status: RunStatus
    error: str | None = None
    pulled: bool = False
    image_env: tuple[str, ...] = ()
    attempts: tuple[Attempt, ...] = ()

    @property
    def final(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image, "status": self.status, "error": self.error, "pulled": self.pulled,
            "image_env": list(self.image_env), "attempts": [a.to_dict() for a in self.attempts],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParityRun:
        """Inverse of to_dict. Raises ValueError on malformed data."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a parity record must be an object, got {type(data).__name__}")
        status = data.get("status")
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown parity status {status!r}")
        attempts = data.get("attempts") or []
        if not isinstance(attempts, list):
            raise ValueError("attempts must be a list")
        return cls(
            image=str(data.get("image", "")),
            status=cast(RunStatus, status),
            error=data.get("error"),
            pulled=bool(data.get("pulled")),
            image_env=tuple(str(e) for e in data.get("image_env") or ()),
            attempts=tuple(Attempt.from_dict(a) for a in attempts),
        )


def _shell_word(word: str) -> str:
    if word and all(c.isalnum() or c in "-_./:=,@%+" for c in word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


def render_command(request: ContainerRequest, *, short: bool = True, root: str = "/") -> str:
    """The ``docker run`` command line equivalent to `request` (mounts abbreviated when `short`).

    Sources under `root` (a ``--root`` that is not the daemon's own filesystem) are shown as host paths, as
    every path in a report is.
    """

    def host(path: str) -> str:
        base = root.rstrip("/")
        return path[len(base) :] if base and path.startswith(base + "/") else path

    argv = ["docker", "run", "--rm", "--network", "none"]
    if request.gpus_all:
        argv += ["--gpus", "all"]
    if request.runtime:
        argv += ["--runtime", request.runtime]
    for key, value in request.env.items():
        argv += ["-e", f"{key}={value}"]
    for source, container in request.devices:
        argv += ["--device", f"{host(source)}:{container}"]
    shown = request.binds if not short else request.binds[:MAX_SHOWN_MOUNTS]
    for source, container in shown:
        argv += ["-v", f"{host(source)}:{container}:ro"]
    words = [_shell_word(a) for a in argv]
    if len(shown) < len(request.binds):
        words.append(f"... ({len(request.binds) - len(shown)} more read-only -v mounts)")
    words += [
        _shell_word(a) for a in ("--entrypoint", request.entrypoint[0], request.image, *request.command)
    ]
    return " ".join(words)


def container_name() -> str:
    return f"gpudoctor-parity-{os.getpid()}-{secrets.token_hex(4)}"


def build_request(choice: RouteChoice, *, image: str, plan: DirectPlan | None) -> ContainerRequest:
    """The container for `choice` (`plan` is required for the direct route)."""
    common: dict[str, Any] = {
        "name": container_name(),
        "image": image,
        "entrypoint": (SMI,),
        "command": SMI_ARGS,
    }
    if choice.route == "gpus":
        return ContainerRequest(**common, gpus_all=True)
    if choice.route in ("runtime-nvidia", "runtime-gpudoctor"):
        return ContainerRequest(**common, runtime=choice.runtime, env={"NVIDIA_VISIBLE_DEVICES": "all"})
    assert plan is not None
    return ContainerRequest(**common, devices=plan.devices, binds=plan.binds, env=dict(plan.env))


def attempt(
    url: str, choice: RouteChoice, *, image: str, plan: DirectPlan | None, timeout: float, root: str = "/"
) -> Attempt:
    """Run the container for one route and record it (`root`: see render_command)."""
    request = build_request(choice, image=image, plan=plan)
    result = run_container(url, request, timeout=timeout)
    return Attempt(
        route=choice.route,
        runtime=choice.runtime,
        why=choice.why,
        command=render_command(request, root=root),
        started=result.started,
        exit_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        error=result.error,
        timed_out=result.timed_out,
        removed=result.removed,
        remove_error=result.remove_error,
        devices=len(request.devices),
        mounts=len(request.binds),
    )


def run_parity(
    *,
    url: str,
    image: str,
    routes: Sequence[RouteChoice],
    root: HostRoot,
    host_paths: bool,
    pull: bool,
    timeout: float,
) -> ParityRun:
    """Check the image (pull only when `pull`), then run nvidia-smi through the first route.

    A tentative ``--gpus`` that the daemon refuses (``could not select device driver``) falls back to the
    next route; both attempts are kept. Never raises for what the daemon says.
    """
    from gpudoctor.host.docker_probe import inspect_image, pull_image

    info = inspect_image(url, image, timeout=timeout)
    pulled = False
    if info.error is not None:
        return ParityRun(image=image, status="image_error", error=info.error)
    if not info.present:
        if not pull:
            return ParityRun(image=image, status="no_image")
        problem = pull_image(url, image)
        if problem is not None:
            return ParityRun(image=image, status="pull_failed", error=problem)
        pulled = True
        info = inspect_image(url, image, timeout=timeout)
        if not info.present:
            return ParityRun(
                image=image,
                status="image_error",
                pulled=True,
                error=info.error or f"{image} is still missing after `docker pull`",
            )
    attempts: list[Attempt] = []
    for choice in routes:
        plan = None
        if choice.route == "direct":
            plan = direct_plan(root, host_paths=host_paths, image_env=info.env)
            if plan.error is not None:
                return ParityRun(
                    image=image,
                    status="plan_error",
                    error=plan.error,
                    pulled=pulled,
                    image_env=info.env,
                    attempts=tuple(attempts),
                )
        result = attempt(
            url, choice, image=image, plan=plan, timeout=timeout, root="/" if host_paths else str(root.root)
        )
        attempts.append(result)
        refused = not result.started and GPU_DRIVER_ERROR in (result.error or "")
        if not (choice.tentative and refused):
            break
    return ParityRun(image=image, status="ran", pulled=pulled, image_env=info.env, attempts=tuple(attempts))


# -- nvidia-smi output -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SmiGpu:
    """One line of ``nvidia-smi --query-gpu=uuid,name,driver_version --format=csv,noheader``."""

    uuid: str
    name: str
    driver_version: str


def parse_smi(stdout: str) -> list[SmiGpu]:
    """The GPU lines of nvidia-smi's CSV output; lines that are not ``GPU-..., name, version`` are ignored."""
    out: list[SmiGpu] = []
    for line in stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0].startswith(("GPU-", "MIG-")):
            # A GPU name may itself hold a comma; the uuid is first and the version last.
            out.append(SmiGpu(uuid=parts[0], name=", ".join(parts[1:-1]), driver_version=parts[-1]))
    return out
