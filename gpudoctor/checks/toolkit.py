"""NVIDIA Container Toolkit checks: is it installed where dockerd looks, and is its config.toml usable?

`toolkit.installed` proves the four programs exist on the PATH a service gets. Docker registers its
built-in `nvidia` device driver only when `nvidia-container-runtime-hook` is on that PATH, so without it
`docker run --gpus` fails with ``could not select device driver "" with capabilities: [[gpu]]``.
`toolkit.config` reads /etc/nvidia-container-runtime/config.toml: a broken file, an `ldconfig` that this
distro does not have (``@/sbin/ldconfig.real`` on RPM distros), an unknown mode, or `no-cgroups` on a
rootful host each break GPU containers in their own way.

This module also holds ``Problem`` and ``verdict``, which the runtime checks share: a check collects every
problem it finds and reports the worst, with all of their evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gpudoctor.checks.base import CheckContext, Finding, Status, check, failed, passed, skipped, warned
from gpudoctor.host import runtime_facts as rf
from gpudoctor.record import Record, field

HOOK = "nvidia-container-runtime-hook"
CLI = "nvidia-container-cli"
CTK = "nvidia-ctk"
RUNTIME = "nvidia-container-runtime"
COMPONENTS: tuple[str, ...] = (HOOK, CLI, CTK, RUNTIME)

GPU_FLAG_ERROR = 'could not select device driver "" with capabilities: [[gpu]]'
TOOLKIT_GUIDE = "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html"
KNOWN_MODES = ("auto", "legacy", "cdi", "jit-cdi", "csv")


class Problem(Record, frozen=False):
    """One thing a check found wrong; ``verdict`` turns a list of them into the check's Finding."""

    status: Status  # FAIL or WARN
    summary: str
    evidence: list[str] = field(default_factory=list)
    remedy: str | None = None
    fixes: list[str] = field(default_factory=list)


def verdict(problems: Sequence[Problem], *, ok: str, context: Iterable[str] = ()) -> Finding:
    """The worst problem's status and summary; every problem's evidence, remedy and fixes.

    The problems' evidence (what decided the finding) comes first, worst first, then the `context` lines
    (what was read and found fine). With no problems: pass, with the context as evidence.
    """
    ctx = list(context)
    if not problems:
        return passed(ok, ctx)
    worst = Status.FAIL if any(p.status is Status.FAIL for p in problems) else Status.WARN
    top = [p for p in problems if p.status is worst]
    ordered = top + [p for p in problems if p.status is not worst]
    evidence = [line for p in ordered for line in p.evidence] + ctx
    remedies: list[str] = []
    for p in ordered:
        if p.remedy and p.remedy not in remedies:
            remedies.append(p.remedy)
    fixes: list[str] = []
    for p in ordered:
        fixes += [f for f in p.fixes if f not in fixes]
    summary = top[0].summary if len(top) == 1 else f"{top[0].summary} (and {len(top) - 1} more, see evidence)"
    make = failed if worst is Status.FAIL else warned
    return make(summary, _dedupe(evidence), remedy="\n".join(remedies) or None, fixes=fixes)


