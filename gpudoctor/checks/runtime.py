"""Container runtime checks: Docker's daemon.json, containerd's config, CDI specs, and cgroups.

Files say what each engine is configured to do; these checks read them the way the engine would and
name the file and value that decide each finding:

- `runtime.docker_config`: daemon.json parses (else dockerd will not start), every registered runtime's
  binary exists, `default-runtime` names a registered runtime, and which GPU routes this leaves.
- `runtime.containerd`: the CRI config (v1/v2/v3 with imports; k3s/RKE2's generated one) registers an
  nvidia runtime whose binary exists, with `SystemdCgroup` matching runc's.
- `runtime.cdi`: every CDI spec parses and matches this host (driver version, libraries, device nodes).
- `runtime.cgroups`: cgroup v2 + the systemd cgroup driver + the legacy hook = GPUs vanish from running
  containers after `systemctl daemon-reload`.
- `runtime.docker_daemon` (live) is registered here; gpudoctor.checks.live_docker implements it.
"""

from __future__ import annotations

import os

from gpudoctor.checks.base import CheckContext, Finding, Status, check, failed, passed, skipped, warned
from gpudoctor.checks.toolkit import HOOK, RUNTIME, Problem, verdict
from gpudoctor.host import runtime_facts as rf

# Runtimes dockerd knows without any configuration.
DOCKER_BUILTIN_RUNTIMES = ("runc", "io.containerd.runc.v2", "io.containerd.runtime.v1.linux")
# daemon.json keys that dockerd refuses when the same setting is also given as a flag in its unit.
FLAG_CONFLICTS: dict[str, tuple[str, ...]] = {
    "hosts": ("-H", "--host"),
    "exec-opts": ("--exec-opt",),
    "default-runtime": ("--default-runtime",),
    "data-root": ("--data-root",),
}
MAX_LISTED = 5


def _restart_docker() -> str:
    return "`sudo systemctl restart docker`"


def _listing(items: list[str], limit: int = MAX_LISTED) -> list[str]:
    if len(items) <= limit:
        return items
    return [*items[:limit], f"... and {len(items) - limit} more"]


def _missing_binary_error(path: str) -> str:
    if path.startswith("/"):
        return f"fork/exec {path}: no such file or directory"
    return f'exec: "{path}": executable file not found in $PATH'


# -- runtime.docker_config ---------------------------------------------------------------------------------


