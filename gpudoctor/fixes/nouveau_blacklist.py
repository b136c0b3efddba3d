"""Fix ``nouveau-blacklist`` (guided): keep nouveau off the GPU so the NVIDIA driver can bind to it.

Steps, each confirmed by the person: write ``/etc/modprobe.d/blacklist-nouveau.conf`` (``blacklist
nouveau``, ``options nouveau modeset=0``, and the same for the newer ``nova_core``/``nova_drm``), rebuild
the initramfs with this distro's tool (nouveau is loaded from it early in boot), then reboot. It never
runs silently: ``--yes`` does not confirm these steps, and ``--check --fix`` only names it.
"""

from __future__ import annotations

import re

from gpudoctor.fixes.apply import read_config_text
from gpudoctor.fixes.base import Command, FileEdit, Fix, FixContext, FixError, Plan
from gpudoctor.fixes.paths import find_binary
from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.procfs import parse_modules
from gpudoctor.host.root import HostRoot

BLACKLIST_FILE = "/etc/modprobe.d/blacklist-nouveau.conf"
BLACKLIST = (
    "# Written by `gpudoctor fix nouveau-blacklist`: keep nouveau (and nova) off NVIDIA GPUs so that the\n"
    "# NVIDIA driver can bind to them. Takes effect after the initramfs is rebuilt and the machine reboots.\n"
    "blacklist nouveau\n"
    "options nouveau modeset=0\n"
    "blacklist nova_core\n"
    "blacklist nova_drm\n"
)
MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d")
_BLACKLISTED = re.compile(r"^\s*blacklist\s+nouveau\s*(#.*)?$", re.MULTILINE)

# (tool, argv): the first one present on the host rebuilds its initramfs.
INITRAMFS_TOOLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("update-initramfs", ("update-initramfs", "-u")),  # Debian, Ubuntu
    ("dracut", ("dracut", "--force")),  # RHEL, Rocky, Alma, Fedora, Amazon Linux, SUSE
    ("mkinitcpio", ("mkinitcpio", "-P")),  # Arch
)


def blacklisted_in(root: HostRoot) -> str | None:
    """The modprobe.d file that already blacklists nouveau, or None."""
    for d in MODPROBE_DIRS:
        for name in root.listdir(d):
            if name.endswith(".conf") and _BLACKLISTED.search(root.try_read_text(f"{d}/{name}") or ""):
                return f"{d}/{name}"
    return None


def initramfs_command(root: HostRoot) -> tuple[str, ...] | None:
    for tool, argv in INITRAMFS_TOOLS:
        if find_binary(root, tool) is not None:
            return argv
    return None


class NouveauBlacklistFix(Fix):
    id = "nouveau-blacklist"
    title = "Blacklist nouveau, rebuild the initramfs, reboot (guided)"
    addresses = ("driver.nouveau",)
    guided = True

    def plan(self, ctx: FixContext) -> Plan:
        root = ctx.facts.root
        try:
            loaded = "nouveau" in parse_modules(root.try_read_text("/proc/modules") or "")
        except ParseError as exc:
            raise FixError(f"{exc}; cannot tell whether nouveau is loaded") from None
        existing = blacklisted_in(root)
        if not loaded:
            where = f"{existing} blacklists it" if existing else "nothing blacklists it, and nothing needs to"
            return Plan(fix_id=self.id, guided=True, notes=(f"nouveau is not loaded ({where})",))
        notes: list[str] = []
        edits: tuple[FileEdit, ...] = ()
        if existing is None:
            before = read_config_text(root, BLACKLIST_FILE)
            edits = (FileEdit(path=BLACKLIST_FILE, before=before, after=BLACKLIST),)
        else:
            notes.append(
                f"{existing} already blacklists nouveau, yet it is loaded: the initramfs still carries it, or the "
                "machine was not rebooted since"
            )
        commands: list[Command] = []
        rebuild = initramfs_command(root)
        if rebuild is None:
            notes.append(
                "no initramfs tool found (update-initramfs, dracut, mkinitcpio): rebuild the initramfs the way "
                "this distro does, so that nouveau is not loaded early in boot"
            )
        else:
            commands.append(
                Command(argv=rebuild, description="rebuild the initramfs so nouveau is not loaded early in boot")
            )
        notes.append("reboot afterwards (`systemctl reboot`): nouveau cannot be unloaded while it drives a display")
        return Plan(
            fix_id=self.id,
            edits=edits,
            commands=tuple(commands),
            notes=tuple(notes),
            needs_root=True,
            guided=True,
            reboot_required=True,
        )
