"""Fix ``cgroup-driver`` (guided choice): keep GPUs in running containers on cgroup v2 + systemd.

With the systemd cgroup driver, ``systemctl daemon-reload`` re-applies each container's device policy and
drops the GPU rules the legacy hook added behind runc's back: ``Failed to initialize NVML: Unknown
Error``. Three ways out, and the person picks one (``--choice``):

- ``cdi``: generate the CDI spec and set the toolkit's ``mode = "cdi"``: device rules then come from the
  container spec, which systemd keeps. No restart; recreate running GPU containers.
- ``cgroupfs``: Docker's ``exec-opts: ["native.cgroupdriver=cgroupfs"]``. Needs ``systemctl restart
  docker``, which stops every container, and must match the kubelet's driver on Kubernetes nodes.
- ``links``: create the ``/dev/char/MAJ:MIN`` links runc needs to re-grant the devices; lost at reboot.

Every step asks for confirmation; ``--yes`` does not stand in for it.
"""

from __future__ import annotations

import os
import stat

from gpudoctor.fixes.apply import read_config_text
from gpudoctor.fixes.base import Command, FileEdit, Fix, FixContext, FixError, FsAction, Plan, Symlink
from gpudoctor.fixes.cdi_spec import CdiSpecFix
from gpudoctor.fixes.jsonedit import JsonObjectEditor
from gpudoctor.fixes.tomledit import load_toml, set_table_string
from gpudoctor.host import runtime_facts as rf

CHOICES: dict[str, str] = {
    "cdi": "CDI: generate the CDI spec and switch the toolkit to mode \"cdi\" (no restart; recreate GPU containers)",
    "cgroupfs": "Docker on the cgroupfs driver: exec-opts native.cgroupdriver=cgroupfs (restarts docker, stopping "
    "every container; not on Kubernetes nodes whose kubelet uses systemd)",
    "links": "create the /dev/char/MAJ:MIN links runc uses to re-grant devices (no restart; lost at reboot)",
}
CGROUPFS = "native.cgroupdriver=cgroupfs"


def _check_passes(ctx: FixContext, check_id: str) -> bool:
    from gpudoctor.checks.base import Status
    from gpudoctor.doctor import run_doctor

    report = run_doctor(ctx.facts.fresh(), options=ctx.options, only=[check_id])
    result = report.by_id().get(check_id)
    return result is not None and result.status in (Status.PASS, Status.SKIP)


class CgroupDriverFix(Fix):
    id = "cgroup-driver"
    title = "Keep GPUs in running containers with the systemd cgroup driver (guided choice)"
    addresses = ("runtime.cgroups",)
    guided = True
    choices = CHOICES

    def plan(self, ctx: FixContext) -> Plan:
        if _check_passes(ctx, "runtime.cgroups"):
            return Plan(fix_id=self.id, guided=True, notes=("runtime.cgroups passes: GPUs survive daemon-reload",))
        if ctx.choice is None:
            return Plan(
                fix_id=self.id,
                guided=True,
                choices=CHOICES,
                notes=("pick one (gpudoctor fix cgroup-driver --choice cdi|cgroupfs|links)",),
            )
        if ctx.choice == "cdi":
            return self._cdi(ctx)
        if ctx.choice == "cgroupfs":
            return self._cgroupfs(ctx)
        if ctx.choice == "links":
            return self._links(ctx)
        raise FixError(f"unknown choice {ctx.choice!r} for cgroup-driver: pick one of {', '.join(CHOICES)}")

    def _cdi(self, ctx: FixContext) -> Plan:
        spec = CdiSpecFix().plan(ctx)
        path = rf.TOOLKIT_CONFIG
        text = read_config_text(ctx.facts.root, path)
        data = load_toml(text or "", path=path)
        table = data.get("nvidia-container-runtime")
        edits: list[FileEdit] = list(spec.edits)
        if not (isinstance(table, dict) and table.get("mode") == "cdi"):
            after = set_table_string(text or "", "nvidia-container-runtime", "mode", "cdi", path=path)
            edits.append(FileEdit(path=path, before=text, after=after))
        return Plan(
            fix_id=self.id,
            edits=tuple(edits),
            notes=(*spec.notes, "recreate running GPU containers so they get their devices from the spec"),
            needs_root=ctx.live,
            guided=True,
            data={"choice": "cdi"},
        )

    def _cgroupfs(self, ctx: FixContext) -> Plan:
        unit = rf.docker_unit(ctx.facts)
        if unit.values("--exec-opt"):
            raise FixError(
                f"dockerd's unit ({unit.source}) passes --exec-opt, and dockerd refuses exec-opts given both as a flag "
                "and in daemon.json. Add `--exec-opt native.cgroupdriver=cgroupfs` there instead."
            )
        path = rf.daemon_json_path(ctx.facts)
        text = read_config_text(ctx.facts.root, path)
        editor = JsonObjectEditor(text or "", path=path)
        opts = editor.data.get("exec-opts", [])
        if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
            raise FixError(f"{path}: exec-opts is not a list of strings; the file is unchanged")
        new = [o for o in opts if not o.replace(" ", "").startswith("native.cgroupdriver=")] + [CGROUPFS]
        edits: tuple[FileEdit, ...] = ()
        if new != opts:
            editor.set(("exec-opts",), new)
            edits = (FileEdit(path=path, before=text, after=editor.text),)
        commands = (
            Command(
                argv=("systemctl", "restart", "docker"),
                description="the cgroup driver changes only when dockerd starts",
                confirm="Restart docker now (`systemctl restart docker`)? This STOPS every running container.",
            ),
        )
        notes = ["on Kubernetes nodes the kubelet's cgroupDriver must match; leave those on systemd and use cdi"]
        for setup in rf.containerd_setups(ctx.facts):
            cfg = setup.loaded.value
            if cfg is None or rf.cri_disabled(cfg) is not None:
                continue
            runc = cfg.runtimes.get("runc")
            if runc is not None and runc.systemd_cgroup:
                notes.append(f"{setup.loaded.path} keeps SystemdCgroup = true: this choice changes Docker only")
        return Plan(
            fix_id=self.id,
            edits=edits,
            commands=commands if edits else (),
            notes=tuple(notes),
            needs_root=ctx.live,
            guided=True,
            data={"choice": "cgroupfs"},
        )

    def _links(self, ctx: FixContext) -> Plan:
        root = ctx.facts.root
        actions: list[FsAction] = []
        for node in ["/dev/nvidiactl", *rf.host_gpu_nodes(ctx.facts), "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]:
            st = root.stat(node)
            if st is None or not stat.S_ISCHR(st.st_mode):
                continue
            link = f"/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            target = f"../{os.path.basename(node)}"
            if root.readlink(link) != target:
                actions.append(Symlink(path=link, target=target))
        return Plan(
            fix_id=self.id,
            actions=tuple(actions),
            notes=("/dev/char links vanish at reboot: run this again after boot, or pick cdi for a lasting fix",),
            needs_root=bool(actions),
            guided=True,
            data={"choice": "links"},
        )