@check(
    "runtime.docker_config",
    title="Docker daemon.json",
    depends_on=("toolkit.installed",),
    layer="runtime",
)
def docker_config(ctx: CheckContext) -> Finding:
    host = ctx.host
    dockerd = rf.docker_installed(host)
    loaded = rf.daemon_json(host)
    path = loaded.path
    if not loaded.exists and not dockerd.ok:
        return skipped(f"Docker is not installed ({dockerd.describe()}; no {path})")
    hook = rf.find_binary(host, HOOK)
    context = [dockerd.describe()]
    if not loaded.exists:
        context.append(f"{path}: not present (Docker's defaults apply)")
        if hook.ok:
            return passed(
                f"no {path}: Docker's defaults apply, and `docker run --gpus` works through the toolkit hook",
                [*context, hook.describe(), *_runtime_hint()],
            )
        return failed(
            "Docker has no way to give a container a GPU: no toolkit hook and no GPU runtime registered",
            [*context, hook.describe()],
            remedy="`sudo gpudoctor fix docker-runtime` registers gpudoctor's runtime, or install the toolkit.",
            fixes=["docker-runtime"],
        )
    if loaded.unreadable:
        return warned(
            f"cannot read {path}: {loaded.unreadable}",
            [f"{path}: {loaded.unreadable}"],
            remedy="Run gpudoctor as root (`sudo gpudoctor --check`) so it can read Docker's config.",
        )
    if loaded.error is not None:
        err = loaded.error
        where = f" at line {err.line}, column {err.column}" if err.line else ""
        return Finding(
            status=Status.FAIL,
            summary=f"{path} cannot be used{where}: {err.message}; dockerd refuses to start "
            f"(`unable to configure the Docker daemon with file {path}`)",
            evidence=[str(err)],
            remedy=f"Fix the JSON at that position (`python3 -m json.tool {path}` shows it), then "
            f"{_restart_docker()}. gpudoctor's fixes will not edit a file they cannot parse.",
        )
    cfg = loaded.value
    if not isinstance(cfg, dict):
        return Finding(
            status=Status.FAIL,
            summary=f"{path} holds a JSON {type(cfg).__name__}, not an object: dockerd refuses to start",
            evidence=[f"{path}: top-level value is a {type(cfg).__name__}"],
            remedy=f"Make {path} a JSON object (`{{}}` at least), then {_restart_docker()}.",
        )

    problems: list[Problem] = []
    dups = rf.daemon_json_duplicates(host)
    if dups:
        problems.append(
            Problem(
                status=Status.WARN,
                summary=f"{path} sets {', '.join(dups)} twice: dockerd keeps only the last one, so the first is "
                "silently ignored",
                evidence=[f"{path}: duplicate key {key}" for key in dups],
                remedy=f"Merge the duplicate entries into one in {path}, then {_restart_docker()}.",
            )
        )
    problems += _runtime_entry_problems(cfg, path)
    runtimes = rf.docker_runtimes(host)
    registered = {rt.name for rt in runtimes}
    for rt in runtimes:
        context.append(f"{rt.source}: path = {rt.path!r}" if rt.path else f"{rt.source}: no path")
        if rt.binary is not None and not rt.binary.ok:
            problems.append(_missing_runtime_problem(ctx, rt, is_default=cfg.get("default-runtime") == rt.name))
        elif rt.binary is not None:
            context.append(rt.binary.describe())
    default = cfg.get("default-runtime")
    unit = rf.docker_unit(host)
    unit_default = unit.values("--default-runtime")
    if unit_default:
        default = unit_default[-1]
    if default is not None:
        if not isinstance(default, str) or (default not in registered and default not in DOCKER_BUILTIN_RUNTIMES):
            problems.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"default-runtime {default!r} is not a registered runtime: dockerd refuses to start "
                    f"(`specified default runtime '{default}' does not exist`)",
                    evidence=[
                        f"{path}: default-runtime = {default!r}",
                        f"registered runtimes: {', '.join(sorted(registered)) or 'none'} "
                        f"(built in: {', '.join(DOCKER_BUILTIN_RUNTIMES)})",
                    ],
                    remedy=(
                        "Register it: `sudo nvidia-ctk runtime configure --runtime=docker --set-as-default` "
                        if default == "nvidia"
                        else f"Register a runtime named {default!r} in `runtimes`, "
                    )
                    + f"or remove default-runtime from {path}; then {_restart_docker()}.",
                    fixes=["docker-runtime"] if default in ("nvidia", "gpudoctor") else [],
                )
            )
        else:
            context.append(f"{path}: default-runtime = {default!r}")
    problems += _flag_conflicts(cfg, path, unit)
    features = cfg.get("features")
    if isinstance(features, dict) and features.get("cdi") is True:
        context.append(f"{path}: features.cdi = true (`--device nvidia.com/gpu=all` needs Docker >= 25)")

    routes = _gpu_routes(runtimes, hook_ok=hook.ok)
    context.append("GPU routes: " + ("; ".join(f"{flag} ({how})" for flag, how in routes) if routes else "none"))
    if not any(rt.name == "nvidia" for rt in runtimes) and hook.ok:
        context += _runtime_hint()
    if not routes:
        problems.append(
            Problem(
                status=Status.FAIL,
                summary="Docker has no way to give a container a GPU: no toolkit hook and no GPU runtime",
                evidence=[hook.describe()],
                remedy="`sudo gpudoctor fix docker-runtime` registers gpudoctor's runtime, or install the toolkit.",
                fixes=["docker-runtime"],
            )
        )
    return verdict(problems, ok=f"{path} is valid; GPU routes: {', '.join(flag for flag, _ in routes)}",
                   context=context)


def _runtime_hint() -> list[str]:
    return [
        "`--runtime nvidia` is not registered (not needed for `--gpus`); for compose `runtime: nvidia`: "
        "`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`"
    ]


