"""Guided installation: distro-aware, verified, resumable steps built on the fixes.

The public API (the CLI and the TUI wizard use it)::

    plan = build_install_plan(facts, "nvidia")        # or "gpudoctor"
    for step in plan.steps:                            # InstallStep: id, title, commands, edits,
        result = run_step(step, on_output=print)       #   instructions, verify(), state
        if result.state == "failed": break             # StepResult: step_id, state, detail

``run_install(plan, on_output)`` does that loop, resuming after steps an earlier run recorded done, and
keeps ``/var/lib/gpudoctor/install-state.json`` (under the root) up to date.
"""

from __future__ import annotations

from gpudoctor.install.distro import Distro, UnsupportedDistro, detect_distro
from gpudoctor.install.plan import (
    ROUTES,
    InstallOutcome,
    InstallPlan,
    InstallStep,
    StepCheck,
    StepResult,
    build_install_plan,
    run_install,
    run_step,
)
from gpudoctor.install.state import STATE_PATH, InstallState, load_state, save_state

__all__ = [
    "ROUTES",
    "STATE_PATH",
    "Distro",
    "InstallOutcome",
    "InstallPlan",
    "InstallState",
    "InstallStep",
    "StepCheck",
    "StepResult",
    "UnsupportedDistro",
    "build_install_plan",
    "detect_distro",
    "load_state",
    "run_install",
    "run_step",
    "save_state",
]
