"""Device node checks: /dev/nvidiactl, /dev/nvidiaN per GPU, /dev/nvidia-uvm{,-tools}, and their modes.

Majors come from /proc/devices (``nvidia-frontend``, called ``nvidia`` before driver 550.40, and
``nvidia-uvm``); GPU minors from each GPU's ``Device Minor`` in /proc/driver/nvidia/gpus/*/information.
Nodes are looked up under the root's /dev. None of this exists on WSL2. The DAG is in checks/driver.py.
"""

from __future__ import annotations

import stat as stat_mod

from gpudoctor.checks.base import CheckContext, Finding, Status, check, failed, passed, skipped, warned
from gpudoctor.checks.driver import FIX_DEVICE_NODES, Problem, combine, nvml_line, probe
from gpudoctor.host import model as m
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.parsers.nvproc import (
    device_file_gid,
    device_file_mode,
    device_file_uid,
    modify_device_files,
)

NVIDIA_MAJOR = 195
NVIDIACTL_MINOR = 255


def _major(facts: HostFacts, name: str, evidence: list[str]) -> int | None:
    """The major of `name` in /proc/devices (adding the evidence line), or None."""
    devs = m.proc_devices(facts)
    if devs.value is None:
        evidence.append(devs.problem())
        return None
    major = devs.value.char_major(name)
    if major is None:
        evidence.append(f"{m.PROC_DEVICES}: no {name} entry")
        return None
    registered = next((n for maj, n in devs.value.char_entries if maj == major and n.startswith("nvidia")), name)
    evidence.append(f"{m.PROC_DEVICES}: {major} {registered}")
    return major


def _modify_device_files_off(facts: HostFacts, evidence: list[str]) -> str:
    """Evidence and a remedy hint when the driver was told not to create device nodes."""
    params = m.nvidia_params(facts)
    if params.value is not None and modify_device_files(params.value) is False:
        evidence.append(f"{m.NVIDIA_PARAMS}: ModifyDeviceFiles: 0")
        return (" The driver is loaded with ModifyDeviceFiles=0, so it never creates nodes itself: create them at "
                "boot (a udev rule running nvidia-modprobe) or drop NVreg_ModifyDeviceFiles=0.")
    return ""


def _node_problem(node: m.DeviceNode, major: int | None, minor: int, *, create: str) -> Problem | None:
    """What is wrong with one node that should be c major:minor (major None: any major)."""
    if not node.exists:
        return Problem(summary=f"{node.path} is missing", remedy=f"Create it: {create}", fixes=[FIX_DEVICE_NODES])
    if not node.is_char:
        return Problem(summary=f"{node.path} is a {node.kind}, not a character device",
                       remedy=f"Remove it and recreate the node: `sudo rm {node.path}` then {create}",
                       fixes=[FIX_DEVICE_NODES])
    if (major is not None and node.major != major) or node.minor != minor:
        want = f"{major}:{minor}" if major is not None else f"<major>:{minor}"
        return Problem(summary=f"{node.path} is c {node.major}:{node.minor}, expected c {want}",
                       remedy=f"Recreate it with the right numbers: `sudo rm {node.path}` then {create}",
                       fixes=[FIX_DEVICE_NODES])
    return None


@check("devices.control", title="/dev/nvidiactl", depends_on=("modules.nvidia",), layer="devices")
def control(ctx: CheckContext) -> Finding:
    facts = ctx.host
    if m.wsl(facts).wsl2:
        return skipped(m.WSL_SKIP)
    evidence: list[str] = []
    major = _major(facts, "nvidia-frontend", evidence)
    node = m.device_node(facts, "/dev/nvidiactl")
    evidence.append(node.describe())
    hint = _modify_device_files_off(facts, evidence)
    expected = major if major is not None else NVIDIA_MAJOR
    problem = _node_problem(node, expected, NVIDIACTL_MINOR,
                            create=f"`sudo nvidia-modprobe -c 0` (or `sudo mknod -m 666 /dev/nvidiactl c {expected} "
                            f"{NVIDIACTL_MINOR}`).{hint}")
    if problem is not None:
        return failed(problem.summary, evidence, remedy=problem.remedy, fixes=problem.fixes)
    return passed(f"/dev/nvidiactl is c {node.major}:{node.minor}", evidence)


