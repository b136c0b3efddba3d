"""`runtime.docker_daemon`: what the running Docker daemon actually does, as opposed to what files say.

Registered in gpudoctor.checks.runtime (which calls :func:`docker_daemon_finding`). It reports:

- whether the daemon answers, at which endpoint and why that one (``--docker-host``, ``$DOCKER_HOST``, a
  docker context, the default socket); unreachable is `skip` with the reason and the command that fixes it;
- its version (``--gpus`` needs 19.03, CDI needs 25 with the feature on), runtimes and default runtime,
  cgroup driver and version, rootless, snap, Docker Desktop, CDI spec dirs;
- whether ``nvidia-container-runtime-hook`` is on the PATH dockerd really has (``/proc/<pid>/environ``):
  dockerd registers its ``nvidia`` device driver, which ``--gpus`` needs, only if it is there at start;
- a daemon that started before its daemon.json or the hook last changed: it needs a restart.

The Docker SDK is imported only by gpudoctor.host.docker_probe, and only once a socket has answered.
:func:`docker_state` is shared with the parity check so the daemon is probed once.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Any

from gpudoctor.checks.base import CheckContext, Finding, Status, skipped
from gpudoctor.checks.toolkit import HOOK, Problem, verdict
from gpudoctor.host import runtime_facts as rf
from gpudoctor.host.daemon_process import DaemonProcess, ProcessLookup, find_daemon, lookup_on_path
from gpudoctor.host.docker_probe import (
    DaemonProbe,
    DockerEndpoint,
    probe_daemon,
    resolve_endpoint,
    sudo_user_context,
)
from gpudoctor.host.errors import ParseError
from gpudoctor.host.facts import HostFacts, ProbeNotRecorded
from gpudoctor.host.parity_probe import RouteChoice, choose_routes
from gpudoctor.host.parsers.configs import parse_daemon_json

CDI_MIN_VERSION = (25,)
GPUS_MIN_VERSION = (19, 3)
DOCKER_PIDFILES = ("/var/run/docker.pid", "/run/docker.pid")
DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
SNAP_DAEMON_JSON = "/var/snap/docker/current/config/daemon.json"


# -- shared state ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerState:
    """The daemon as probed plus its process as read from /proc (shared by the live checks)."""

    endpoint: DockerEndpoint
    probe: DaemonProbe
    lookup: ProcessLookup
    hook_on_path: str | None  # the hook on dockerd's PATH (None: not there, or the PATH is unknown)
    hook_in_root: str | None  # the hook on the root's service PATH (what the file checks see)
    config_file: str | None  # the daemon.json the running dockerd reads (None: process unknown)

    @property
    def process(self) -> DaemonProcess | None:
        return self.lookup.process

    @property
    def path_known(self) -> bool:
        return self.process is not None and self.process.path_dirs is not None

    def hook_changed_after_start(self, ctx: CheckContext) -> float | None:
        """ctime of the hook on dockerd's PATH when it is newer than the daemon (else None)."""
        if self.hook_on_path is None or self.process is None:
            return None
        st = ctx.host.root.stat(self.hook_on_path)
        if st is None:
            return None
        # ctime, not mtime: packages keep the build's mtime, but the inode changes when the file lands here.
        return st.st_ctime if self.process.started_before(st.st_ctime) else None

    def routes(self, ctx: CheckContext) -> list[RouteChoice]:
        return choose_routes(
            daemon=self.probe,
            hook_on_daemon_path=self.hook_on_path,
            daemon_path_known=self.path_known,
            hook_predates_daemon=None
            if self.hook_on_path is None
            else self.hook_changed_after_start(ctx) is None,
            hook_in_root=self.hook_in_root,
        )

    @property
    def daemon_sees_root(self) -> bool:
        """The daemon's process was found under the root: the root is the daemon's own filesystem."""
        return self.process is not None


def _decode_probe(data: Any) -> DaemonProbe:
    try:
        return DaemonProbe.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return DaemonProbe(
            url="", source="a snapshot", status="error", error=f"the recorded Docker probe is damaged: {exc}"
        )