def _runtime_entry_problems(cfg: dict[str, object], path: str) -> list[Problem]:
    out: list[Problem] = []
    runtimes = cfg.get("runtimes")
    if runtimes is None:
        return out
    if not isinstance(runtimes, dict):
        return [
            Problem(
                status=Status.FAIL,
                summary=f"`runtimes` in {path} is a {type(runtimes).__name__}, not an object: dockerd refuses to start",
                evidence=[f"{path}: runtimes = {runtimes!r}"[:200]],
                remedy=f'Make it an object: `"runtimes": {{"nvidia": {{"path": "nvidia-container-runtime"}}}}`, '
                f"then {_restart_docker()}.",
                fixes=["docker-runtime"],
            )
        ]
    for name, entry in runtimes.items():
        if not isinstance(entry, dict):
            out.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"runtime {name!r} in {path} is not an object: dockerd refuses to start",
                    evidence=[f"{path}: runtimes.{name} = {entry!r}"[:200]],
                    remedy=f'Write it as `"{name}": {{"path": "/path/to/binary"}}`, then {_restart_docker()}.',
                    fixes=["docker-runtime"],
                )
            )
        elif not entry.get("path") and not entry.get("runtimeType"):
            out.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"runtime {name!r} in {path} has no path: dockerd cannot run it",
                    evidence=[f"{path}: runtimes.{name} = {entry!r}"[:200]],
                    remedy=f"Give runtimes.{name} a `path`, or remove it; then {_restart_docker()}.",
                    fixes=["docker-runtime"],
                )
            )
    return out


def _missing_runtime_problem(ctx: CheckContext, rt: rf.DockerRuntime, *, is_default: bool) -> Problem:
    binary = rt.binary
    assert binary is not None and rt.path is not None
    who = "every container (it is the default runtime)" if is_default else f"containers run with --runtime {rt.name}"
    base = os.path.basename(rt.path)
    ours = base.startswith(RUNTIME) or base == rf.GPUDOCTOR_RUNTIME_BASENAME
    if base.startswith(RUNTIME):
        cure = f"Reinstall it (`{rf.install_command(ctx.host, 'nvidia-container-toolkit-base')}`)"
    elif base == rf.GPUDOCTOR_RUNTIME_BASENAME:
        cure = "Reinstall gpudoctor, or run `sudo gpudoctor fix docker-runtime` to register it again"
    else:
        cure = f"Reinstall the package that provides {base}"
    return Problem(
        status=Status.FAIL,
        summary=f"Docker runtime {rt.name!r} points to {rt.path}, which is missing: {who} fail with "
        f"`{_missing_binary_error(rt.path)}`",
        evidence=[f"{rt.source}: path = {rt.path!r}", binary.describe()],
        remedy=f"{cure}, or remove the {rt.name!r} entry from {rt.source.split(':', 1)[0]}; then {_restart_docker()}.",
        # The docker-runtime fix re-registers (or drops) only GPU runtimes: NVIDIA's and gpudoctor's.
        fixes=["docker-runtime"] if ours else [],
    )


def _flag_conflicts(cfg: dict[str, object], path: str, unit: rf.DockerUnit) -> list[Problem]:
    out: list[Problem] = []
    for key, flags in FLAG_CONFLICTS.items():
        if key in cfg and unit.has(*flags):
            out.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"{key!r} is set both in {path} and as {flags[-1]} in dockerd's unit: dockerd refuses "
                    "to start (`the following directives are specified both as a flag and in the configuration "
                    "file`)",
                    evidence=[f"{path}: {key} = {cfg[key]!r}"[:200], f"{unit.source}: ExecStart={unit.exec_start}"],
                    remedy=f"Keep one of the two: remove {key!r} from {path}, or the flag from {unit.source} "
                    "(then `sudo systemctl daemon-reload`); then `sudo systemctl restart docker`.",
                )
            )
    return out


def _gpu_routes(runtimes: list[rf.DockerRuntime], *, hook_ok: bool) -> list[tuple[str, str]]:
    """(docker run flag, how it works) for every way this Docker can attach a GPU."""
    routes: list[tuple[str, str]] = []
    if hook_ok:
        routes.append(("--gpus", "toolkit hook"))
    for rt in runtimes:
        base = os.path.basename(rt.path or "")
        gpu = base.startswith(RUNTIME) or base == rf.GPUDOCTOR_RUNTIME_BASENAME or rt.name in ("nvidia", "gpudoctor")
        if gpu and rt.binary is not None and rt.binary.ok:
            routes.append((f"--runtime {rt.name}", rt.path or ""))
    return routes


# -- runtime.containerd ------------------------------------------------------------------------------------


def _containerd_remedy(ctx: CheckContext, setup: rf.ContainerdSetup) -> str:
    if setup.flavor in ("k3s", "rke2"):
        tmpl = f"{setup.loaded.path}.tmpl"
        service = "k3s" if setup.flavor == "k3s" else "rke2-server"
        first = "" if rf.find_binary(ctx.host, RUNTIME).ok else "install the toolkit, then "
        return (
            f"{setup.flavor} regenerates {setup.loaded.path} at every start and adds the nvidia runtimes only when "
            f"it finds nvidia-container-runtime then: {first}`sudo systemctl restart {service}`. "
            f"Put custom settings in {tmpl}, never in config.toml."
        )
    return (
        "`sudo nvidia-ctk runtime configure --runtime=containerd` (or `sudo gpudoctor fix containerd-runtime`), "
        "then `sudo systemctl restart containerd`."
    )