@check("devices.gpus", title="/dev/nvidiaN for each GPU", depends_on=("modules.nvidia", "driver.loaded"),
       layer="devices")
def gpu_nodes(ctx: CheckContext) -> Finding:
    facts = ctx.host
    if m.wsl(facts).wsl2:
        return skipped(m.WSL_SKIP)
    evidence: list[str] = []
    major = _major(facts, "nvidia-frontend", evidence)
    expected = major if major is not None else NVIDIA_MAJOR
    gpus = m.proc_gpus(facts)
    if not gpus:
        evidence.append(f"{m.NVIDIA_GPUS_DIR}: no GPUs")
        return warned(f"the driver lists no GPUs in {m.NVIDIA_GPUS_DIR}, so no /dev/nvidiaN can be checked", evidence,
                      remedy="Read the kernel log (`sudo dmesg | grep NVRM`): the driver did not initialise any GPU.")
    hint = _modify_device_files_off(facts, evidence)
    fails: list[Problem] = []
    warns: list[Problem] = []
    ok: list[str] = []
    for gpu in gpus:
        if gpu.info is None:
            why = str(gpu.error) if gpu.error is not None else f"{gpu.path}: {gpu.unreadable}"
            evidence.append(f"{why} (cannot be parsed)" if gpu.error is not None else why)
            warns.append(Problem(summary=f"cannot read GPU {gpu.bus_dir}'s Device Minor ({why})",
                                 remedy=f"Compare with `cat {gpu.path}` on the host; the driver writes this file, so "
                                 "an unreadable one points to a damaged copy of /proc or a GPU in a bad state."))
            continue
        minor = gpu.info.device_minor
        if minor is None:
            evidence.append(f"{gpu.path}: Device Minor unknown")
            warns.append(Problem(summary=f"GPU {gpu.bus_dir} has no Device Minor in {gpu.path}",
                                 remedy="The driver could not read the GPU (it may have fallen off the bus): check "
                                 "`sudo dmesg | grep -i xid` and reset or reboot."))
            continue
        evidence.append(f"{gpu.path}: Device Minor {minor}" + (" (GPU Excluded)" if gpu.info.gpu_excluded else ""))
        node = m.device_node(facts, f"/dev/nvidia{minor}")
        evidence.append(node.describe())
        problem = _node_problem(node, expected, minor,
                                create=f"`sudo nvidia-modprobe -c {minor}` (or `sudo mknod -m 666 /dev/nvidia{minor} "
                                f"c {expected} {minor}`).{hint}")
        if problem is None:
            ok.append(node.path)
        elif gpu.info.gpu_excluded:
            evidence.append(f"(no node needed for excluded GPU {gpu.bus_dir})")
        else:
            problem.summary += f" (GPU {gpu.pci_address}, Device Minor {minor})"
            fails.append(problem)
    if fails:
        return combine(fails + warns, evidence, status=Status.FAIL)
    if warns:
        return combine(warns, evidence, status=Status.WARN)
    return passed(f"{', '.join(ok)} match the GPUs' Device Minors", evidence)


@check("devices.uvm", title="/dev/nvidia-uvm", depends_on=("modules.nvidia_uvm",), layer="devices")
def uvm(ctx: CheckContext) -> Finding:
    facts = ctx.host
    if m.wsl(facts).wsl2:
        return skipped(m.WSL_SKIP)
    evidence: list[str] = []
    major = _major(facts, "nvidia-uvm", evidence)
    node = m.device_node(facts, "/dev/nvidia-uvm")
    tools = m.device_node(facts, "/dev/nvidia-uvm-tools")
    evidence += [node.describe(), tools.describe()]
    hint = _modify_device_files_off(facts, evidence)
    create = "`sudo nvidia-modprobe -u -c=0` (creates /dev/nvidia-uvm and /dev/nvidia-uvm-tools)." + hint
    problem = _node_problem(node, major, 0, create=create)
    if problem is not None:
        problem.summary += ": CUDA programs fail with 'no CUDA-capable device is detected'"
        return failed(problem.summary, evidence, remedy=problem.remedy, fixes=problem.fixes)
    tools_problem = _node_problem(tools, major, 1, create=create)
    if tools_problem is not None:
        tools_problem.summary += " (profilers and debuggers need it; CUDA works without it)"
        return combine([tools_problem], evidence, status=Status.WARN)
    return passed(f"/dev/nvidia-uvm is c {node.major}:{node.minor}, /dev/nvidia-uvm-tools c {tools.major}:{tools.minor}",
                  evidence)


