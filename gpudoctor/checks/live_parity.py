"""`parity.nvidia_smi`: does ``nvidia-smi`` inside a container see what the host sees?

Registered in gpudoctor.checks.parity (which calls :func:`nvidia_smi_finding`). One short-lived container
runs ``nvidia-smi --query-gpu=uuid,name,driver_version --format=csv,noheader`` with the GPUs attached by
the best route (gpudoctor.host.parity_probe); its answer is compared with host NVML (or, when NVML is not
usable, with the loaded driver's /proc view). Evidence names the route, the command, and both GPU lists.

Verdicts: pass when every host GPU is there with the host's driver version; fail for a missing GPU, a
different driver version (the image carries its own libnvidia-ml), ``Failed to initialize NVML: Unknown
Error`` (the device cgroup), nvidia-smi or NVML missing (nothing attached), a refused ``--gpus``, a timeout;
skip when the image is not present (it is pulled only with ``--pull``) or the daemon does not answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpudoctor.checks.base import CheckContext, Finding, Status, failed, passed, skipped
from gpudoctor.checks.live_docker import docker_state, restart_command
from gpudoctor.host import model as m
from gpudoctor.host.facts import ProbeNotRecorded
from gpudoctor.host.parity_probe import (
    GPU_DRIVER_ERROR,
    SMI,
    Attempt,
    ParityRun,
    SmiGpu,
    parse_smi,
    run_parity,
)

_NVML_LIB_VERSION = re.compile(r"NVML library version:\s*([0-9][0-9.]*)")

# The missing-image skip carries these two evidence lines, verbatim: the TUI reads them to offer a pull
# that the person confirms (gpudoctor.tui.pull), so their wording is API, unlike the summary's.
MISSING_IMAGE_EVIDENCE = "image missing from the daemon: "
DAEMON_EVIDENCE = "daemon: "


@dataclass(frozen=True, slots=True, kw_only=True)
class HostGpu:
    index: int
    uuid: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HostView:
    """The host's GPUs and driver version, and where they were read."""

    source: str
    driver_version: str | None
    gpus: tuple[HostGpu, ...]


def host_view(ctx: CheckContext) -> tuple[HostView | None, str]:
    """The baseline: host NVML when it answers, else /proc/driver/nvidia. (None, why) when neither works."""
    probe = m.nvml(ctx.host, offline=ctx.offline, timeout=ctx.options.timeout)
    if probe is not None and probe.ok and probe.gpus:
        where = f"host NVML ({probe.library_path})" if probe.library_path else "host NVML"
        gpus = tuple(HostGpu(index=g.index, uuid=g.uuid, name=g.name) for g in probe.gpus)
        return HostView(source=where, driver_version=probe.driver_version, gpus=gpus), ""
    why = (
        f"host NVML: {probe.status} ({probe.error})"
        if probe is not None and not probe.ok
        else ("host NVML lists no GPU" if probe is not None else "host NVML was not probed")
    )
    infos = [g for g in sorted(m.proc_gpus(ctx.host), key=lambda g: g.pci_address) if g.info and g.info.uuid]
    version = m.nvidia_version(ctx.host).value
    if infos:
        gpus = tuple(
            HostGpu(index=i, uuid=g.info.uuid or "", name=g.info.model)
            for i, g in enumerate(infos)
            if g.info is not None
        )
        return HostView(
            source=f"/proc/driver/nvidia/gpus ({why})",
            driver_version=version.version if version else None,
            gpus=gpus,
        ), why
    return None, why


def _decode_run(data: Any) -> ParityRun:
    try:
        return ParityRun.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return ParityRun(image="", status="image_error", error=f"the recorded parity run is damaged: {exc}")


def _host_lines(view: HostView) -> list[str]:
    head = f"host: {len(view.gpus)} GPU(s), driver {view.driver_version or 'unknown'}, from {view.source}"
    return [head, *(f"host GPU {g.index}: {g.uuid}, {g.name}" for g in view.gpus)]


def _container_lines(gpus: Sequence[SmiGpu], version: str | None) -> list[str]:
    head = f"container: {len(gpus)} GPU(s), driver {version or 'unknown'}, from `{SMI}` in the container"
    return [
        head,
        *(f"container GPU {i}: {g.uuid}, {g.name}, driver {g.driver_version}" for i, g in enumerate(gpus)),
    ]