def _dedupe(lines: Iterable[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line not in out:
            out.append(line)
    return out


def install_toolkit_remedy(ctx: CheckContext) -> str:
    """How to install the toolkit on this distro, and register it with Docker."""
    family, _ = rf.os_family(ctx.host)
    repo = {
        "debian": "add NVIDIA's apt repository",
        "rhel": "add NVIDIA's repository (`curl -s -L https://nvidia.github.io/libnvidia-container/stable/rpm/"
        "nvidia-container-toolkit.repo | sudo tee /etc/yum.repos.d/nvidia-container-toolkit.repo`)",
        "suse": "add NVIDIA's zypper repository",
    }.get(family or "", "add NVIDIA's package repository")
    return (
        f"Install the NVIDIA Container Toolkit: {repo} ({TOOLKIT_GUIDE}), then "
        f"`{rf.install_command(ctx.host, 'nvidia-container-toolkit')}`, "
        "`sudo nvidia-ctk runtime configure --runtime=docker` and `sudo systemctl restart docker` "
        "(or run `sudo gpudoctor install`)."
    )


@check("toolkit.installed", title="Container toolkit installed", depends_on=("driver.installed",), layer="toolkit")
def toolkit_installed(ctx: CheckContext) -> Finding:
    host = ctx.host
    found = {name: rf.find_binary(host, name) for name in COMPONENTS}
    evidence = [found[name].describe() for name in COMPONENTS]
    cdi_hook = rf.find_binary(host, "nvidia-cdi-hook")
    if cdi_hook.ok:
        evidence.append(cdi_hook.describe())
    hook = found[HOOK]
    if not hook.ok:
        route = rf.gpudoctor_route(host)
        what = "is not installed" if hook.path is None else f"at {hook.path} is not executable"
        summary = f"{HOOK} {what}: `docker run --gpus` fails with `{GPU_FLAG_ERROR}`"
        if route is not None:
            evidence.append(f"{route.source}: gpudoctor's runtime {route.path} is registered and present")
            return warned(
                summary + f"; gpudoctor's own runtime works instead: `docker run --runtime {route.name} "
                "-e NVIDIA_VISIBLE_DEVICES=all IMAGE`",
                evidence,
                remedy="Use `--runtime gpudoctor` (no NVIDIA packages needed), or, for `--gpus`: "
                + install_toolkit_remedy(ctx),
            )
        return failed(
            summary,
            evidence,
            remedy=install_toolkit_remedy(ctx)
            + "\nOr use gpudoctor's own runtime, which needs no NVIDIA packages: `sudo gpudoctor fix docker-runtime`,"
            " then `docker run --runtime gpudoctor -e NVIDIA_VISIBLE_DEVICES=all IMAGE`.",
            fixes=["docker-runtime"],
        )
    cli = found[CLI]
    if not cli.ok:
        return failed(
            f"{HOOK} is installed but {CLI} is missing: the hook hands every `--gpus` container to {CLI}, "
            "so those containers fail to start",
            evidence,
            remedy=f"Reinstall the toolkit's libraries: `{rf.install_command(host, 'libnvidia-container-tools', 'libnvidia-container1')}`"
            " (or reinstall nvidia-container-toolkit).",
        )
    missing = [name for name in (CTK, RUNTIME) if not found[name].ok]
    if missing:
        return warned(
            f"the toolkit is incomplete: {', '.join(missing)} missing (package nvidia-container-toolkit-base); "
            "`--gpus` works, but `--runtime nvidia`, CDI spec generation and `nvidia-ctk runtime configure` do not",
            evidence,
            remedy=f"`{rf.install_command(host, 'nvidia-container-toolkit-base')}` "
            "(keep every nvidia-container-* package at the same version).",
        )
    return passed(f"the NVIDIA Container Toolkit is installed ({found[HOOK].path})", evidence)


def _config_line(section: str, key: str, value: object) -> str:
    shown = f'"{value}"' if isinstance(value, str) else str(value).lower()
    where = f"[{section}] " if section else ""
    return f"{rf.TOOLKIT_CONFIG}: {where}{key} = {shown}"


def _ldconfig_problems(ctx: CheckContext, value: str) -> list[Problem]:
    host = ctx.host
    line = _config_line("nvidia-container-cli", "ldconfig", value)
    if not value.startswith("@"):
        return [
            Problem(
                status=Status.WARN,
                summary=f'ldconfig = "{value}" is a container path: the image\'s own ldconfig would run as root '
                "inside the container, which recent toolkits refuse unless "
                "features.allow-ldconfig-from-container is set",
                evidence=[line],
                remedy=f"`sudo nvidia-ctk config --in-place --set nvidia-container-cli.ldconfig=@{_host_ldconfig(ctx)}`",
                fixes=["toolkit-config"],
            )
        ]
    path = value[1:]
    if host.root.exists(path):
        return []
    if not path.endswith(".real") and host.root.exists(path + ".real"):
        # The toolkit itself prefers `<path>.real` when it exists (Debian's wrapper layout).
        return []
    family, pretty = rf.os_family(host)
    evidence = [line, f"{path}: not present on this host"]
    for candidate in ("/sbin/ldconfig", "/sbin/ldconfig.real", "/usr/sbin/ldconfig"):
        if candidate != path and host.root.exists(candidate):
            evidence.append(f"{candidate}: present")
    if pretty:
        rpm = " (an RPM distro: its ldconfig has no .real variant)" if family in ("rhel", "suse") else ""
        evidence.append(f"/etc/os-release: {pretty}{rpm}")
    good = _host_ldconfig(ctx)
    remedy = (
        f"`sudo nvidia-ctk config --in-place --set nvidia-container-cli.ldconfig=@{good}`"
        if host.root.exists(good)
        else f"No ldconfig found at /sbin/ldconfig or /usr/sbin/ldconfig: install glibc's ldconfig "
        f"(`{rf.install_command(host, 'libc-bin' if family == 'debian' else 'glibc')}`), then set "
        "nvidia-container-cli.ldconfig to its path with an @ in front."
    )
    return [
        Problem(
            status=Status.FAIL,
            summary=f'the toolkit\'s ldconfig "{value}" does not exist on this host: GPU containers fail with '
            f"`ldcache error: open failed: {path}: no such file or directory`",
            evidence=evidence,
            remedy=remedy,
            fixes=["toolkit-config"],
        )
    ]


def _host_ldconfig(ctx: CheckContext) -> str:
    for candidate in ("/sbin/ldconfig.real", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        if ctx.host.root.exists(candidate):
            return candidate
    return "/sbin/ldconfig"


def _rootful_engines(ctx: CheckContext) -> list[str]:
    return [b.path for b in (rf.find_binary(ctx.host, n) for n in ("dockerd", "containerd")) if b.ok and b.path]


@check("toolkit.config", title="Container toolkit config", depends_on=("toolkit.installed",), layer="toolkit")
def toolkit_config(ctx: CheckContext) -> Finding:
    host = ctx.host
    if not rf.find_binary(host, HOOK).ok:
        return skipped(f"the NVIDIA Container Toolkit is not installed ({HOOK} not found), so its config is not used")
    loaded = rf.toolkit_config(host)
    if not loaded.exists:
        return passed(
            f"no {rf.TOOLKIT_CONFIG}: the toolkit runs with its built-in defaults",
            [f"{rf.TOOLKIT_CONFIG}: not present"],
        )
    if loaded.unreadable:
        return warned(
            f"cannot read {rf.TOOLKIT_CONFIG}: {loaded.unreadable}",
            [f"{rf.TOOLKIT_CONFIG}: {loaded.unreadable}"],
            remedy="Run gpudoctor as root (`sudo gpudoctor --check`) so it can read the toolkit config.",
        )
    if loaded.error is not None or loaded.value is None:
        err = loaded.error
        where = f" (line {err.line}, column {err.column})" if err and err.line else ""
        return failed(
            f"{rf.TOOLKIT_CONFIG} cannot be loaded{where}: {err.message if err else 'unreadable'}; the hook and "
            "nvidia-container-runtime refuse to run with it",
            [str(err)] if err else [],
            remedy=f"Fix the file at the position shown, or write the defaults again: "
            f"`sudo cp {rf.TOOLKIT_CONFIG} {rf.TOOLKIT_CONFIG}.broken && "
            f"sudo nvidia-ctk config default --output={rf.TOOLKIT_CONFIG}`.",
        )
    cfg = loaded.value
    context: list[str] = []
    problems: list[Problem] = []

    if cfg.ldconfig is not None:
        problems += _ldconfig_problems(ctx, cfg.ldconfig)
        if not problems:
            context.append(_config_line("nvidia-container-cli", "ldconfig", cfg.ldconfig) + " (exists)")
    else:
        context.append(f"{rf.TOOLKIT_CONFIG}: no [nvidia-container-cli] ldconfig (default @/sbin/ldconfig)")

    mode = (cfg.mode or "auto").strip()
    mode_line = _config_line("nvidia-container-runtime", "mode", mode)
    if mode not in KNOWN_MODES:
        problems.append(
            Problem(
                status=Status.FAIL,
                summary=f'unknown toolkit mode "{mode}": `--runtime nvidia` refuses to start containers',
                evidence=[mode_line, f"known modes: {', '.join(KNOWN_MODES)}"],
                remedy="`sudo nvidia-ctk config --in-place --set nvidia-container-runtime.mode=auto`",
            )
        )
    elif mode == "csv" and not _is_tegra(ctx):
        problems.append(
            Problem(
                status=Status.WARN,
                summary='mode = "csv" is for Jetson/Tegra boards; this host has no /etc/nv_tegra_release, '
                "so `--runtime nvidia` mounts only what the CSV files list",
                evidence=[mode_line, "/etc/nv_tegra_release: not present"],
                remedy="`sudo nvidia-ctk config --in-place --set nvidia-container-runtime.mode=auto`",
            )
        )
    else:
        context.append(mode_line)

    if cfg.no_cgroups:
        engines = _rootful_engines(ctx)
        line = _config_line("nvidia-container-cli", "no-cgroups", True)
        if engines:
            problems.append(
                Problem(
                    status=Status.WARN,
                    summary="no-cgroups = true on a host with rootful "
                    + " and ".join(sorted({e.rsplit("/", 1)[-1] for e in engines}))
                    + ": their GPU containers get no device-cgroup rule and print "
                    "`Failed to initialize NVML: Unknown Error`",
                    evidence=[line, *(f"{e}: present (a rootful engine)" for e in engines)],
                    remedy="For rootful containers: `sudo nvidia-ctk config --in-place --set "
                    "nvidia-container-cli.no-cgroups=false`. Rootless setups are better served by CDI "
                    "(`--device nvidia.com/gpu=all`), which needs no cgroup edits.",
                )
            )
        else:
            context.append(line + " (no rootful dockerd/containerd found)")

    if rf.find_binary(host, RUNTIME).ok:
        runtimes = [r for r in (cfg.runtimes or ["runc", "crun"]) if isinstance(r, str)]
        low = [rf.find_binary(host, r) for r in runtimes]
        if low and not any(b.ok for b in low):
            problems.append(
                Problem(
                    status=Status.WARN,
                    summary=f"nvidia-container-runtime finds none of its low-level runtimes "
                    f"({', '.join(runtimes)}): `--runtime nvidia` cannot start containers",
                    evidence=[_config_line("nvidia-container-runtime", "runtimes", runtimes)]
                    + [b.describe() for b in low],
                    remedy=f"Install runc (`{rf.install_command(host, 'runc')}`) or list its absolute path in "
                    "[nvidia-container-runtime] runtimes.",
                )
            )

    if cfg.debug_log:
        present = "present: look there for hook errors" if host.root.exists(cfg.debug_log) else "not written yet"
        context.append(f"{rf.TOOLKIT_CONFIG}: debug log {cfg.debug_log} ({present})")

    return verdict(problems, ok=f"{rf.TOOLKIT_CONFIG} is valid (mode {mode})", context=context)


def _is_tegra(ctx: CheckContext) -> bool:
    root = ctx.host.root
    if root.exists("/etc/nv_tegra_release"):
        return True
    family = root.try_read_text("/sys/devices/soc0/family") or ""
    return family.strip().lower().startswith("tegra")