def _mode_text(mode: int) -> str:
    return f"{stat_mod.filemode(stat_mod.S_IFCHR | mode)} ({mode:04o})"


@check("devices.permissions", title="Device node permissions", depends_on=("devices.control", "devices.gpus"),
       layer="devices")
def permissions(ctx: CheckContext) -> Finding:
    facts = ctx.host
    if m.wsl(facts).wsl2:
        return skipped(m.WSL_SKIP)
    paths = ["/dev/nvidiactl"]
    paths += [f"/dev/nvidia{g.info.device_minor}" for g in m.proc_gpus(facts)
              if g.info is not None and g.info.device_minor is not None]
    paths += ["/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    nodes = [m.device_node(facts, p) for p in dict.fromkeys(paths)]
    nodes = [n for n in nodes if n.is_char and n.mode is not None]
    evidence = [n.describe() for n in nodes]
    params = m.nvidia_params(facts)
    dfm: int | None = None
    if params.value is not None:
        dfm = device_file_mode(params.value)
        uid, gid = device_file_uid(params.value), device_file_gid(params.value)
        evidence.append(f"{m.NVIDIA_PARAMS}: DeviceFileMode: {dfm if dfm is not None else '?'}"
                        + (f" ({dfm:04o})" if dfm is not None else "") + f", DeviceFileUID: {uid}, DeviceFileGID: {gid}")
    else:
        evidence.append(params.problem())
    options = [line for line in m.modprobe_config(facts).options.get("nvidia", []) if "NVreg_DeviceFile" in line]
    evidence += options
    where = f" in {', '.join(sorted({o.split(':', 1)[0] for o in options}))}" if options else ""
    remedy = (f"Make the nodes world read-write: drop the NVreg_DeviceFileMode/UID/GID options{where or ' (modprobe.d)'} "
              "and reload the driver (or reboot); right now: `sudo chmod 0666 /dev/nvidia*`. Or keep the "
              "restriction and run containers with the group: `docker run --group-add <gid>`.")
    fails: list[Problem] = []
    warns: list[Problem] = []
    for node in nodes:
        assert node.mode is not None
        if node.mode & 0o006 == 0o006:
            continue
        if node.mode & 0o060 == 0o060:
            warns.append(Problem(summary=f"{node.path} is {_mode_text(node.mode)}: only root and group {node.gid} can "
                                 "use it; non-root container users get 'Insufficient Permissions'", remedy=remedy))
        else:
            fails.append(Problem(summary=f"{node.path} is {_mode_text(node.mode)}: only its owner (uid {node.uid}) "
                                 "can use it; other users get 'Insufficient Permissions'", remedy=remedy))
    if dfm is not None and dfm & 0o006 != 0o006:
        target = warns if dfm & 0o060 == 0o060 else fails
        target.append(Problem(summary=f"the driver creates device nodes with DeviceFileMode {dfm:04o}{where}",
                              remedy=remedy))
    p = probe(ctx)
    if p is not None:
        evidence.append(nvml_line(p))  # a hung or crashed NVML is driver.version_match's error
        if p.status == "no_permission":
            fails.insert(0, Problem(summary="NVML: Insufficient Permissions opening /dev/nvidiactl", remedy=remedy))
        for err in p.device_errors:
            evidence.append(f"NVML GPU {err.index}: {err.status}: {err.error}")
            if err.status == "no_permission":
                fails.append(Problem(summary=f"NVML: Insufficient Permissions for GPU {err.index}", remedy=remedy))
    if fails:
        return combine(fails + warns, evidence, status=Status.FAIL)
    if warns:
        return combine(warns, evidence, status=Status.WARN)
    if not nodes:
        return skipped("no NVIDIA device nodes to check", evidence)
    mode = f" (DeviceFileMode {dfm:04o})" if dfm is not None else ""
    return passed(f"all {len(nodes)} device nodes are readable and writable by everyone{mode}", evidence)