def _config_file(process: DaemonProcess) -> str:
    given = process.flag_values("--config-file")
    if given:
        return given[-1]
    exe = process.exe or (process.cmdline[0] if process.cmdline else "")
    if exe.startswith("/snap/"):
        return SNAP_DAEMON_JSON
    if process.uid not in (None, 0):
        env = process.env or {}
        base = env.get("XDG_CONFIG_HOME") or (
            os.path.join(env["HOME"], ".config") if env.get("HOME") else None
        )
        if base:
            return os.path.join(base, "docker", "daemon.json")
    return rf.DAEMON_JSON


def _find_dockerd(facts: HostFacts, endpoint: DockerEndpoint) -> ProcessLookup:
    """dockerd behind `endpoint`. The pidfile and "the only dockerd" count only for the default socket:
    for another socket (Docker Desktop's proxy, a second daemon) or a remote URL they would name the wrong
    process."""
    path = endpoint.socket_path
    if path is None:
        return ProcessLookup(process=None, notes=(f"{endpoint.url} is not a local socket",))
    default = os.path.normpath(path) in DEFAULT_SOCKETS
    return find_daemon(
        facts.root,
        names=("dockerd",),
        socket_path=path,
        pidfiles=DOCKER_PIDFILES if default else (),
        by_name=default,
    )


def docker_state(ctx: CheckContext) -> DockerState:
    """The endpoint, the daemon probe (recorded for snapshots) and dockerd's process, computed once."""
    facts = ctx.host
    options = ctx.options

    def compute() -> DockerState:
        # The endpoint and dockerd's process are probes too: a replay must not look at the replaying
        # machine's DOCKER_HOST or /proc.
        try:
            endpoint = facts.probe(
                "docker_endpoint",
                lambda: resolve_endpoint(options.docker_host or facts.docker_host),
                encode=lambda e: e.to_dict(),
                decode=DockerEndpoint.from_dict,
            )
        except ProbeNotRecorded:
            endpoint = resolve_endpoint(options.docker_host or facts.docker_host)
        try:
            probe = facts.probe(
                "docker",
                lambda: probe_daemon(endpoint, timeout=options.timeout),
                encode=lambda p: p.to_dict(),
                decode=_decode_probe,
            )
        except ProbeNotRecorded as exc:
            probe = DaemonProbe(url=endpoint.url, source=endpoint.source, status="error", error=str(exc))
        try:
            lookup = facts.probe(
                "dockerd_process",
                lambda: _find_dockerd(facts, endpoint),
                encode=lambda lk: lk.to_dict(),
                decode=ProcessLookup.from_dict,
            )
        except ProbeNotRecorded:
            lookup = ProcessLookup(process=None, notes=("dockerd's process was not recorded in this snapshot",))
        process = lookup.process
        dirs = process.path_dirs if process is not None else None
        hook = lookup_on_path(facts.root, HOOK, dirs) if dirs is not None else None
        in_root = rf.find_binary(facts, HOOK)
        return DockerState(
            endpoint=endpoint,
            probe=probe,
            lookup=lookup,
            hook_on_path=hook,
            hook_in_root=in_root.path if in_root.ok else None,
            config_file=_config_file(process) if process is not None else None,
        )

    return facts.memo("live:docker_state", compute)


# -- helpers -----------------------------------------------------------------------------------------------


def restart_command(state: DockerState) -> str:
    process = state.process
    if process is not None and (process.exe or "").startswith("/snap/"):
        return "sudo snap restart docker"
    if state.probe.rootless or (process is not None and process.uid not in (None, 0)):
        return "systemctl --user restart docker"
    return "sudo systemctl restart docker"


def _vtext(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)


