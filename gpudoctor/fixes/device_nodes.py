"""Fix ``device-nodes``: create the missing ``/dev/nvidia*`` nodes and their ``/dev/char/MAJ:MIN`` links.

What the driver would create (nvidia-modprobe does it on a normal host): ``nvidiactl`` (195:255),
``nvidia-modeset`` (195:254, when that module is loaded), ``nvidiaN`` for each GPU's Device Minor from
``/proc/driver/nvidia/gpus/*/information``, and ``nvidia-uvm``/``nvidia-uvm-tools`` (the dynamic major
of ``nvidia-uvm`` in ``/proc/devices``, minors 0 and 1). Majors always come from ``/proc/devices``; mode
and owner from the driver's ``DeviceFileMode``/``UID``/``GID`` parameters (default 0666 root:root).

The ``/dev/char`` links let runc re-grant the devices after ``systemctl daemon-reload`` on systemd-cgroup
hosts (runc#3708). Under ``--root`` the nodes are created under the root. Creating nodes needs root.
"""

from __future__ import annotations

import os
import stat

from gpudoctor.fixes.base import DeviceNode, Fix, FixContext, FixError, FsAction, Plan, Symlink
from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.nvproc import (
    device_file_gid,
    device_file_mode,
    device_file_uid,
    parse_gpu_information,
    parse_params,
)
from gpudoctor.host.parsers.procfs import parse_devices, parse_modules
from gpudoctor.host.root import HostRoot

NVIDIACTL_MINOR = 255
MODESET_MINOR = 254
DEFAULT_MODE = 0o666


def _parse_error(exc: ParseError) -> FixError:
    return FixError(f"{exc}; gpudoctor cannot tell which device nodes the driver needs")


def expected_nodes(root: HostRoot) -> tuple[list[DeviceNode], list[str]]:
    """The device nodes the loaded driver implies, and notes. Raises FixError when the driver is not loaded."""
    notes: list[str] = []
    text = root.try_read_text("/proc/devices")
    if text is None:
        raise FixError(
            f"cannot read /proc/devices under {root.root}: without it the device majors are unknown "
            "(is /proc mounted there?)"
        )
    try:
        devices = parse_devices(text)
        params = parse_params(root.try_read_text("/proc/driver/nvidia/params") or "")
        modules = parse_modules(root.try_read_text("/proc/modules") or "")
    except ParseError as exc:
        raise _parse_error(exc) from None
    major = devices.char_major("nvidia")
    if major is None:
        raise FixError(
            "/proc/devices has no nvidia (or nvidia-frontend) major: the nvidia kernel module is not loaded, so "
            "there is nothing to make nodes for. Load it first (`gpudoctor fix load-modules`, or `modprobe nvidia`)."
        )
    mode = device_file_mode(params)
    uid = device_file_uid(params) or 0
    gid = device_file_gid(params) or 0
    if mode is None:
        mode = DEFAULT_MODE
    else:
        notes.append(f"mode {mode:04o}, owner {uid}:{gid} from /proc/driver/nvidia/params")
    mode &= 0o7777

    def node(name: str, maj: int, minor: int) -> DeviceNode:
        return DeviceNode(path=f"/dev/{name}", major=maj, minor=minor, mode=mode, uid=uid, gid=gid)

    out = [node("nvidiactl", major, NVIDIACTL_MINOR)]
    if "nvidia_modeset" in modules:
        out.append(node("nvidia-modeset", major, MODESET_MINOR))
    for info_path in root.glob("/proc/driver/nvidia/gpus/*/information"):
        try:
            info = parse_gpu_information(root.read_text(info_path), path=info_path)
        except (ParseError, OSError) as exc:
            raise FixError(f"{info_path}: {exc}; cannot tell that GPU's device minor") from None
        if info.gpu_excluded:
            notes.append(f"{info_path}: GPU excluded by the driver; no node for it")
            continue
        if info.device_minor is None:
            raise FixError(f"{info_path}: no Device Minor; cannot tell which /dev/nvidiaN belongs to this GPU")
        out.append(node(f"nvidia{info.device_minor}", major, info.device_minor))
    uvm = devices.char_major("nvidia-uvm")
    if uvm is not None:
        out.append(node("nvidia-uvm", uvm, 0))
        out.append(node("nvidia-uvm-tools", uvm, 1))
    elif "nvidia_uvm" not in modules:
        notes.append("nvidia_uvm is not loaded, so /dev/nvidia-uvm cannot be made yet (fix load-modules)")
    return out, notes


class DeviceNodesFix(Fix):
    id = "device-nodes"
    title = "Create the missing /dev/nvidia* device nodes and /dev/char links"
    addresses = ("devices.control", "devices.gpus", "devices.uvm", "devices.permissions")

    def plan(self, ctx: FixContext) -> Plan:
        root = ctx.facts.root
        if root.exists("/dev/dxg"):
            return Plan(fix_id=self.id, notes=("WSL2 (/dev/dxg): GPUs are reached through /dev/dxg, not /dev/nvidia*",))
        nodes, notes = expected_nodes(root)
        actions: list[FsAction] = []
        for want in nodes:
            st = root.lstat(want.path)
            if st is None:
                actions.append(want)
            elif not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(want.major, want.minor):
                kind = "a character device" if stat.S_ISCHR(st.st_mode) else "not a character device"
                have = f" {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if stat.S_ISCHR(st.st_mode) else ""
                raise FixError(
                    f"{want.path} exists but is {kind}{have}, not {want.major}:{want.minor} as /proc/devices says. "
                    "gpudoctor will not replace it: remove it (or reload the driver) and run the fix again."
                )
            elif stat.S_IMODE(st.st_mode) != want.mode or (st.st_uid, st.st_gid) != (want.uid, want.gid):
                actions.append(want)
                notes.append(
                    f"{want.path}: mode {stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid} -> "
                    f"{want.mode:04o} {want.uid}:{want.gid}"
                )
        for want in nodes:
            link = f"/dev/char/{want.major}:{want.minor}"
            target = f"../{os.path.basename(want.path)}"
            if root.readlink(link) != target:
                if root.lstat(link) is not None and root.readlink(link) is None:
                    raise FixError(f"{link} exists and is not a symlink; gpudoctor will not replace it")
                actions.append(Symlink(path=link, target=target))
        if actions:
            notes.append(
                "/dev is rebuilt at boot: on a normal host nvidia-modprobe (or nvidia-persistenced) makes these "
                "nodes; install it if they keep going missing"
            )
        return Plan(fix_id=self.id, actions=tuple(actions), notes=tuple(notes), needs_root=bool(actions))
