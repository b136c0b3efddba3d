"""The live half of `runtime.containerd`: the running containerd against the config files.

The file check (gpudoctor.checks.runtime) reads what containerd is configured to do; this adds, for each
config it examined:

- the containerd process behind that config's socket (read under the root's /proc): which config file it
  really reads, and whether it started before that file, a drop-in it imports, or (k3s/RKE2) the
  ``config.toml.tmpl`` changed. containerd has no reload, so such a change is not live yet; k3s/RKE2 also
  add their nvidia runtimes only if ``nvidia-container-runtime`` existed when they started;
- unless ``--offline``: whether the socket answers and the CRI plugin loaded (``ctr plugins ls``), with
  containerd's own error when it did not.

:func:`containerd_live` returns (problems, context lines) for the file check's verdict.
"""

from __future__ import annotations

import functools
from typing import Any

from gpudoctor.checks.base import CheckContext, Status
from gpudoctor.checks.toolkit import RUNTIME, Problem
from gpudoctor.host import runtime_facts as rf
from gpudoctor.host.containerd_probe import DEFAULT_ADDRESS, K3S_ADDRESS, ContainerdLive, probe_containerd
from gpudoctor.host.daemon_process import DaemonProcess, ProcessLookup, find_daemon
from gpudoctor.host.facts import ProbeNotRecorded