def unreachable(ctx: CheckContext, state: DockerState) -> Finding:
    """`skip` for a daemon that does not answer: what was tried, why it failed, and the fix."""
    p = state.probe
    where = f"{p.url or state.endpoint.url} (from {p.source or state.endpoint.source})"
    evidence = [f"endpoint: {where}"]
    if p.socket_owner:
        evidence.append(f"{state.endpoint.socket_path}: {p.socket_owner}")
    if p.error:
        evidence.append(p.error)
    evidence += list(state.lookup.notes)
    other = "; to use another daemon pass --docker-host URL or set DOCKER_HOST"
    if p.status == "permission":
        return skipped(
            f"cannot talk to the Docker daemon: {p.error}",
            evidence,
            remedy="Add yourself to the docker group: `sudo usermod -aG docker $USER`, then log out and back in "
            "(or `newgrp docker`); or run `sudo gpudoctor --check`.",
        )
    if p.status == "no_socket":
        if state.endpoint.source == "the default socket" and not rf.docker_installed(ctx.host).ok:
            return skipped(
                f"Docker is not installed (no dockerd in {', '.join(rf.PATH_DIRS)}) and nothing listens at {where}",
                evidence,
                remedy="Install Docker Engine (https://docs.docker.com/engine/install/), or pass --docker-host URL "
                "for a daemon elsewhere.",
            )
        return skipped(
            f"no Docker daemon at {where}: the socket does not exist (dockerd is not running, or listens elsewhere)",
            evidence,
            remedy="Start it: `sudo systemctl start docker` (`sudo systemctl enable docker` starts it at boot)"
            + other
            + ".",
        )
    if p.status == "refused":
        return skipped(
            f"the Docker daemon at {where} is not running: {p.error}",
            evidence,
            remedy="`sudo systemctl restart docker`; `journalctl -u docker -n 50` says why it stopped"
            + other
            + ".",
        )
    if p.status == "timeout":
        return skipped(
            f"the Docker daemon at {where} does not answer: {p.error}",
            evidence,
            remedy="`sudo systemctl status docker` and `journalctl -u docker -n 50` show what it is doing; a hung "
            "daemon needs `sudo systemctl restart docker`.",
        )
    return skipped(
        f"cannot talk to the Docker daemon at {where}: {p.error or p.status}",
        evidence,
        remedy=f"Check the endpoint by hand: `docker --host {p.url or state.endpoint.url} info`"
        + other
        + ".",
    )


