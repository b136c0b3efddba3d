"""Plain-text views of plans and results, shared by ``gpudoctor fix``, ``--check --fix`` and ``install``.

These return text; the commands layer prints it and the TUI shows it. Paths are host paths (as the
host sees them), never ``--root``-prefixed.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from gpudoctor.fixes.base import ApplyResult, Command, FileEdit, Fix, Plan, PlanItem


def render_plan(plan: Plan, fix: Fix | None = None, *, live: bool = True, indent: str = "  ") -> str:
    """The plan as a person reads it: what changes (unified diffs), what runs (argv), and whether root is needed."""
    title = f"{plan.fix_id}: {fix.title}" if fix is not None else plan.fix_id
    lines = [title]
    if plan.empty:
        lines.append(f"{indent}nothing to do: already in place")
        lines.extend(f"{indent}note: {n}" for n in plan.notes)
        return "\n".join(lines) + "\n"
    kind = "guided (every step asks for confirmation)" if plan.guided else "safe"
    lines.append(f"{indent}kind: {kind}; needs root: {'yes' if plan.needs_root else 'no'}")
    lines.extend(render_items(plan.ordered(), live=live, indent=indent))
    for note in plan.notes:
        lines.append(f"{indent}note: {note}")
    if plan.reboot_required:
        lines.append(f"{indent}a reboot is needed afterwards")
    return "\n".join(lines) + "\n"


def render_items(items: Sequence[PlanItem], *, live: bool = True, indent: str = "  ") -> list[str]:
    """Lines for plan steps: a unified diff per file edit, a shell line per command or node."""
    lines: list[str] = []
    for item in items:
        if isinstance(item, FileEdit):
            verb = "create" if item.before is None else "edit"
            lines.append(f"{indent}{verb} {item.path}:")
            lines.extend(f"{indent}  {d}" for d in item.diff.splitlines())
        elif isinstance(item, Command):
            tags = []
            if item.live and not live:
                tags.append("skipped: live action, --root is not /")
            if item.confirm:
                tags.append("asks first")
            suffix = f"   [{'; '.join(tags)}]" if tags else ""
            lines.append(f"{indent}$ {shlex.join(item.argv)}{suffix}")
            lines.append(f"{indent}    # {item.description}")
        else:
            lines.append(f"{indent}$ {shlex.join(item.argv)}")
    return lines


def render_result(result: ApplyResult) -> str:
    """What apply did, one line per fact; the error last."""
    lines: list[str] = []
    status = "done" if result.ok else "FAILED"
    lines.append(f"{result.fix_id}: {status}")
    for path in result.changed:
        backup = result.backups.get(path)
        lines.append(f"  changed {path}" + (f" (backup {backup})" if backup else ""))
    lines.extend(f"  {m}" for m in result.messages)
    lines.extend(f"  skipped: {s}" for s in result.skipped)
    if result.reboot_required and result.ok:
        lines.append("  reboot the machine to finish this fix")
    if result.error:
        lines.append(f"  error: {result.error}")
    return "\n".join(lines) + "\n"
