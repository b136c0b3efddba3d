"""Fix ``docker-runtime``: register the GPU runtime in daemon.json, then make dockerd load it.

The runtime is ``nvidia`` (path of the toolkit's ``nvidia-container-runtime``) when the toolkit is
installed, else ``gpudoctor`` (our own shim, ``gpudoctor-runtime``); ``ctx.runtime`` forces one. The
edit is a minimal textual merge: every other key keeps its value, its bytes and its place. Then dockerd
gets SIGHUP, which reloads runtimes without stopping containers, and the fix waits until ``/info`` lists
the runtime. Only if that fails is ``systemctl restart docker`` offered, and only on a confirmation,
because a restart stops running containers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from gpudoctor.fixes.apply import apply_plan, read_config_text
from gpudoctor.fixes.base import (
    ApplyResult,
    Command,
    FileEdit,
    Fix,
    FixContext,
    FixError,
    OutputCallback,
    Plan,
)
from gpudoctor.fixes.dockerd import Dockerd, docker_info, find_dockerd, runtimes_known
from gpudoctor.fixes.jsonedit import JsonObjectEditor
from gpudoctor.fixes.paths import (
    GPUDOCTOR_RUNTIME,
    LAUNCHER_PATH,
    NVIDIA_RUNTIME,
    NVIDIA_RUNTIME_DEFAULT_PATH,
    launcher_text,
)
from gpudoctor.host import runtime_facts as rf

RELOAD_TIMEOUT = 20.0


def restart_question(unit: str) -> str:
    return (
        f"dockerd did not load the new runtime on SIGHUP. Restart it now with `systemctl restart {unit}`? "
        "This STOPS every running container."
    )


@dataclass(slots=True, frozen=True, kw_only=True)
class RuntimeChoice:
    """The runtime to register: its daemon.json name, binary path, notes, and the launcher file to write."""

    name: str
    path: str
    notes: tuple[str, ...] = ()
    launcher: FileEdit | None = None


def choose_runtime(ctx: FixContext, registered: dict[str, Any] | None = None) -> RuntimeChoice:
    """What to register for this host: ``nvidia`` when the toolkit is installed, else ``gpudoctor``.

    For ``gpudoctor`` an existing registration whose binary exists is kept as it is; otherwise the path is
    the engine's launcher (written by this fix when missing or out of date).
    """
    root = ctx.facts.root
    nvidia = rf.find_binary(ctx.facts, NVIDIA_RUNTIME)
    choice = ctx.runtime or ("nvidia" if nvidia.ok else "gpudoctor")
    if choice == "nvidia":
        if not nvidia.ok or nvidia.path is None:
            return RuntimeChoice(
                name="nvidia",
                path=NVIDIA_RUNTIME_DEFAULT_PATH,
                notes=(f"{NVIDIA_RUNTIME} is not installed yet; registering {NVIDIA_RUNTIME_DEFAULT_PATH}, where "
                       "the toolkit package puts it (install it with `gpudoctor install`)",),
            )
        return RuntimeChoice(name="nvidia", path=nvidia.path)
    if choice != "gpudoctor":
        raise FixError(f"unknown runtime {choice!r}: choose nvidia or gpudoctor")
    notes: list[str] = []
    if ctx.runtime is None:
        notes.append(
            "the NVIDIA Container Toolkit is not installed, so gpudoctor's own runtime is registered "
            "(it needs no vendor packages)"
        )
    entry = (registered or {}).get("gpudoctor")
    current = entry.get("path") if isinstance(entry, dict) else None
    if ctx.runtime_path is None and isinstance(current, str) and current and rf.find_binary(ctx.facts, current).ok:
        return RuntimeChoice(name="gpudoctor", path=current, notes=tuple(notes))
    path = ctx.runtime_path or LAUNCHER_PATH
    text, launcher_notes = launcher_text(root, config=ctx.runtime_config)
    notes += launcher_notes
    before = read_config_text(root, path)
    launcher = None if before == text else FileEdit(path=path, before=before, after=text, mode=0o755)
    return RuntimeChoice(name="gpudoctor", path=path, notes=tuple(notes), launcher=launcher)


def _ours(path: str) -> bool:
    """A runtime binary this fix answers for: NVIDIA's runtime (any variant) or gpudoctor's shim."""
    base = os.path.basename(path)
    return base.startswith(NVIDIA_RUNTIME) or base == GPUDOCTOR_RUNTIME


def stale_runtimes(ctx: FixContext, runtimes: dict[str, Any], keep: str) -> list[tuple[str, str]]:
    """(name, path) of GPU runtime entries whose binary is missing, other than `keep`."""
    out: list[tuple[str, str]] = []
    for name, entry in runtimes.items():
        if name == keep or not isinstance(entry, dict):
            continue
        path = entry.get("path")
        if isinstance(path, str) and path and _ours(path) and not rf.find_binary(ctx.facts, path).ok:
            out.append((name, path))
    return out


def _systemd_unit(ctx: FixContext, pid: int) -> str | None:
    text = ctx.facts.root.try_read_text(f"/proc/{pid}/cgroup") or ""
    for line in text.splitlines():
        for part in line.rsplit(":", 1)[-1].split("/"):
            if part.endswith(".service"):
                return part
    return None


class DockerRuntimeFix(Fix):
    id = "docker-runtime"
    title = "Register the GPU runtime in Docker's daemon.json and reload dockerd"
    addresses = ("runtime.docker_config", "runtime.docker_daemon")

    def _target(self, ctx: FixContext) -> tuple[str, Dockerd | None]:
        daemon = None
        if ctx.live and not ctx.facts.offline:
            daemon = find_dockerd(ctx.facts.root, ctx.facts.docker_host)
            if daemon is None and ctx.facts.docker_host and ctx.docker_config is None:
                raise FixError(
                    f"no dockerd found behind --docker-host {ctx.facts.docker_host}, so gpudoctor cannot tell "
                    "which daemon.json it reads. Start that daemon, or name the file with --docker-config."
                )
        if ctx.docker_config:
            return ctx.docker_config, daemon
        if daemon is not None:
            return daemon.config_file, daemon
        # No running daemon to ask: the file its systemd unit names (--config-file), else the default.
        return rf.daemon_json_path(ctx.facts), None

    def plan(self, ctx: FixContext) -> Plan:
        root = ctx.facts.root
        config, daemon = self._target(ctx)
        text = read_config_text(root, config)
        editor = JsonObjectEditor(text or "", path=config)
        runtimes = editor.data.get("runtimes")
        if runtimes is not None and not isinstance(runtimes, dict):
            raise FixError(
                f"{config}: \"runtimes\" is a JSON {type(runtimes).__name__}, not an object; dockerd will not "
                "accept it either. The file is unchanged; fix that key and run the fix again."
            )
        runtimes = runtimes or {}
        choice = choose_runtime(ctx, runtimes)
        name, path, notes = choice.name, choice.path, list(choice.notes)
        broken = sorted(n for n, e in runtimes.items() if n != name and not isinstance(e, dict))
        if broken:
            raise FixError(
                f"{config}: runtimes.{broken[0]} is not an object, so dockerd refuses this file. gpudoctor does "
                "not guess what it was meant to be; the file is unchanged. Fix or remove that entry and run the "
                "fix again."
            )
        flags = rf.docker_unit(ctx.facts).values("--add-runtime") + (daemon.flag_values("--add-runtime") if daemon else [])
        entry = runtimes.get(name)
        current = entry.get("path") if isinstance(entry, dict) else None
        # A registration that works is kept as the person wrote it (nvidia-ctk writes a bare name).
        works = isinstance(current, str) and bool(current) and (
            current == path or rf.find_binary(ctx.facts, current).ok
        )
        if not works:
            if flags:
                raise FixError(
                    f"dockerd is started with --add-runtime ({flags[0]}), and dockerd refuses runtimes given "
                    f"both as a flag and in {config}. Add `--add-runtime {name}={path}` to its command line "
                    "(systemd unit or drop-in) instead."
                )
            editor.set(("runtimes", name, "path"), path)
        default = editor.data.get("default-runtime")
        for stale, stale_path in stale_runtimes(ctx, runtimes, name):
            editor.delete(("runtimes", stale))
            notes.append(f"removed runtimes.{stale}: its binary {stale_path} is missing (containers using it fail)")
            if default == stale:
                editor.set(("default-runtime",), name)
                notes.append(f"default-runtime was {stale!r}; it is now {name!r}")
        default_flags = rf.docker_unit(ctx.facts).values("--default-runtime") + (
            daemon.flag_values("--default-runtime") if daemon else []
        )
        if ctx.set_default_runtime and editor.data.get("default-runtime") != name:
            if default_flags:
                raise FixError(
                    "dockerd is started with --default-runtime; change that flag instead "
                    f"of {config} (dockerd refuses a setting given both ways)."
                )
            editor.set(("default-runtime",), name)
        edits: tuple[FileEdit, ...] = ()
        if text is None or editor.text != text:
            edits = (FileEdit(path=config, before=text, after=editor.text),)
        if choice.launcher is not None:
            # The launcher first: daemon.json must never name a runtime binary that is not there yet.
            edits = (choice.launcher, *edits)

        commands: list[Command] = []
        known = None
        if daemon is not None and daemon.socket_path is not None:
            known = runtimes_known(docker_info(daemon.socket_path))
        if daemon is not None and (edits or (known is not None and name not in known)):
            commands.append(
                Command(
                    argv=("kill", "-HUP", str(daemon.pid)),
                    description="dockerd reloads daemon.json; running containers keep running",
                    needs_root=daemon.uid == 0,
                )
            )
        if not ctx.live and edits:
            notes.append(
                f"--root is {root.root}: dockerd there is not signalled. On that host run "
                "`systemctl reload docker` (or `kill -HUP $(cat /var/run/docker.pid)`)."
            )
        elif daemon is None and edits:
            notes.append("dockerd is not running here; it reads the new daemon.json when it starts")
        return Plan(
            fix_id=self.id,
            edits=edits,
            commands=tuple(commands),
            notes=tuple(notes),
            needs_root=ctx.live and not (daemon is not None and daemon.uid != 0),
            data={
                "runtime": name,
                "path": path,
                "config": config,
                "pid": daemon.pid if daemon else None,
                "socket": daemon.socket_path if daemon else None,
            },
        )

    def apply(self, ctx: FixContext, plan: Plan, on_output: OutputCallback | None = None) -> ApplyResult:
        def after(result: ApplyResult, out: OutputCallback) -> None:
            self._await_reload(ctx, plan, result, out)

        return apply_plan(ctx, plan, on_output, after_commands=after)

    @staticmethod
    def _wait_for_runtime(socket_path: str, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            known = runtimes_known(docker_info(socket_path))
            if known is not None and name in known:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def _await_reload(self, ctx: FixContext, plan: Plan, result: ApplyResult, out: OutputCallback) -> None:
        name = str(plan.data.get("runtime"))
        sock = plan.data.get("socket")
        pid = plan.data.get("pid")
        if not any(argv[:2] == ("kill", "-HUP") for argv in result.commands_run) or not sock:
            return
        if self._wait_for_runtime(str(sock), name, RELOAD_TIMEOUT):
            msg = f"dockerd (PID {pid}) reloaded: `docker info` lists the {name} runtime"
            result.messages.append(msg)
            out(msg)
            return
        unit = _systemd_unit(ctx, int(pid)) if pid else None
        if unit is None:
            result.ok = False
            result.error = (
                f"{plan.data.get('config')} is updated, but dockerd (PID {pid}) did not load the {name} runtime "
                "after SIGHUP, and it is not a systemd service gpudoctor could restart. Restart that dockerd "
                "(this stops its running containers)."
            )
            return
        if not ctx.ask(restart_question(unit)):
            result.ok = False
            result.error = (
                f"{plan.data.get('config')} is updated, but dockerd did not load the {name} runtime after SIGHUP. "
                f"Run `systemctl restart {unit}` when you can (it stops running containers)."
            )
            return
        from gpudoctor.fixes.apply import run_command

        out(f"$ systemctl restart {unit}")
        status = run_command(("systemctl", "restart", unit), out)
        result.commands_run.append(("systemctl", "restart", unit))
        if status != 0 or not self._wait_for_runtime(str(sock), name, RELOAD_TIMEOUT * 3):
            result.ok = False
            result.error = f"`systemctl restart {unit}` did not bring dockerd back with the {name} runtime"
            return
        result.messages.append(f"docker restarted: `docker info` lists the {name} runtime")