def _when(moment: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def _read_daemon_config(ctx: CheckContext, path: str) -> tuple[dict[str, Any] | None, str | None]:
    data = ctx.host.root.try_read_bytes(path)
    if data is None:
        return None, f"{path}: cannot be read"
    try:
        cfg = parse_daemon_json(data, path=path)
    except ParseError as exc:
        return None, str(exc)
    return cfg, None


def _runtime_paths(cfg: dict[str, Any]) -> dict[str, str | None]:
    runtimes = cfg.get("runtimes")
    if not isinstance(runtimes, dict):
        return {}
    return {str(k): (v.get("path") if isinstance(v, dict) else None) for k, v in runtimes.items()}


def _stale(cfg: dict[str, Any], probe: DaemonProbe) -> list[str]:
    """What `cfg` says that the running daemon does not do (runtimes, default runtime)."""
    out: list[str] = []
    for name, path in _runtime_paths(cfg).items():
        if name not in probe.runtimes:
            out.append(f"runtime {name!r} ({path}) is in the file but not in `docker info`")
        elif path and probe.runtimes[name] and path != probe.runtimes[name]:
            out.append(f"runtime {name!r} is {path} in the file but {probe.runtimes[name]} in `docker info`")
    default = cfg.get("default-runtime")
    if isinstance(default, str) and probe.default_runtime and default != probe.default_runtime:
        out.append(
            f"default-runtime is {default!r} in the file but {probe.default_runtime!r} in `docker info`"
        )
    return out


def _config_problems(ctx: CheckContext, state: DockerState, context: list[str]) -> list[Problem]:
    """daemon.json against the running daemon: newer than the daemon, or not the file the daemon reads."""
    process, path = state.process, state.config_file
    if process is None or path is None:
        return []
    problems: list[Problem] = []
    restart = restart_command(state)
    expected = rf.daemon_json_path(ctx.host)
    if path != expected and rf.daemon_json(ctx.host).ok:
        other = rf.daemon_json(ctx.host).value or {}
        stale = _stale(other, state.probe) if isinstance(other, dict) else []
        if stale:
            problems.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"the running dockerd reads {path}, not {expected}: what {expected} registers does not apply",
                    evidence=[
                        f"/proc/{process.pid}/cmdline: {shlex.join(process.cmdline)}"[:400],
                        *(f"{expected}: {line}" for line in stale),
                    ],
                    remedy=f"Configure the file dockerd reads ({path}), e.g. `sudo nvidia-ctk runtime configure "
                    f"--runtime=docker --config={path}`, then `{restart}`.",
                )
            )
    st = ctx.host.root.stat(path)
    if st is None:
        context.append(f"{path}: not present (the running dockerd uses its defaults)")
        return problems
    context.append(f"{path}: the file the running dockerd reads, last changed {_when(st.st_mtime)}")
    if process.start_time is None or not process.started_before(st.st_mtime):
        return problems
    started = f"dockerd (pid {process.pid}) started {_when(process.start_time)}"
    cfg, error = _read_daemon_config(ctx, path)
    if error is not None:
        problems.append(
            Problem(
                status=Status.FAIL,
                summary=f"{path} changed after dockerd started and no longer parses: the next `{restart}` fails",
                evidence=[started, error],
                remedy=f"Fix {path} (`python3 -m json.tool {path}` shows where), then `{restart}`.",
            )
        )
        return problems
    assert cfg is not None
    stale = _stale(cfg, state.probe)
    if stale:
        problems.append(
            Problem(
                status=Status.FAIL,
                summary=f"dockerd started before {path} last changed and has not applied it: {stale[0]}",
                evidence=[started, f"{path}: changed {_when(st.st_mtime)}", *stale],
                remedy=f"Restart the daemon so it reads the file: `{restart}` (a reload, `sudo systemctl reload "
                "docker`, applies runtimes and default-runtime but not exec-opts or features).",
            )
        )
    else:
        problems.append(
            Problem(
                status=Status.WARN,
                summary=f"{path} changed after dockerd started: its runtimes are applied (it was reloaded), but "
                "exec-opts, features and storage settings take effect only after a restart",
                evidence=[started, f"{path}: changed {_when(st.st_mtime)}"],
                remedy=f"`{restart}` if those settings changed.",
            )
        )
    return problems


def _hook_problems(ctx: CheckContext, state: DockerState, context: list[str]) -> list[Problem]:
    """Is the toolkit hook on the PATH dockerd really has, and was it there when dockerd started?"""
    process = state.process
    restart = restart_command(state)
    gpu_error = 'could not select device driver "" with capabilities: [[gpu]]'
    if process is None:
        where = "/proc" if ctx.host.root.is_live_root else "the root's /proc"
        context.append(
            f"dockerd's process is not visible in {where} ({'; '.join(state.lookup.notes) or 'not found'}):"
            " its PATH, start time and config file are unknown"
        )
        return []
    context.append(process.describe())
    if process.env is None:
        context.append(process.env_error or f"/proc/{process.pid}/environ: unreadable")
        return []
    path_value = process.env.get("PATH", "")
    context.append(f"dockerd's PATH (/proc/{process.pid}/environ): {path_value or '(empty)'}")
    if state.hook_on_path is not None:
        context.append(f"{HOOK}: {state.hook_on_path} (on dockerd's PATH)")
        changed = state.hook_changed_after_start(ctx)
        if changed is not None and process.start_time is not None:
            return [
                Problem(
                    status=Status.FAIL,
                    summary=f"{state.hook_on_path} appeared after dockerd started: dockerd has no `nvidia` device "
                    f"driver until it restarts, so `docker run --gpus` fails with `{gpu_error}`",
                    evidence=[
                        f"dockerd (pid {process.pid}) started {_when(process.start_time)}",
                        f"{state.hook_on_path}: installed {_when(changed)} (inode change time)",
                    ],
                    remedy=f"`{restart}` (a restart, not a reload: dockerd looks for the hook only at start).",
                )
            ]
        return []
    if state.hook_in_root is not None:
        hook_dir = os.path.dirname(state.hook_in_root)
        return [
            Problem(
                status=Status.FAIL,
                summary=f"{state.hook_in_root} is installed but not on dockerd's PATH: `docker run --gpus` fails "
                f"with `{gpu_error}`",
                evidence=[f"dockerd's PATH: {path_value or '(empty)'}", f"{state.hook_in_root}: present"],
                remedy=f"Give dockerd a PATH that includes {hook_dir}: `sudo systemctl edit docker`, add "
                f"`[Service]` and `Environment=PATH={hook_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`"
                f", then `{restart}`.",
            )
        ]
    context.append(f"{HOOK}: not on dockerd's PATH (no `--gpus`; runtimes may still attach GPUs)")
    return []


