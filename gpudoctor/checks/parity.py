"""`parity.nvidia_smi`: does `nvidia-smi` inside a container see what the host sees?

The proof the whole stack works: run one short-lived container with the GPUs attached and compare its
`nvidia-smi` with host NVML. It is a live check (it starts a container), registered now so that its id and
place in the dependency graph are fixed; the implementation is gpudoctor.checks.live_parity.

It runs after `runtime.docker_daemon` (no daemon, no container) and `driver.installed`. It does not depend
on the `devices.*` checks: on WSL2 those are `skip` (there are no /dev/nvidia* nodes), yet containers do get
GPUs there, and a skipped dependency would block this check.
"""

from __future__ import annotations

from gpudoctor.checks.base import CheckContext, Finding, check


@check(
    "parity.nvidia_smi",
    title="nvidia-smi in a container (live)",
    depends_on=("runtime.docker_daemon", "driver.installed"),
    layer="container",
    live=True,
)
def nvidia_smi(ctx: CheckContext) -> Finding:
    # The live logic (and the Docker SDK, imported only when a daemon answers) lives in live_parity.
    from gpudoctor.checks.live_parity import nvidia_smi_finding

    return nvidia_smi_finding(ctx)