def _is_nvidia_runtime(name: str, binary: str | None) -> bool:
    base = os.path.basename(binary or "")
    return name.startswith("nvidia") or base.startswith(RUNTIME)


def _containerd_problems(ctx: CheckContext, setup: rf.ContainerdSetup, context: list[str]) -> list[Problem]:
    host = ctx.host
    loaded = setup.loaded
    path = loaded.path
    if loaded.unreadable:
        return [
            Problem(
                status=Status.WARN,
                summary=f"cannot read {path}: {loaded.unreadable}",
                evidence=[f"{path}: {loaded.unreadable}"],
                remedy="Run gpudoctor as root so it can read containerd's config.",
            )
        ]
    if loaded.error is not None or loaded.value is None:
        err = loaded.error
        where = f" (line {err.line}, column {err.column})" if err and err.line else ""
        return [
            Problem(
                status=Status.FAIL,
                summary=f"{err.path if err else path} cannot be used{where}: "
                f"{err.message if err else 'unreadable'}; containerd refuses to start",
                evidence=[str(err)] if err else [],
                remedy="Fix the file at that position, then `sudo systemctl restart containerd`.",
            )
        ]
    cfg = loaded.value
    # The containerd-runtime fix edits /etc/containerd (v2/v3 configs); k3s/RKE2 regenerate theirs.
    fix = ["containerd-runtime"] if setup.flavor == "containerd" and cfg.version >= 2 else []
    files = list(cfg.files) if cfg.files else [path]
    context.append(f"{path}: containerd config version {cfg.version}" + (
        f", reads {', '.join(files[1:])}" if len(files) > 1 else ""))
    if setup.template:
        context.append(f"{setup.template}: present ({setup.flavor} renders config.toml from it)")
    problems: list[Problem] = []

    if setup.flavor == "containerd":
        imported = set(files)
        for dropin in rf.containerd_dropins(host):
            if dropin not in imported:
                problems.append(
                    Problem(
                        status=Status.WARN,
                        summary=f"{dropin} is never read: {path} does not import it",
                        evidence=[f"{dropin}: present",
                                  f"{path}: imports {', '.join(files[1:]) or 'nothing'}"],
                        remedy=f'Add `imports = ["{os.path.dirname(dropin)}/*.toml"]` to the top of {path} '
                        "(or move the file to an imported directory), then `sudo systemctl restart containerd`.",
                        fixes=fix,
                    )
                )

    for warning in cfg.warnings:
        problems.append(
            Problem(
                status=Status.WARN,
                summary=warning,
                evidence=[warning],
                remedy=_containerd_remedy(ctx, setup),
                fixes=fix,
            )
        )
    runtimes = cfg.runtimes or {}
    runc = runtimes.get("runc")
    nvidia = {name: rt for name, rt in runtimes.items() if _is_nvidia_runtime(name, rt.binary_name)}
    for name, rt in nvidia.items():
        where = f"{rt.defined_in or path}: runtimes.{name}"
        if not rt.runtime_type:
            problems.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"containerd runtime {name!r} has no runtime_type: pods using it fail with "
                    "`container.Runtime.Name must be set`",
                    evidence=[f"{where}: runtime_type is not set"],
                    remedy=f'Add `runtime_type = "io.containerd.runc.v2"` to runtimes.{name}, then restart containerd '
                    "(toolkit >= 1.18 writes it).",
                    fixes=fix,
                )
            )
        if not rt.binary_name:
            problems.append(
                Problem(
                    status=Status.WARN,
                    summary=f"containerd runtime {name!r} has no options.BinaryName: it runs plain runc, with no GPUs",
                    evidence=[f"{where}.options: BinaryName is not set"],
                    remedy=_containerd_remedy(ctx, setup),
                    fixes=fix,
                )
            )
        else:
            binary = rf.find_binary(host, rt.binary_name)
            if not binary.ok:
                problems.append(
                    Problem(
                        status=Status.FAIL,
                        summary=f"containerd runtime {name!r} points to {rt.binary_name}, which is missing: its pods "
                        f"fail with `{_missing_binary_error(rt.binary_name)}`",
                        evidence=[f'{where}.options: BinaryName = "{rt.binary_name}"', binary.describe()],
                        remedy=f"Reinstall it (`{rf.install_command(host, 'nvidia-container-toolkit-base')}`), "
                        "then restart containerd.",
                        fixes=fix,
                    )
                )
            else:
                context.append(f'{where}.options: BinaryName = "{rt.binary_name}" (present)')
        if runc is not None and bool(runc.systemd_cgroup) != bool(rt.systemd_cgroup):
            problems.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"SystemdCgroup differs between runc ({_tbool(runc.systemd_cgroup)}) and {name!r} "
                    f"({_tbool(rt.systemd_cgroup)}): GPU pods are killed seconds after they start",
                    evidence=[
                        f"{runc.defined_in or path}: runtimes.runc.options.SystemdCgroup = "
                        f"{_tbool(runc.systemd_cgroup)}",
                        f"{where}.options.SystemdCgroup = {_tbool(rt.systemd_cgroup)}",
                    ],
                    remedy=f"Set `SystemdCgroup = {str(bool(runc.systemd_cgroup)).lower()}` under "
                    f"runtimes.{name}.options to match runc (and the kubelet's cgroupDriver), then restart containerd.",
                    fixes=fix,
                )
            )

    default = cfg.default_runtime_name
    if default and default not in runtimes:
        problems.append(
            Problem(
                status=Status.FAIL,
                summary=f"default_runtime_name {default!r} is not a configured runtime: pods fail with "
                f'`no runtime for "{default}" is configured`',
                evidence=[f'{path}: default_runtime_name = "{default}"',
                          f"configured runtimes: {', '.join(sorted(runtimes)) or 'none'}"],
                remedy=_containerd_remedy(ctx, setup),
                fixes=fix,
            )
        )
    elif default:
        context.append(f'{path}: default_runtime_name = "{default}"')

    if not nvidia:
        if rf.containerd_cdi_on(cfg):
            how = "enable_cdi = true" if cfg.cdi_enabled else "enable_cdi unset, on by default in containerd 2.x"
            context.append(f"{path}: no nvidia runtime, but CDI is on ({how}): pods get GPUs through CDI specs")
        else:
            problems.append(
                Problem(
                    status=Status.WARN,
                    summary=f"containerd ({setup.flavor}) has no nvidia runtime and CDI is off: Kubernetes pods "
                    "cannot get GPUs through it",
                    evidence=[f"{path}: runtimes = {', '.join(sorted(runtimes)) or 'none'}",
                              f"{path}: enable_cdi = {_tbool(cfg.cdi_enabled)}"],
                    remedy=_containerd_remedy(ctx, setup),
                    fixes=fix,
                )
            )
    return problems


