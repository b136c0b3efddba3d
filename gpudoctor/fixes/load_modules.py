"""Fix ``load-modules``: ``modprobe`` the NVIDIA kernel modules that are not loaded.

``nvidia`` first, then ``nvidia_uvm`` (CUDA needs it), ``nvidia_modeset`` and ``nvidia_drm``. Only the
modules the running kernel has (``/lib/modules/<release>/modules.dep``) are asked for. This acts on the
running kernel, so it is a live action: under ``--root`` other than ``/`` it is skipped, saying so.
"""

from __future__ import annotations

from gpudoctor.fixes.base import Command, Fix, FixContext, FixError, Plan
from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.procfs import parse_modules
from gpudoctor.host.root import HostRoot

MODULES: tuple[str, ...] = ("nvidia", "nvidia_uvm", "nvidia_modeset", "nvidia_drm")
OPTIONAL: frozenset[str] = frozenset({"nvidia_modeset", "nvidia_drm"})


def available_modules(root: HostRoot) -> set[str] | None:
    """Module names the running kernel can load (from modules.dep); None when that cannot be read."""
    release = (root.try_read_text("/proc/sys/kernel/osrelease") or "").strip()
    if not release:
        return None
    dep = root.try_read_text(f"/lib/modules/{release}/modules.dep")
    if dep is None:
        return None
    names: set[str] = set()
    for line in dep.splitlines():
        path = line.split(":", 1)[0]
        base = path.rsplit("/", 1)[-1]
        for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
            if base.endswith(suffix):
                names.add(base[: -len(suffix)].replace("-", "_"))
                break
    return names


class LoadModulesFix(Fix):
    id = "load-modules"
    title = "Load the NVIDIA kernel modules (modprobe)"
    addresses = ("driver.loaded", "modules.nvidia", "modules.nvidia_uvm", "modules.nvidia_modeset", "modules.nvidia_drm")

    def plan(self, ctx: FixContext) -> Plan:
        root = ctx.facts.root
        try:
            loaded = parse_modules(root.try_read_text("/proc/modules") or "")
        except ParseError as exc:
            raise FixError(f"{exc}; cannot tell which modules are loaded") from None
        if "nouveau" in loaded and "nvidia" not in loaded:
            raise FixError(
                "nouveau is loaded and drives the GPU, so `modprobe nvidia` would fail. Blacklist nouveau and "
                "reboot first (`gpudoctor fix nouveau-blacklist`)."
            )
        available = available_modules(root)
        notes: list[str] = []
        commands: list[Command] = []
        for name in MODULES:
            if name in loaded:
                continue
            if available is not None and name not in available:
                if name in OPTIONAL:
                    continue
                raise FixError(
                    f"{name} is not installed for the running kernel (not in /lib/modules/<release>/modules.dep), "
                    "so modprobe cannot load it. Install the driver's kernel modules for this kernel (DKMS: "
                    "`dkms autoinstall`, or the distro's prebuilt module package) and run the fix again."
                )
            commands.append(
                Command(argv=("modprobe", name), description=f"load the {name} kernel module")
            )
        if commands:
            notes.append("if modprobe fails, `dmesg | tail` or `journalctl -k` says why (Secure Boot, version)")
        return Plan(fix_id=self.id, commands=tuple(commands), notes=tuple(notes), needs_root=bool(commands))