def _platform_problems(ctx: CheckContext, state: DockerState, context: list[str]) -> list[Problem]:
    """Docker Desktop, snap, rootless: daemons that cannot see or use the host's toolkit as configured."""
    p = state.probe
    problems: list[Problem] = []
    gpu_error = 'could not select device driver "" with capabilities: [[gpu]]'
    if p.desktop or state.endpoint.is_desktop:
        problems.append(
            Problem(
                status=Status.FAIL,
                summary=f"this is Docker Desktop ({p.operating_system or state.endpoint.context}): its daemon runs in "
                f"a VM that sees neither this host's NVIDIA toolkit nor its daemon.json (`{gpu_error}`)",
                evidence=[
                    f"endpoint {p.url} from {p.source}",
                    f"docker info: OperatingSystem = {p.operating_system!r}",
                ],
                remedy="Use Docker Engine (docker-ce) with the NVIDIA Container Toolkit: `docker context use default` "
                "(NVIDIA's toolkit supports only docker-ce on Linux, not Docker Desktop).",
            )
        )
    sudo = sudo_user_context()
    if sudo is not None and not state.endpoint.is_desktop and sudo[1].is_desktop:
        user, uctx = sudo
        problems.append(
            Problem(
                status=Status.WARN,
                summary=f"under sudo this talks to {p.url}, but as {user} `docker` uses context {uctx.name!r} "
                "(Docker Desktop): GPU containers work with sudo and fail without it",
                evidence=[f"{uctx.config_dir}/config.json: currentContext = {uctx.name!r} ({uctx.host})"],
                remedy=f"As {user}: `docker context use default`.",
            )
        )
    process = state.process
    exe = (process.exe or "") if process is not None else ""
    if exe.startswith("/snap/") or (p.docker_root_dir or "").startswith("/var/snap/docker"):
        problems.append(
            Problem(
                status=Status.WARN,
                summary="Docker is the snap package: it reads /var/snap/docker/current/config/daemon.json, not "
                "/etc/docker/daemon.json, and its confinement hides host programs such as the NVIDIA hook",
                evidence=[f"dockerd: {exe}" if exe else f"docker info: DockerRootDir = {p.docker_root_dir}"],
                remedy="Remove the snap (`sudo snap remove docker`) and install docker-ce from Docker's apt repository; "
                "on recent snap revisions `snap logs docker.nvidia-container-toolkit` shows its bundled toolkit.",
            )
        )
    if p.rootless:
        tk = rf.toolkit_config(ctx.host).value
        context.append("docker info: SecurityOptions include name=rootless")
        if tk is None or not tk.no_cgroups:
            problems.append(
                Problem(
                    status=Status.WARN,
                    summary="the daemon is rootless: it cannot program device cgroups, so GPU containers fail with "
                    "`nvidia-container-cli: mount error: ... permission denied` unless the toolkit skips cgroups",
                    evidence=[
                        "docker info: SecurityOptions include name=rootless",
                        f"{rf.TOOLKIT_CONFIG}: no-cgroups is not true",
                    ],
                    remedy="`sudo nvidia-ctk config --set nvidia-container-cli.no-cgroups --in-place`, configure the "
                    "rootless daemon's own file (`nvidia-ctk runtime configure --runtime=docker "
                    "--config=$HOME/.config/docker/daemon.json`) and `systemctl --user restart docker`; or use CDI.",
                )
            )
    return problems