def _tbool(value: bool | None) -> str:
    return "not set (false)" if value is None else str(value).lower()


@check("runtime.containerd", title="containerd config", depends_on=("toolkit.installed",), layer="runtime")
def containerd(ctx: CheckContext) -> Finding:
    host = ctx.host
    setups = rf.containerd_setups(host)
    binary = rf.find_binary(host, "containerd")
    if not setups:
        if not binary.ok:
            return skipped("containerd is not installed (no containerd on the PATH, no /etc/containerd/config.toml)")
        return skipped(
            "containerd has no config file: it runs with built-in defaults, without an nvidia runtime "
            "(only Kubernetes/nerdctl would need one)",
            [binary.describe(), "/etc/containerd/config.toml: not present"],
            remedy="For Kubernetes: `sudo nvidia-ctk runtime configure --runtime=containerd` and "
            "`sudo systemctl restart containerd`.",
        )
    context: list[str] = []
    problems: list[Problem] = []
    active = 0
    for setup in setups:
        cfg = setup.loaded.value
        off = rf.cri_disabled(cfg) if cfg is not None else None
        if off is not None:
            context.append(
                f"{setup.loaded.path}: disabled_plugins includes {off!r} (containerd serves Docker only)"
            )
            continue
        active += 1
        problems += _containerd_problems(ctx, setup, context)
    if active == 0:
        return skipped(
            "containerd's CRI plugin is disabled: it only runs Docker's containers, which runtime.docker_config covers",
            context,
        )
    names = " and ".join(s.flavor for s in setups if s.flavor != "containerd")
    label = f"containerd ({names})" if names else "containerd"
    # The running daemon (process start vs config changes; CRI plugin state unless --offline).
    from gpudoctor.checks.live_containerd import containerd_live

    live_problems, live_context = containerd_live(ctx, setups)
    problems += live_problems
    context += live_context
    return verdict(problems, ok=f"{label} has a working nvidia runtime or CDI", context=context)


