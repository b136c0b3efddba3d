"""Plain-text view of an install plan (the CLI prints it; ``--dry-run`` stops after it)."""

from __future__ import annotations

from gpudoctor.fixes.render import render_items
from gpudoctor.install.plan import InstallPlan, InstallStep


def render_step(step: InstallStep, number: int, total: int, *, indent: str = "      ") -> list[str]:
    """The step's header, what it does (instructions, diffs, commands) and what verifies it."""
    lines = [f"[{number}/{total}] {step.id}: {step.title}   ({step.state})"]
    if step.state == "done" and step.detail:
        lines.append(f"{indent}in place: {step.detail}")
        return lines
    if step.manual:
        lines.append(f"{indent}gpudoctor does not install drivers; do this, reboot, then run `gpudoctor install` "
                     "again:")
        lines.extend(f"{indent}  {line}" for line in step.instructions)
    elif step.plan_error is not None:
        lines.append(f"{indent}planned when it runs: {step.plan_error}")
    elif step.plan is not None:
        items = step.plan.ordered()
        if items:
            lines.extend(render_items(items, live=True, indent=indent))
        else:
            lines.append(f"{indent}nothing to run")
        lines.extend(f"{indent}note: {n}" for n in step.plan.notes)
    lines.append(f"{indent}verify: {step.verify_text}")
    if step.state == "failed" and step.detail:
        lines.append(f"{indent}last run failed: {step.detail}")
    return lines


def render_install_plan(plan: InstallPlan) -> str:
    lines = [f"gpudoctor install: {plan.distro.describe()}, route {plan.route}"]
    lines.extend(f"note: {n}" for n in plan.notes)
    lines.append(f"state file: {plan.state_path}")
    lines.append("")
    total = len(plan.steps)
    for i, step in enumerate(plan.steps, start=1):
        lines.extend(render_step(step, i, total))
    return "\n".join(lines) + "\n"
