"""Kernel module checks: nvidia, nvidia_uvm, nvidia_modeset, nvidia_drm (/proc/modules + /sys/module).

nvidia and nvidia_uvm are needed for compute (CUDA needs UVM); nvidia_modeset and nvidia_drm only serve
display, so their absence is a warning. None of them exist on WSL2. The DAG is in checks/driver.py.
"""

from __future__ import annotations

from gpudoctor.checks.base import CheckContext, Finding, Status, check, failed, passed, skipped, warned
from gpudoctor.checks.driver import FIX_LOAD_MODULES
from gpudoctor.host import model as m


def _module_finding(ctx: CheckContext, name: str, *, missing: Status, missing_summary: str, remedy: str) -> Finding:
    facts = ctx.host
    if m.wsl(facts).wsl2:
        return skipped(m.WSL_SKIP)
    st = m.module_state(facts, name)
    evidence = list(st.evidence)
    if not st.loaded:
        if st.error is not None and st.sys is None:
            return failed(f"cannot tell whether {name} is loaded: {st.error}", evidence,
                          remedy=f"Run `lsmod | grep {name}` on the host.")
        blacklist = m.modprobe_config(facts).blacklists.get(name, [])
        evidence += blacklist
        hint = f" (blacklisted: {blacklist[0]})" if blacklist else ""
        fixes = [FIX_LOAD_MODULES]
        if missing is Status.FAIL:
            return failed(f"{missing_summary}{hint}", evidence, remedy=remedy, fixes=fixes)
        return warned(f"{missing_summary}{hint}", evidence, remedy=remedy, fixes=fixes)
    if not st.live:
        state = st.entry.state if st.entry is not None and st.entry.state != "Live" else (
            st.sys.initstate if st.sys is not None else "unknown")
        return failed(f"{name} is loaded but not live (state: {state})", evidence,
                      remedy=f"The module is still initialising or being removed; wait, then check "
                      f"`cat /sys/module/{name}/initstate`. If it stays so, read `sudo dmesg | grep -i nvidia`.")
    version = f" {st.sys.version}" if st.sys is not None and st.sys.version else ""
    return passed(f"{name}{version} is loaded", evidence)


@check("modules.nvidia", title="nvidia module", depends_on=("driver.loaded",), layer="kernel")
def nvidia(ctx: CheckContext) -> Finding:
    return _module_finding(
        ctx, "nvidia", missing=Status.FAIL,
        missing_summary="nvidia is not listed as loaded although the driver's procfs files exist",
        remedy="Load it: `sudo modprobe nvidia`; if that fails, read `sudo dmesg | grep -i nvrm`.",
    )


@check("modules.nvidia_uvm", title="nvidia_uvm module", depends_on=("modules.nvidia",), layer="kernel")
def nvidia_uvm(ctx: CheckContext) -> Finding:
    return _module_finding(
        ctx, "nvidia_uvm", missing=Status.FAIL,
        missing_summary="nvidia_uvm is not loaded: CUDA needs it ('no CUDA-capable device is detected')",
        remedy="Load it and create its device nodes: `sudo nvidia-modprobe -u -c=0` (or `sudo modprobe nvidia-uvm`). "
        "To load it at boot: `echo nvidia-uvm | sudo tee /etc/modules-load.d/nvidia-uvm.conf`.",
    )


@check("modules.nvidia_modeset", title="nvidia_modeset module", depends_on=("modules.nvidia",), layer="kernel")
def nvidia_modeset(ctx: CheckContext) -> Finding:
    return _module_finding(
        ctx, "nvidia_modeset", missing=Status.WARN,
        missing_summary="nvidia_modeset is not loaded (compute works without it; display needs it)",
        remedy="Only needed for display and nvidia_drm: `sudo modprobe nvidia-modeset`.",
    )


@check("modules.nvidia_drm", title="nvidia_drm module", depends_on=("modules.nvidia_modeset",), layer="kernel")
def nvidia_drm(ctx: CheckContext) -> Finding:
    return _module_finding(
        ctx, "nvidia_drm", missing=Status.WARN,
        missing_summary="nvidia_drm is not loaded (compute works without it; display and Wayland need it)",
        remedy="Only needed for display: `sudo modprobe nvidia-drm modeset=1`.",
    )