# -- runtime.cdi -------------------------------------------------------------------------------------------


CDI_GENERATE = "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"


def _cdi_remedy(path: str, *, verb: str = "Regenerate it") -> str:
    target = path if path.startswith("/etc/cdi/") or path.startswith("/var/run/cdi/") else "/etc/cdi/nvidia.yaml"
    return (
        f"{verb}: `sudo gpudoctor cdi generate --output={target}` (or "
        f"`sudo nvidia-ctk cdi generate --output={target}`), and again after every driver or GPU change "
        "(toolkit >= 1.18: `sudo systemctl enable --now nvidia-cdi-refresh.path`)."
    )


def _cdi_in_use(ctx: CheckContext) -> list[str]:
    """Evidence that something on this host resolves CDI device names (empty when nothing does)."""
    host = ctx.host
    out: list[str] = []
    if rf.toolkit_mode(host) == "cdi":
        out.append(f'{rf.TOOLKIT_CONFIG}: [nvidia-container-runtime] mode = "cdi"')
    dj = rf.daemon_json(host).value
    if isinstance(dj, dict) and isinstance(dj.get("features"), dict) and dj["features"].get("cdi") is True:
        out.append(f"{rf.daemon_json(host).path}: features.cdi = true")
    for setup in rf.containerd_setups(host):
        cfg = setup.loaded.value
        if cfg is not None and cfg.cdi_enabled and rf.cri_disabled(cfg) is None:
            out.append(f"{setup.loaded.path}: enable_cdi = true")
    return out


@check("runtime.cdi", title="CDI specs", depends_on=("driver.installed", "driver.loaded"), layer="runtime")
def cdi(ctx: CheckContext) -> Finding:
    host = ctx.host
    dirs = rf.cdi_dirs(host)
    files = rf.cdi_files(host)
    driver = rf.host_driver(host)
    users = _cdi_in_use(ctx)
    if not files:
        where = " or ".join(dirs)
        if users:
            return warned(
                f"CDI is in use but there is no spec in {where}: `--device nvidia.com/gpu=all` fails with "
                "`unresolvable CDI devices nvidia.com/gpu=all`",
                [*users, *(f"{d}: no spec files" for d in dirs)],
                remedy=_cdi_remedy("/etc/cdi/nvidia.yaml", verb="Generate one"),
                fixes=["cdi-spec"],
            )
        return skipped(
            f"no CDI specs in {where}: CDI is not set up here (`--gpus` does not need it)",
            [*(f"{d}: no spec files" for d in dirs)],
            remedy=_cdi_remedy("/etc/cdi/nvidia.yaml",
                               verb="To use CDI (`docker run --device nvidia.com/gpu=all`, podman), generate a spec"),
        )
    context = [f"host driver: {driver.describe()}", *users]
    problems: list[Problem] = []
    problems += _duplicate_devices(files)
    nvidia_fresh: list[str] = []
    covered: set[str] = set()
    for f in files:
        path = f.loaded.path
        if f.loaded.unreadable:
            problems.append(
                Problem(
                    status=Status.WARN,
                    summary=f"cannot read CDI spec {path}: {f.loaded.unreadable} (rootless podman cannot either)",
                    evidence=[f"{path}: {f.loaded.unreadable}"],
                    remedy=f"`sudo chmod a+r {path}`",
                )
            )
            continue
        if f.loaded.error is not None or f.loaded.value is None:
            err = f.loaded.error
            where = f" (line {err.line}, column {err.column})" if err and err.line else ""
            problems.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"CDI spec {path} does not parse{where}: CDI device resolution fails for every device",
                    evidence=[str(err)] if err else [f"{path}: unreadable spec"],
                    remedy=_cdi_remedy(path),
                    fixes=["cdi-spec"],
                )
            )
            continue
        kind = str(getattr(f.loaded.value, "kind", ""))
        if not f.is_nvidia:
            context.append(f"{path}: kind {kind} (not NVIDIA; parsed fine)")
            continue
        covered.update(f.device_nodes)
        if f.stale:
            evidence: list[str] = []
            if f.other_versions:
                evidence.append(f"{path}: names driver {', '.join(f.other_versions)}; the host has {driver.describe()}")
            evidence += _listing([f"{path}: names {p}, which does not exist on this host" for p in f.missing_paths])
            if f.other_versions:
                stale_what = f"driver {f.other_versions[0]} (host: {', '.join(sorted(driver.versions))})"
                effect = "containers get the old driver's libraries, or none (driver/library version mismatch)"
            else:
                first = f.missing_paths[0]
                stale_what = f"{first}, which this host does not have"
                effect = (
                    f'containers requesting its devices fail with `failed to stat CDI host device "{first}"`'
                    if first.startswith("/dev/")
                    else f"containers requesting its devices fail to mount {first}"
                )
            reboot = ""
            if driver.kernel and driver.library and driver.kernel != driver.library:
                reboot = (f" Reboot as well: the loaded module ({driver.kernel}) and the libraries ({driver.library}) "
                          "differ (see driver.version_match).")
            problems.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"CDI spec {path} is stale: it names {stale_what}; {effect}",
                    evidence=evidence,
                    remedy=_cdi_remedy(path) + reboot,
                    fixes=["cdi-spec"],
                )
            )
        else:
            nvidia_fresh.append(path)
            context.append(f"{path}: {kind}, matches the host")
        if f.missing_nodes:
            problems.append(
                Problem(
                    status=Status.WARN,
                    summary=f"CDI spec {path} names {', '.join(f.missing_nodes)}, which the loaded driver should have "
                    "created but is missing: the spec is right, the device node is not (see the devices checks)",
                    evidence=[f"{path}: names {p}; {p} is missing on this host" for p in f.missing_nodes],
                    remedy="Create the missing nodes (`sudo gpudoctor fix device-nodes`, or "
                    "`sudo nvidia-ctk system create-device-nodes --control-devices`); do not regenerate the spec.",
                    fixes=["device-nodes"],
                )
            )
    if nvidia_fresh:
        gpus = rf.host_gpu_nodes(host)
        uncovered = [g for g in gpus if g not in covered]
        if uncovered:
            problems.append(
                Problem(
                    status=Status.WARN,
                    summary=f"the CDI specs do not list {', '.join(uncovered)}: that GPU cannot be requested through "
                    "CDI (it was added after the spec was generated)",
                    evidence=[f"{g}: present on the host, in no CDI spec" for g in uncovered],
                    remedy=_cdi_remedy(nvidia_fresh[0]),
                    fixes=["cdi-spec"],
                )
            )
    elif not problems and users:
        problems.append(
            Problem(
                status=Status.WARN,
                summary="CDI is in use but no spec declares an nvidia.com device",
                evidence=users,
                remedy=_cdi_remedy("/etc/cdi/nvidia.yaml"),
                fixes=["cdi-spec"],
            )
        )
    return verdict(problems, ok=f"CDI specs match this host ({', '.join(nvidia_fresh) or 'no NVIDIA spec'})",
                   context=context)