def _output(att: Attempt) -> list[str]:
    text = (att.stdout + ("\n" + att.stderr if att.stderr.strip() else "")).strip()
    lines = [line for line in text.splitlines() if line.strip()][:8]
    return [f"{SMI} printed: {line}" for line in lines] or [
        f"{SMI} printed nothing (exit status {att.exit_code})"
    ]


def _route_lines(run: ParityRun) -> list[str]:
    out: list[str] = []
    for i, att in enumerate(run.attempts):
        label = "route" if i == len(run.attempts) - 1 else "first tried"
        out.append(f"{label}: {att.flag} ({att.why})")
        out.append(f"command: {att.command}")
        if not att.started and att.error:
            out.append(f"docker: {att.error}")
        if not att.removed:
            out.append(
                f"the container could not be removed: {att.remove_error} (`docker ps -a --filter "
                "label=io.gpudoctor.parity` lists leftovers)"
            )
    return out


def _image_env(run: ParityRun, key: str) -> str | None:
    for entry in run.image_env:
        k, sep, v = entry.partition("=")
        if sep and k == key:
            return v
    return None


def _not_attached_remedy(ctx: CheckContext, run: ParityRun, att: Attempt) -> str:
    caps = _image_env(run, "NVIDIA_DRIVER_CAPABILITIES")
    if (
        caps is not None
        and att.route != "direct"
        and not ({"utility", "all"} & {c.strip() for c in caps.split(",")})
    ):
        return (
            f"The image sets NVIDIA_DRIVER_CAPABILITIES={caps}, without `utility`, so {SMI} is not injected: "
            "run with `-e NVIDIA_DRIVER_CAPABILITIES=compute,utility` or fix the image."
        )
    if att.route == "gpus":
        return (
            "`--gpus all` ran the toolkit hook but nothing was injected: check `toolkit.config` and "
            "`sudo nvidia-container-cli -k -d /dev/tty info`."
        )
    if att.route == "direct":
        return f"The host has no {SMI} for gpudoctor's engine to pass in: reinstall the driver's utilities."
    return (
        f"The runtime {att.runtime!r} did not attach the driver: check its configuration "
        "(`gpudoctor --check --only runtime`)."
    )


def _failure(ctx: CheckContext, run: ParityRun, att: Attempt, view: HostView, evidence: list[str]) -> Finding:
    """The container did not print a GPU list: say why, from what docker or nvidia-smi said."""
    text = f"{att.error or ''}\n{att.stdout}\n{att.stderr}"
    via = att.flag
    if att.timed_out:
        return failed(
            f"{SMI} in the container did not finish within {ctx.options.timeout:g}s ({via}); the container was "
            "removed",
            [*evidence, *_output(att)],
            remedy="Run `nvidia-smi` on the host: a hung NVML usually means a GPU in a bad state (check `dmesg` for "
            "Xid errors); persistence mode (`sudo nvidia-smi -pm 1`) avoids slow first initialisation. "
            "Raise --timeout if the host is just slow.",
        )
    if not att.started and "executable file not found" in text and SMI in text:
        return failed(
            f"{SMI} is not in the container ({via}): the driver's utilities were not attached",
            [*evidence, *_output(att)] if att.stdout or att.stderr else evidence,
            remedy=_not_attached_remedy(ctx, run, att),
        )
    if not att.started:
        return failed(
            f"the container did not start ({via}): {att.error}",
            evidence,
            remedy="The daemon's message above names the failing layer; `gpudoctor --check --only runtime,toolkit` "
            "checks those.",
        )
    out = _output(att)
    if "Failed to initialize NVML: Unknown Error" in text:
        cg = ctx.result("runtime.cgroups")
        see = f" runtime.cgroups says: {cg.status.value}: {cg.summary}" if cg is not None else ""
        return failed(
            f"`Failed to initialize NVML: Unknown Error` in the container ({via}): the device cgroup denies the GPU "
            "nodes (they are there but cannot be opened)",
            [*evidence, *out],
            remedy="See the runtime.cgroups check: with cgroup v2 and the systemd driver, GPUs vanish after "
            "`systemctl daemon-reload` unless CDI or /dev/char links are used. Recreate the container." + see,
            fixes=["cgroup-driver"],
        )
    if "Driver/library version mismatch" in text:
        lib = _NVML_LIB_VERSION.search(text)
        lib_v = lib.group(1) if lib else "another version"
        return failed(
            f"`Failed to initialize NVML: Driver/library version mismatch` in the container ({via}): the image "
            f"carries its own libnvidia-ml ({lib_v}), not the host driver's {view.driver_version or ''}".rstrip(),
            [*evidence, *out],
            remedy=_baked_remedy(run.image),
        )
    if "couldn't find libnvidia-ml" in text:
        return failed(
            f"no libnvidia-ml in the container ({via}): the driver libraries were not attached, or the ld cache "
            "was not updated",
            [*evidence, *out],
            remedy=_not_attached_remedy(ctx, run, att),
        )
    if "couldn't communicate with the NVIDIA driver" in text:
        return failed(
            f"{SMI} in the container cannot reach the driver ({via}): /dev/nvidiactl was not attached",
            [*evidence, *out],
            remedy=_not_attached_remedy(ctx, run, att),
        )
    if "Insufficient Permissions" in text:
        return failed(
            f"`Failed to initialize NVML: Insufficient Permissions` in the container ({via}): the GPU nodes are "
            "there but not accessible (node modes, or SELinux)",
            [*evidence, *out],
            remedy="See devices.permissions; on SELinux hosts `sudo setsebool -P container_use_devices on`.",
        )
    if "No devices were found" in text:
        return failed(
            f"`No devices were found` in the container ({via}): the driver is there but no /dev/nvidiaN was attached",
            [*evidence, *out],
            remedy=_not_attached_remedy(ctx, run, att),
        )
    return failed(
        f"{SMI} in the container failed ({via}, exit status {att.exit_code})",
        [*evidence, *out],
        remedy=f"Run the command above by hand to see the whole output of {SMI}.",
    )