def _version_problems(ctx: CheckContext, state: DockerState, context: list[str]) -> list[Problem]:
    p = state.probe
    version = p.version_tuple()
    problems: list[Problem] = []
    if version is not None and version[:2] < GPUS_MIN_VERSION:
        problems.append(
            Problem(
                status=Status.FAIL,
                summary=f"Docker {p.server_version} predates 19.03: `docker run --gpus` does not exist there",
                evidence=[f"docker version: Server {p.server_version}"],
                remedy="Upgrade Docker (https://docs.docker.com/engine/install/), or use `--runtime nvidia`.",
            )
        )
    cfg: dict[str, Any] | None = None
    if state.config_file is not None:
        cfg, _ = _read_daemon_config(ctx, state.config_file)
    features = cfg.get("features") if isinstance(cfg, dict) else None
    cdi_on = isinstance(features, dict) and features.get("cdi") is True
    if p.cdi_spec_dirs:
        context.append(f"CDI: on; spec dirs (docker info): {', '.join(p.cdi_spec_dirs)}")
    elif version is not None and version < CDI_MIN_VERSION:
        context.append(f"CDI: not available in Docker {p.server_version} (needs >= 25 with features.cdi)")
        if cdi_on:
            problems.append(
                Problem(
                    status=Status.WARN,
                    summary=f"features.cdi is on in {state.config_file}, but Docker {p.server_version} predates 25: "
                    "`--device nvidia.com/gpu=all` does not work here",
                    evidence=[
                        f"{state.config_file}: features.cdi = true",
                        f"docker version: Server {p.server_version}",
                    ],
                    remedy="Upgrade to Docker >= 25 for CDI, or use `--gpus all` / `--runtime`.",
                )
            )
    else:
        context.append(
            "CDI: off (docker info lists no CDI spec dirs; enable with "
            '`"features": {"cdi": true}` in daemon.json, Docker >= 25)'
        )
    return problems


def docker_daemon_finding(ctx: CheckContext) -> Finding:
    """The `runtime.docker_daemon` check (see the module docstring)."""
    state = docker_state(ctx)
    p = state.probe
    if not p.ok:
        return unreachable(ctx, state)
    runtimes = ", ".join(f"{name} ({path})" if path else name for name, path in sorted(p.runtimes.items()))
    context = [
        f"endpoint: {p.url} (from {p.source})",
        f"docker version: Server {p.server_version} (API {p.api_version}), {p.operating_system}",
        f"docker info: runtimes {runtimes or 'none'}; default runtime {p.default_runtime}",
        f"docker info: cgroup driver {p.cgroup_driver}, cgroup v{p.cgroup_version}",
    ]
    problems: list[Problem] = []
    problems += _platform_problems(ctx, state, context)
    problems += _version_problems(ctx, state, context)
    problems += _hook_problems(ctx, state, context)
    problems += _config_problems(ctx, state, context)
    routes = [r for r in state.routes(ctx) if r.route != "direct"]
    if routes:
        context.append("GPU routes: " + "; ".join(f"{r.flag} ({r.why})" for r in routes))
    elif not any(pr.status is Status.FAIL for pr in problems):
        # A warning, not a failure: runtime.docker_config already fails for this from the files, and the
        # parity check, which runs after this one, can still test the driver through the direct route.
        problems.append(
            Problem(
                status=Status.WARN,
                summary="the running daemon cannot attach a GPU by itself: `--gpus` has no toolkit hook on dockerd's "
                "PATH and no nvidia or gpudoctor runtime is registered (only explicit --device/-v work)",
                evidence=[f"docker info: runtimes {runtimes or 'none'}"],
                remedy="`sudo gpudoctor fix docker-runtime` registers gpudoctor's runtime; or install the NVIDIA "
                f"Container Toolkit; then `{restart_command(state)}`.",
                fixes=["docker-runtime"],
            )
        )
    flags = ", ".join(r.flag for r in routes) or "none"
    return verdict(
        problems, ok=f"Docker {p.server_version} at {p.url} answers; GPU routes: {flags}", context=context
    )
