"""The fix registry: every fix-up by id, and which fixes address a check."""

from __future__ import annotations

from gpudoctor.fixes.base import Fix
from gpudoctor.fixes.cdi_spec import CdiSpecFix
from gpudoctor.fixes.cgroup_driver import CgroupDriverFix
from gpudoctor.fixes.containerd_runtime import ContainerdRuntimeFix
from gpudoctor.fixes.device_nodes import DeviceNodesFix
from gpudoctor.fixes.docker_runtime import DockerRuntimeFix
from gpudoctor.fixes.load_modules import LoadModulesFix
from gpudoctor.fixes.nouveau_blacklist import NouveauBlacklistFix
from gpudoctor.fixes.toolkit_config import ToolkitConfigFix

# Apply order, bottom of the stack first: a runtime registration is pointless before the modules load.
_ALL: tuple[Fix, ...] = (
    NouveauBlacklistFix(),
    LoadModulesFix(),
    DeviceNodesFix(),
    ToolkitConfigFix(),
    CdiSpecFix(),
    DockerRuntimeFix(),
    ContainerdRuntimeFix(),
    CgroupDriverFix(),
)

FIXES: dict[str, Fix] = {fix.id: fix for fix in _ALL}
"""Every fix-up by id, in apply order."""


def fixes_for_check(check_id: str) -> list[Fix]:
    """The fixes that address `check_id` (in apply order); [] when none does."""
    return [fix for fix in FIXES.values() if check_id in fix.addresses]


def get_fix(fix_id: str) -> Fix:
    """The fix with this id; KeyError (naming the known ids) when there is none."""
    try:
        return FIXES[fix_id]
    except KeyError:
        raise KeyError(f"unknown fix {fix_id!r} (known: {', '.join(FIXES)})") from None


def apply_order(fix_ids: list[str]) -> list[str]:
    """`fix_ids` without duplicates, sorted into apply order (unknown ids are dropped)."""
    wanted = set(fix_ids)
    return [fid for fid in FIXES if fid in wanted]