def _baked_remedy(image: str) -> str:
    return (
        f"Rebuild the image from an nvidia/cuda base without driver packages (nvidia-utils-*, libnvidia-compute-*, "
        f"copied libnvidia-ml/libcuda); the runtime injects the host's. To find them: `docker run --rm --entrypoint "
        f"sh {image} -c 'ls -l /usr/lib/*/libnvidia-ml.so* /usr/lib*/libnvidia-ml.so* 2>/dev/null'`."
    )


def _compare(ctx: CheckContext, run: ParityRun, att: Attempt, view: HostView, evidence: list[str]) -> Finding:
    gpus = parse_smi(att.stdout)
    if not gpus:
        return _failure(ctx, run, att, view, evidence)
    versions = sorted({g.driver_version for g in gpus})
    evidence = [*evidence, *_container_lines(gpus, ", ".join(versions))]
    host_uuids = {g.uuid for g in view.gpus}
    seen = {g.uuid for g in gpus}
    missing = [g for g in view.gpus if g.uuid not in seen]
    extra = [g for g in gpus if g.uuid not in host_uuids]
    problems: list[str] = []
    if missing:
        problems.append(
            f"{len(missing)} of the host's {len(view.gpus)} GPUs missing from the container: "
            + ", ".join(f"GPU {g.index} ({g.uuid})" for g in missing)
        )
    if extra:
        problems.append("the container lists GPUs the host does not: " + ", ".join(g.uuid for g in extra))
    other = [v for v in versions if view.driver_version and v != view.driver_version]
    if other:
        problems.append(
            f"the container's NVML reports driver {', '.join(other)}, the host's is {view.driver_version}: the image "
            "carries its own libnvidia-ml"
        )
    refused = [a for a in run.attempts[:-1] if GPU_DRIVER_ERROR in (a.error or "")]
    if refused:
        state = docker_state(ctx)
        problems.insert(
            0, f"`docker run --gpus all` fails: `{refused[0].error}`; the comparison used {att.flag}"
        )
        remedy = (
            f"dockerd has no nvidia device driver: it did not have nvidia-container-runtime-hook on its PATH "
            f"when it started. `{restart_command(state)}`, then check runtime.docker_daemon."
        )
        if not problems[1:]:
            return failed(problems[0], evidence, remedy=remedy)
        return failed("; ".join(problems), evidence, remedy=remedy)
    if problems:
        flags = {"gpus": "--gpus all", "direct": "<the --device arguments above>"}.get(
            att.route, f"--runtime {att.runtime} -e NVIDIA_VISIBLE_DEVICES=all"
        )
        remedy = (
            _baked_remedy(run.image)
            if other
            else (
                f"Compare the container's device nodes with the host's: `docker run --rm {flags} --entrypoint ls "
                f"{run.image} -l /dev`. A GPU missing from the container means the runtime attached fewer nodes than "
                "the host has: NVIDIA_VISIBLE_DEVICES, the runtime's own driver root or config, or a node created "
                "after the runtime scanned /dev."
            )
        )
        return failed("; ".join(problems), evidence, remedy=remedy)
    return passed(
        f"{SMI} in a container sees all {len(view.gpus)} host GPU(s) with driver {view.driver_version or versions[0]} "
        f"({att.flag})",
        evidence,
    )


