"""Fix ``toolkit-config``: point ``[nvidia-container-cli] ldconfig`` at an ldconfig this host has.

Debian/Ubuntu packages ship ``@/sbin/ldconfig.real`` (there ``/sbin/ldconfig`` is a wrapper script), RPM
ones ``@/sbin/ldconfig``; a config copied across distros, or an image without ``ldconfig.real``, breaks
every GPU container with ``ldcache error: open failed: /sbin/ldconfig.real``. The fix keeps a value that
works, and otherwise sets ``@/sbin/ldconfig.real`` only where that exists, else ``@/sbin/ldconfig``. The
edit is one line; every comment and every other setting stays as it was.
"""

from __future__ import annotations

from gpudoctor.fixes.apply import read_config_text
from gpudoctor.fixes.base import FileEdit, Fix, FixContext, FixError, Plan
from gpudoctor.fixes.tomledit import load_toml, set_table_string
from gpudoctor.host.root import HostRoot

TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
TABLE = "nvidia-container-cli"
KEY = "ldconfig"
# In order of preference: the real binary where the distro wraps it, then the plain one.
CANDIDATES = ("/sbin/ldconfig.real", "/sbin/ldconfig", "/usr/sbin/ldconfig.real", "/usr/sbin/ldconfig")


def _executable(root: HostRoot, host_path: str) -> bool:
    st = root.stat(host_path)
    return st is not None and root.is_file(host_path) and bool(st.st_mode & 0o111)


def working_ldconfig(root: HostRoot) -> str | None:
    """The ``@``-prefixed ldconfig the toolkit should use on this host, or None when there is none."""
    for path in CANDIDATES:
        if _executable(root, path):
            return "@" + path
    return None


def ldconfig_works(root: HostRoot, value: str) -> bool:
    """True when a configured value names an executable host ldconfig (``@`` = host path)."""
    return value.startswith("@") and _executable(root, value[1:])


class ToolkitConfigFix(Fix):
    id = "toolkit-config"
    title = "Set the toolkit's ldconfig path to one that exists on this distro"
    addresses = ("toolkit.config",)

    def plan(self, ctx: FixContext) -> Plan:
        root = ctx.facts.root
        text = read_config_text(root, TOOLKIT_CONFIG)
        data = load_toml(text or "", path=TOOLKIT_CONFIG)
        table = data.get(TABLE)
        current = table.get(KEY) if isinstance(table, dict) else None
        if isinstance(current, str) and ldconfig_works(root, current):
            return Plan(fix_id=self.id, notes=(f"{TOOLKIT_CONFIG}: ldconfig = {current!r} exists on this host",))
        wanted = working_ldconfig(root)
        if wanted is None:
            raise FixError(
                f"no ldconfig under {root.root} ({', '.join(CANDIDATES)} are all missing), so no value of "
                f"[{TABLE}] ldconfig in {TOOLKIT_CONFIG} can work. Install the distro's libc tools (glibc / "
                "libc-bin), or move the toolkit to CDI mode, which does not run ldconfig that way."
            )
        if text is None and current is None:
            notes = (f"{TOOLKIT_CONFIG} does not exist; it is created with only this setting",)
        else:
            was = "not set" if current is None else f"{current!r}, which does not exist here"
            notes = (f"ldconfig was {was}",)
        after = set_table_string(text or "", TABLE, KEY, wanted, path=TOOLKIT_CONFIG)
        return Plan(
            fix_id=self.id,
            edits=(FileEdit(path=TOOLKIT_CONFIG, before=text, after=after),),
            notes=notes + ("the toolkit reads this file on every container start; nothing needs a restart",),
            needs_root=ctx.live,
        )
