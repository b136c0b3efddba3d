"""Run the doctor (or single checks) against a fake root and a real daemon, as the CLI would."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpudoctor.checks.base import CheckContext, CheckOptions, CheckResult
from gpudoctor.doctor import run_doctor
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot
from tests.infra.dockerd import DockerDaemon


@contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (the NVML probe's child process inherits them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def options(daemon: DockerDaemon | None, image: str, **kw: Any) -> CheckOptions:
    return CheckOptions(
        docker_host=daemon.host if daemon else kw.pop("docker_host", None),
        image=image,
        timeout=kw.pop("timeout", 30.0),
        **kw,
    )


def doctor(
    root: Path | str,
    opts: CheckOptions,
    *only: str,
    env: Mapping[str, str] | None = None,
    recorded: dict[str, Any] | None = None,
) -> tuple[dict[str, CheckResult], HostFacts]:
    """run_doctor on `root` for `only`; ({id: result} of what was asked, the facts with their probe log)."""
    facts = HostFacts(root=HostRoot(root), recorded_probes=recorded, docker_host=opts.docker_host)
    with environ(env or {}):
        report = run_doctor(facts, options=opts, only=list(only))
    return {r.id: r for r in report.checks}, facts


def context(
    root: Path | str, opts: CheckOptions, results: Mapping[str, CheckResult] | None = None
) -> CheckContext:
    """A CheckContext for calling one check function directly (its dependencies taken as satisfied)."""
    facts = HostFacts(root=HostRoot(root), docker_host=opts.docker_host)
    return CheckContext(host=facts, options=opts, results=dict(results or {}))


def labelled_containers(daemon: DockerDaemon) -> list[str]:
    """Names of containers (running or not) that carry gpudoctor's parity label."""
    out = daemon.cli("ps", "-a", "--filter", "label=io.gpudoctor.parity", "--format", "{{.Names}}").stdout
    return [line for line in out.splitlines() if line.strip()]


@contextmanager
def registered(daemon: DockerDaemon, runtimes: dict[str, dict[str, Any]]) -> Iterator[None]:
    """daemon.json's runtimes replaced for the block (reloaded), then restored (reloaded again)."""
    saved = daemon.read_config()
    stat = daemon.config_path.stat()
    daemon.write_config({**saved, "runtimes": runtimes})
    daemon.reload()
    try:
        yield
    finally:
        # A reload keeps the runtimes it knows unless the file sets "runtimes" (dockerd 20.10).
        daemon.write_config({"runtimes": {}, **saved})
        daemon.reload()
        os.utime(daemon.config_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