def nvidia_smi_finding(ctx: CheckContext) -> Finding:
    """The `parity.nvidia_smi` check (see the module docstring)."""
    state = docker_state(ctx)
    if not state.probe.ok:
        return skipped(
            f"no Docker daemon to run a container in ({state.probe.status}: {state.probe.error})",
            remedy="See runtime.docker_daemon.",
        )
    view, why = host_view(ctx)
    if view is None:
        return skipped(
            f"nothing to compare with: {why}, and /proc/driver/nvidia lists no GPU",
            remedy="See the driver.* checks.",
        )
    options = ctx.options
    routes = state.routes(ctx)
    if state.endpoint.socket_path is None:
        # A daemon on another machine cannot be handed this host's device nodes and driver files.
        routes = [r for r in routes if r.route != "direct"]
        if not routes:
            return skipped(
                f"the daemon at {state.probe.url} is not on this machine and offers no GPU route of its "
                "own, so gpudoctor cannot attach this host's driver to a container there",
                remedy="Run gpudoctor on the daemon's machine.",
            )

    def live() -> ParityRun:
        return run_parity(
            url=state.probe.url,
            image=options.image,
            routes=routes,
            root=ctx.host.root,
            host_paths=state.daemon_sees_root,
            pull=options.pull,
            timeout=options.timeout,
        )

    try:
        run = ctx.host.probe("parity", live, encode=lambda r: r.to_dict(), decode=_decode_run)
    except ProbeNotRecorded as exc:
        return skipped(str(exc))
    image = run.image or options.image
    if run.status == "no_image":
        return skipped(
            f"the image {image} is not present in the daemon, and gpudoctor pulls only with --pull",
            [
                f"docker image inspect {image}: No such image",
                f"{MISSING_IMAGE_EVIDENCE}{image}",
                f"{DAEMON_EVIDENCE}{state.probe.url}",
            ],
            remedy=f"`docker pull {image}` (or run with --pull, or pass --image with an image you have).",
        )
    if run.status == "pull_failed":
        return skipped(
            f"could not pull {image}: {run.error}",
            remedy="Check the registry and network, or pass --image with an image that is present.",
        )
    if run.status == "image_error":
        return skipped(
            f"cannot use the image {image}: {run.error}",
            remedy=f"`docker image inspect {image}` shows the daemon's view.",
        )
    if run.status == "plan_error":
        return failed(
            f"gpudoctor's engine cannot attach the GPUs for the direct route: {run.error}",
            [*(f"{r.flag}: {r.why}" for r in routes)],
            remedy="See the driver.* and devices.* checks; or register a runtime (`sudo gpudoctor fix docker-runtime`).",
        )
    att = run.final
    if att is None:  # a damaged record
        return Finding(status=Status.ERROR, summary="the parity run recorded no container", evidence=[])
    evidence = [
        *_route_lines(run),
        f"image: {image}" + (" (pulled for this check: --pull, or confirmed in the TUI)" if run.pulled else ""),
        *_host_lines(view),
    ]
    if att.started and att.exit_code == 0 and not att.timed_out:
        return _compare(ctx, run, att, view, evidence)
    refused = not att.started and GPU_DRIVER_ERROR in (att.error or "")
    if refused:
        return failed(
            f"`docker run --gpus all` fails: `{att.error}`",
            evidence,
            remedy=f"dockerd registers its nvidia device driver only when nvidia-container-runtime-hook is on its PATH "
            f"at start: install the toolkit, then `{restart_command(state)}`.",
        )
    return _failure(ctx, run, att, view, evidence)