def _duplicate_devices(files: list[rf.CdiFile]) -> list[Problem]:
    """Specs in the same directory that define the same device: CDI refuses both (a conflict)."""
    owners: dict[tuple[str, str], list[str]] = {}
    for f in files:
        spec = f.loaded.value
        if spec is None:
            continue
        directory = f.loaded.path.rsplit("/", 1)[0]
        for name in spec.qualified_names:
            owners.setdefault((directory, name), []).append(f.loaded.path)
    clashes: dict[tuple[str, ...], list[str]] = {}
    for (_, name), paths in owners.items():
        if len(paths) > 1:
            clashes.setdefault(tuple(paths), []).append(name)
    return [
        Problem(
            status=Status.FAIL,
            summary=f"{' and '.join(paths)} both define {names[0]}"
            + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")
            + ": CDI refuses conflicting devices, so none of them can be requested",
            evidence=[f"{p}: defines {', '.join(_listing(names, 3))}" for p in paths],
            remedy=f"Keep one spec: remove the older of {', '.join(paths)} (e.g. `sudo rm {paths[0]}`).",
        )
        for paths, names in clashes.items()
    ]


# -- runtime.cgroups ---------------------------------------------------------------------------------------


@check("runtime.cgroups", title="cgroups and GPU access", depends_on=("toolkit.installed",), layer="runtime")
def cgroups(ctx: CheckContext) -> Finding:
    host = ctx.host
    layout = rf.cgroup_layout(host)
    if layout.version is None:
        return skipped(f"cannot tell the cgroup version: {layout.evidence}")
    context = [layout.evidence]
    if not rf.find_binary(host, HOOK).ok:
        return passed(
            f"cgroup {layout.version}; without the legacy toolkit hook, GPU devices are put in the container spec "
            "where runc manages them",
            context,
        )
    engines: list[tuple[str, str]] = []  # (engine, evidence) for engines on the systemd cgroup driver
    if rf.docker_installed(host).ok or rf.daemon_json(host).exists:
        drv = rf.docker_cgroup_driver(host, layout.version)
        context.append(f"Docker cgroup driver: {drv.driver} ({drv.evidence})")
        if drv.driver == "systemd":
            engines.append(("Docker", drv.evidence))
    for setup in rf.containerd_setups(host):
        cfg = setup.loaded.value
        if cfg is None or rf.cri_disabled(cfg) is not None:
            continue
        runc = (cfg.runtimes or {}).get("runc")
        if runc is not None and runc.systemd_cgroup:
            line = f"{setup.loaded.path}: runtimes.runc.options.SystemdCgroup = true"
            context.append(line)
            engines.append(("containerd" if setup.flavor == "containerd" else f"{setup.flavor}'s containerd", line))
    mode = rf.toolkit_mode(host)
    mode_line = f"{rf.TOOLKIT_CONFIG}: mode = \"{mode}\"" + ("" if rf.toolkit_config(host).ok else " (default)")
    context.append(mode_line)
    if layout.version != "v2" or not engines:
        why = "cgroup v2 is not in use" if layout.version != "v2" else "no engine uses the systemd cgroup driver"
        return passed(f"cgroup {layout.version}; {why}, so GPUs stay in running containers", context)
    fresh_cdi = [f.loaded.path for f in rf.cdi_files(host) if f.is_nvidia and f.loaded.ok and not f.stale]
    if mode in ("cdi", "jit-cdi", "csv"):
        return passed(f'cgroup v2 with the systemd driver, toolkit mode "{mode}": device rules come from the '
                      "container spec and survive daemon-reload", context)
    if mode == "auto" and fresh_cdi:
        return passed(
            "cgroup v2 with the systemd driver; a fresh CDI spec is available, so containers started with "
            "`--device nvidia.com/gpu=all` keep their GPUs across daemon-reload",
            [*context, f"{fresh_cdi[0]}: fresh NVIDIA CDI spec",
             "`docker run --gpus` still goes through the legacy hook"],
        )
    stale = [f.loaded.path for f in rf.cdi_files(host) if f.is_nvidia and f.stale]
    if stale:
        context.append(f"{stale[0]}: stale (see runtime.cdi), so CDI is no way out until it is regenerated")
    nodes = ["/dev/nvidiactl", *rf.host_gpu_nodes(host), "/dev/nvidia-uvm"]
    have, lack = rf.dev_char_links(host, nodes)
    if have and not lack:
        return passed(
            "cgroup v2 with the systemd driver and the legacy hook, but every NVIDIA device has its "
            "/dev/char link, so runc restores access after daemon-reload",
            [*context, f"/dev/char links present for {', '.join(have)}"],
        )
    who = " and ".join(e for e, _ in engines)
    evidence = [*context]
    if lack:
        evidence.append(f"/dev/char/MAJ:MIN links missing for {', '.join(lack)}")
    return warned(
        f"cgroup v2 + the systemd cgroup driver ({who}) + toolkit mode \"{mode}\" without CDI: GPUs vanish from "
        "running containers after `systemctl daemon-reload` (`Failed to initialize NVML: Unknown Error`)",
        evidence,
        remedy=(
            "Use CDI: `sudo gpudoctor cdi generate --output=/etc/cdi/nvidia.yaml` (or `" + CDI_GENERATE + "`) and "
            "run containers with `--device nvidia.com/gpu=all` (Docker >= 25 with "
            '`"features": {"cdi": true}`); or switch Docker to cgroupfs: add `"exec-opts": '
            '["native.cgroupdriver=cgroupfs"]` to /etc/docker/daemon.json and `sudo systemctl restart docker`; '
            "or create the links runc needs: `sudo nvidia-ctk system create-dev-char-symlinks --create-all`. "
            "Recreate affected containers."
        ),
        fixes=["cgroup-driver"],
    )


# -- runtime.docker_daemon (live) --------------------------------------------------------------------------


@check(
    "runtime.docker_daemon",
    title="Docker daemon (live)",
    # No dependency on toolkit.installed: a daemon without the toolkit can still run GPU containers through
    # gpudoctor's engine (the direct route), and what the daemon says matters most when the toolkit is missing.
    layer="runtime",
    live=True,
)
def docker_daemon(ctx: CheckContext) -> Finding:
    # The live logic (and the Docker SDK, imported only when a daemon answers) lives in live_docker.
    from gpudoctor.checks.live_docker import docker_daemon_finding

    return docker_daemon_finding(ctx)
