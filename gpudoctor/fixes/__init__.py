"""Fix-ups: plan (diffs, actions, argv) -> apply (lock, backup, atomic write) -> verify (re-run the checks).

``FIXES`` maps each fix id to its :class:`~gpudoctor.fixes.base.Fix`; ``fixes_for_check(check_id)`` says
which fixes address a check. The registry is loaded on first use, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpudoctor.fixes.base import Fix

__all__ = ["FIXES", "fixes_for_check", "get_fix"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gpudoctor.fixes import registry

        return getattr(registry, name)
    raise AttributeError(name)


def fixes_for_check(check_id: str) -> list[Fix]:
    """The fixes that address `check_id`, in apply order."""
    from gpudoctor.fixes.registry import fixes_for_check as _impl

    return _impl(check_id)