def _when(moment: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def socket_address(setup: rf.ContainerdSetup) -> str:
    """The config's ``[grpc] address``, else the flavour's default socket."""
    cfg = setup.loaded.value
    grpc = cfg.raw.get("grpc") if cfg is not None and isinstance(cfg.raw, dict) else None
    address = grpc.get("address") if isinstance(grpc, dict) else None
    if isinstance(address, str) and address.startswith("/"):
        return address
    return DEFAULT_ADDRESS if setup.flavor == "containerd" else K3S_ADDRESS


def service_name(flavor: str) -> str:
    return {"k3s": "k3s", "rke2": "rke2-server"}.get(flavor, "containerd")


def _decode(address: str) -> Any:
    def decode(data: Any) -> ContainerdLive:
        try:
            return ContainerdLive.from_dict(data)
        except (ValueError, TypeError) as exc:
            return ContainerdLive(
                address=address, reachable=False, error=f"the recorded probe is damaged: {exc}"
            )

    return decode


def _process_problems(
    ctx: CheckContext, setup: rf.ContainerdSetup, process: DaemonProcess, context: list[str]
) -> list[Problem]:
    root = ctx.host.root
    path = setup.loaded.path
    service = service_name(setup.flavor)
    restart = f"sudo systemctl restart {service}"
    problems: list[Problem] = []
    given = process.flag_values("--config", "-c")
    reads = given[-1] if given else rf.CONTAINERD_CONFIGS[0][1]
    context.append(f"/proc/{process.pid}: containerd reads {reads} (found by {process.found_by})")
    if reads != path:
        problems.append(
            Problem(
                status=Status.WARN,
                summary=f"the containerd on this socket reads {reads}, not {path}: what {path} says is not what runs",
                evidence=[f"/proc/{process.pid}/cmdline: {' '.join(process.cmdline)}"[:400]],
                remedy=f"Configure {reads}, or start containerd with `--config {path}`; then `{restart}`.",
            )
        )
        return problems
    if process.start_time is None:
        return problems
    started = f"containerd (pid {process.pid}) started {_when(process.start_time)}"
    cfg = setup.loaded.value
    files = list(cfg.files) if cfg is not None else [path]
    changed = []
    for f in files:
        st = root.stat(f)
        if st is not None and process.started_before(st.st_mtime):
            changed.append((f, st.st_mtime))
    if setup.flavor == "containerd" and changed:
        nvidia = sorted(n for n in (cfg.runtimes if cfg is not None else {}) if n.startswith("nvidia"))
        what = (
            f"its runtime {nvidia[0]!r} is not registered in the running daemon"
            if nvidia
            else "the change is not live"
        )
        problems.append(
            Problem(
                status=Status.FAIL if nvidia else Status.WARN,
                summary=f"{changed[0][0]} changed after containerd started, and containerd has no reload: {what}",
                evidence=[started, *(f"{f}: changed {_when(t)}" for f, t in changed)],
                remedy=f"`{restart}`.",
            )
        )
    if setup.flavor in ("k3s", "rke2"):
        if setup.template is not None:
            st = root.stat(setup.template)
            if st is not None and process.started_before(st.st_mtime):
                problems.append(
                    Problem(
                        status=Status.WARN,
                        summary=f"{setup.template} changed after {setup.flavor} started: {setup.flavor} renders it into "
                        f"{path} only at start",
                        evidence=[started, f"{setup.template}: changed {_when(st.st_mtime)}"],
                        remedy=f"`{restart}`.",
                    )
                )
        binary = rf.find_binary(ctx.host, RUNTIME)
        st = root.stat(binary.path) if binary.ok and binary.path else None
        if st is not None and process.started_before(st.st_ctime):
            problems.append(
                Problem(
                    status=Status.FAIL,
                    summary=f"{binary.path} was installed after {setup.flavor} started: {setup.flavor} adds its nvidia "
                    "runtimes only when it finds nvidia-container-runtime at start",
                    evidence=[started, f"{binary.path}: installed {_when(st.st_ctime)} (inode change time)"],
                    remedy=f"`{restart}` (it then writes the nvidia and nvidia-cdi runtimes into {path}).",
                )
            )
    return problems


def _live_problems(
    ctx: CheckContext, setup: rf.ContainerdSetup, address: str, context: list[str]
) -> list[Problem]:
    facts = ctx.host
    real = str(facts.root.path(address))
    try:
        live = facts.probe(
            f"containerd:{address}",
            lambda: probe_containerd(real, address=address, timeout=ctx.options.timeout),
            encode=lambda p: p.to_dict(),
            decode=_decode(address),
        )
    except ProbeNotRecorded:
        context.append(f"{address}: the snapshot did not record the live containerd")
        return []
    if not live.reachable:
        context.append(f"{address}: {live.error} (the live CRI state is unknown)")
        return []
    version = f"containerd {live.server_version}" if live.server_version else "containerd"
    if live.cri_status == "ok":
        context.append(f"{address}: {version} answers; CRI plugin {live.cri_plugin}: ok (`ctr plugins ls`)")
        return []
    if live.cri_status is None:
        context.append(f"{address}: {version} answers; {live.error or 'the CRI plugin is not loaded'}")
        return []
    restart = f"sudo systemctl restart {service_name(setup.flavor)}"
    return [
        Problem(
            status=Status.FAIL,
            summary=f"the running containerd's CRI plugin is in state {live.cri_status!r}"
            + (f": {live.cri_error}" if live.cri_error else "")
            + " (Kubernetes cannot start any pod through it)",
            evidence=[
                f"ctr --address {address} plugins ls: {live.cri_plugin} {live.cri_status}",
                *(
                    [f"ctr plugins ls -d id=={(live.cri_plugin or '').rsplit('.', 1)[-1]}: {live.cri_error}"]
                    if live.cri_error
                    else []
                ),
            ],
            remedy=f"Fix {setup.loaded.path} as containerd's message says, then `{restart}`; `journalctl -u "
            f"{service_name(setup.flavor)} -n 50` has the full error.",
        )
    ]


def containerd_live(ctx: CheckContext, setups: list[rf.ContainerdSetup]) -> tuple[list[Problem], list[str]]:
    """(problems, context lines) about the running containerd behind each config in `setups`."""
    problems: list[Problem] = []
    context: list[str] = []
    for setup in setups:
        cfg = setup.loaded.value
        if cfg is None or rf.cri_disabled(cfg) is not None:
            continue
        address = socket_address(setup)
        try:
            # Recorded, so a snapshot replays the process found on its host, not the replaying machine's.
            lookup = ctx.host.probe(
                f"containerd_process:{address}",
                functools.partial(find_daemon, ctx.host.root, names=("containerd",), socket_path=address,
                                  by_name=False),
                encode=lambda lk: lk.to_dict(),
                decode=ProcessLookup.from_dict,
            )
        except ProbeNotRecorded:
            context.append(f"{address}: the snapshot did not record containerd's process")
            continue
        if lookup.process is not None:
            problems += _process_problems(ctx, setup, lookup.process, context)
        if not ctx.offline:
            problems += _live_problems(ctx, setup, address, context)
    return problems, context
