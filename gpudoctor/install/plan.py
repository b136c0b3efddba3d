"""Guided installation as ordered, verified, resumable steps (the TUI wizard drives the same API).

``build_install_plan(facts, route)`` returns an :class:`InstallPlan` whose steps are, in order:

1. ``driver``: instructions only (installing a driver is the distribution's business); verified by the
   driver checks.
2. ``docker``: Docker >= 19.03, the distribution's way.
3. ``toolkit``: the NVIDIA Container Toolkit from NVIDIA's repository (keyring-based), or, with route
   ``gpudoctor``, ``engine``: gpudoctor's own runtime launcher and CDI spec, which need no vendor packages.
4. ``register``: the runtime in daemon.json (fix ``docker-runtime``'s edit).
5. ``reload``: dockerd takes it in (SIGHUP; a restart only on confirmation).
6. ``verify``: the parity check, ``nvidia-smi`` in a container.

``run_step(step, on_output)`` verifies first (a step already in place is ``done`` without running
anything), runs the step's commands and edits in order with live output, and verifies again. Each step
is planned anew right before it runs, because the steps before it changed the host.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gpudoctor.checks.base import CheckOptions, Status
from gpudoctor.fixes.apply import apply_plan
from gpudoctor.fixes.base import (
    ApplyResult,
    Command,
    ConfirmCallback,
    FileEdit,
    FixContext,
    FixError,
    OutputCallback,
    Plan,
)
from gpudoctor.fixes.cdi_spec import CdiSpecFix
from gpudoctor.fixes.docker_runtime import DockerRuntimeFix, choose_runtime
from gpudoctor.fixes.dockerd import docker_info, find_dockerd, runtimes_known
from gpudoctor.fixes.paths import LAUNCHER_PATH
from gpudoctor.host import runtime_facts as rf
from gpudoctor.host.facts import HostFacts
from gpudoctor.install import recipes
from gpudoctor.install.distro import Distro, detect_distro
from gpudoctor.install.state import STATE_PATH, InstallState, load_state, save_state

ROUTES = ("nvidia", "gpudoctor")
MIN_DOCKER = (19, 3)
TOOLKIT_BINARIES = ("nvidia-container-runtime", "nvidia-container-runtime-hook", "nvidia-ctk")


@dataclass(slots=True, frozen=True, kw_only=True)
class StepCheck:
    """A verification: `ok` True (in place), False (not), or None (cannot be told here: offline, --root)."""

    ok: bool | None
    detail: str


@dataclass(slots=True, kw_only=True)
class StepResult:
    step_id: str
    state: str
    """``done``, ``failed`` or ``skipped`` (could not be verified here)."""
    detail: str
    apply: ApplyResult | None = None


PlanMaker = Callable[[FixContext], Plan]
Applier = Callable[[FixContext, Plan, OutputCallback | None], ApplyResult]
Verifier = Callable[[FixContext], StepCheck]


@dataclass(slots=True, kw_only=True, eq=False)
class InstallStep:
    """One step. `plan` is what it would do as of when the plan was built (`plan_error` when it cannot be
    planned yet, e.g. the CDI spec before there is a driver); it is planned again when it runs."""

    id: str
    title: str
    verify_text: str
    ctx: FixContext
    make_plan: PlanMaker | None
    verifier: Verifier
    applier: Applier | None = None
    instructions: tuple[str, ...] = ()
    state: str = "pending"
    detail: str = ""
    plan: Plan | None = None
    plan_error: str | None = None

    @property
    def manual(self) -> bool:
        """A step the person does themselves (the driver); gpudoctor only verifies it."""
        return self.make_plan is None

    @property
    def commands(self) -> tuple[Command, ...]:
        return self.plan.commands if self.plan is not None else ()

    @property
    def edits(self) -> tuple[FileEdit, ...]:
        return self.plan.edits if self.plan is not None else ()

    def fresh_ctx(self, confirm: ConfirmCallback | None = None) -> FixContext:
        """The step's context on fresh facts (the steps before changed the host)."""
        return self.ctx.fresh(confirm=confirm if confirm is not None else self.ctx.confirm)

    def verify(self) -> StepCheck:
        """Check the step's result on the host as it is now."""
        return self.verifier(self.fresh_ctx())

    def replan(self) -> None:
        """Plan again against the host as it is now (sets `plan` or `plan_error`)."""
        if self.make_plan is None:
            return
        try:
            self.plan = self.make_plan(self.fresh_ctx())
            self.plan_error = None
        except FixError as exc:
            self.plan, self.plan_error = None, str(exc)


@dataclass(slots=True, kw_only=True)
class InstallPlan:
    distro: Distro
    route: str
    steps: list[InstallStep]
    state: InstallState
    state_path: str = STATE_PATH
    notes: list[str] = field(default_factory=list)

    def step(self, step_id: str) -> InstallStep:
        return next(s for s in self.steps if s.id == step_id)

    def survey(self) -> None:
        """Verify every step now, without running anything: steps already in place become ``done``."""
        for s in self.steps:
            check = s.verify()
            if check.ok is True:
                s.state, s.detail = "done", check.detail
            elif s.state == "done":
                s.state, s.detail = "pending", f"recorded done, but now: {check.detail}"

    @property
    def resume_from(self) -> InstallStep | None:
        """The first step not done (where a run starts), or None when all are."""
        return next((s for s in self.steps if s.state not in ("done", "skipped")), None)


# -- verifications -------------------------------------------------------------------------------------------


def _checks(ctx: FixContext, ids: Sequence[str]) -> StepCheck:
    from gpudoctor.doctor import run_doctor

    report = run_doctor(ctx.facts, options=ctx.options, only=list(ids))
    bad = [r for r in report.checks if r.status in (Status.FAIL, Status.ERROR)]
    if bad:
        return StepCheck(ok=False, detail="; ".join(f"{r.id}: {r.summary}" for r in bad))
    skipped = [r for r in report.checks if r.status is Status.SKIP]
    if skipped and len(skipped) == len(report.checks):
        return StepCheck(ok=None, detail="; ".join(f"{r.id}: {r.summary}" for r in skipped))
    return StepCheck(ok=True, detail="; ".join(f"{r.id}: {r.summary}" for r in report.checks))


_VERSION = re.compile(r"(\d+)\.(\d+)")


def _parse_version(text: str) -> tuple[int, int] | None:
    text = text.split(":", 1)[1] if re.match(r"^\d+:", text) else text  # a Debian epoch ("5:24.0.7-1")
    m = _VERSION.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def dpkg_version(ctx: FixContext, packages: Sequence[str]) -> tuple[str, str] | None:
    """(package, version) of the first installed package of `packages` in the dpkg database."""
    text = ctx.facts.root.try_read_text("/var/lib/dpkg/status") or ""
    for block in text.split("\n\n"):
        fields = dict(
            (line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in block.splitlines() if ":" in line
        )
        if fields.get("Package") in packages and "installed" in fields.get("Status", "").split():
            return fields["Package"], fields.get("Version", "")
    return None


def docker_check(ctx: FixContext) -> StepCheck:
    dockerd = rf.find_binary(ctx.facts, "dockerd")
    if not dockerd.ok or dockerd.path is None:
        return StepCheck(ok=False, detail=f"Docker is not installed ({dockerd.describe()})")
    version: tuple[int, int] | None = None
    source = ""
    if ctx.live:
        try:
            out = subprocess.run([dockerd.path, "--version"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        version, source = _parse_version(out), f"`{dockerd.path} --version`: {out.strip()}"
    else:
        pkg = dpkg_version(ctx, ("docker-ce", "docker.io", "moby-engine", "docker"))
        if pkg is not None:
            version, source = _parse_version(pkg[1]), f"/var/lib/dpkg/status: {pkg[0]} {pkg[1]}"
    if version is None:
        return StepCheck(ok=True, detail=f"{dockerd.path} is installed (version not known here)")
    if version < MIN_DOCKER:
        return StepCheck(ok=False, detail=f"Docker {version[0]}.{version[1]} is older than 19.03 ({source})")
    return StepCheck(ok=True, detail=source)


def toolkit_check(ctx: FixContext) -> StepCheck:
    found = [rf.find_binary(ctx.facts, name) for name in TOOLKIT_BINARIES]
    missing = [b.describe() for b in found if not b.ok]
    if missing:
        return StepCheck(ok=False, detail="; ".join(missing))
    return StepCheck(ok=True, detail="; ".join(b.describe() for b in found))


def engine_check(ctx: FixContext) -> StepCheck:
    launcher = ctx.runtime_path or LAUNCHER_PATH
    binary = rf.find_binary(ctx.facts, launcher)
    specs = [f for f in rf.cdi_files(ctx.facts) if f.is_nvidia]
    fresh = [f.loaded.path for f in specs if f.loaded.ok and not f.stale]
    problems = []
    if not binary.ok:
        problems.append(binary.describe())
    if not fresh:
        problems.append("no fresh NVIDIA CDI spec in " + ", ".join(rf.CDI_DIRS))
    if problems:
        return StepCheck(ok=False, detail="; ".join(problems))
    return StepCheck(ok=True, detail=f"{launcher}: present; {fresh[0]}: fresh CDI spec")


def register_check(ctx: FixContext) -> StepCheck:
    name = ctx.runtime or "nvidia"
    for rt in rf.docker_runtimes(ctx.facts):
        if rt.name == name:
            if rt.binary is not None and rt.binary.ok:
                return StepCheck(ok=True, detail=f"{rt.source}: path = {rt.path!r} (present)")
            return StepCheck(ok=False, detail=f"{rt.source}: path = {rt.path!r}, which is missing")
    return StepCheck(ok=False, detail=f"{rf.daemon_json_path(ctx.facts)} does not register the {name} runtime")


def reload_check(ctx: FixContext) -> StepCheck:
    name = ctx.runtime or "nvidia"
    if not ctx.live or ctx.facts.offline:
        return StepCheck(ok=None, detail="dockerd cannot be asked here (--root is not / or --offline)")
    daemon = find_dockerd(ctx.facts.root, ctx.facts.docker_host)
    if daemon is None or daemon.socket_path is None:
        return StepCheck(ok=False, detail="dockerd is not running (systemctl start docker)")
    known = runtimes_known(docker_info(daemon.socket_path))
    if known is None:
        return StepCheck(ok=False, detail=f"dockerd (PID {daemon.pid}) does not answer on {daemon.socket_path}")
    if name not in known:
        return StepCheck(ok=False, detail=f"dockerd (PID {daemon.pid}) knows {', '.join(sorted(known))}, not {name}")
    return StepCheck(ok=True, detail=f"dockerd (PID {daemon.pid}) lists the {name} runtime")


def parity_check(ctx: FixContext) -> StepCheck:
    if not ctx.live or ctx.facts.offline:
        return StepCheck(ok=None, detail="the parity check runs a container: not under --root or --offline")
    return _checks(ctx, ["parity.nvidia_smi"])


# -- plans ---------------------------------------------------------------------------------------------------


def _engine_plan(ctx: FixContext) -> Plan:
    items: list[FileEdit] = []
    choice = choose_runtime(ctx, {})
    if choice.launcher is not None:
        items.append(choice.launcher)
    items += CdiSpecFix().plan(ctx).edits
    notes = (*choice.notes, "gpudoctor's route needs no vendor packages: its runtime puts the GPUs in the spec")
    return Plan.in_order("install:engine", items, notes=notes, needs_root=ctx.live)


def _register_plan(ctx: FixContext) -> Plan:
    plan = DockerRuntimeFix().plan(ctx)
    launcher = ctx.runtime_path or LAUNCHER_PATH
    edits = tuple(e for e in plan.edits if e.path != launcher)  # the engine step's
    # Only what this step does to daemon.json (the runtime's own notes belong to the steps before).
    notes = tuple(n for n in plan.notes if n.startswith(("removed ", "default-runtime")))
    return Plan(fix_id="install:register", edits=edits, notes=notes, needs_root=plan.needs_root, data=plan.data)


def _reload_plan(ctx: FixContext) -> Plan:
    plan = DockerRuntimeFix().plan(ctx)
    if not ctx.live:
        notes: tuple[str, ...] = ("--root is not /: dockerd is not signalled; on that host run `systemctl reload docker`",)
    elif not plan.commands:
        notes = ("nothing to signal: dockerd is not running, or it lists the runtime already",)
    else:
        notes = ("SIGHUP reloads runtimes without stopping containers",)
    return Plan(fix_id="docker-runtime", commands=plan.commands, notes=notes, needs_root=plan.needs_root,
                data=plan.data)


def _verify_plan(ctx: FixContext) -> Plan:
    return Plan(fix_id="install:verify", notes=(
        "runs nvidia-smi in a container through the registered runtime and compares it with the host",))


def _reload_apply(ctx: FixContext, plan: Plan, on_output: OutputCallback | None) -> ApplyResult:
    return DockerRuntimeFix().apply(ctx, plan, on_output)


def build_install_plan(
    facts: HostFacts,
    route: str = "nvidia",
    *,
    options: CheckOptions | None = None,
    confirm: ConfirmCallback | None = None,
    runtime_path: str | None = None,
    distro: Distro | None = None,
) -> InstallPlan:
    """The ordered steps for this host and route, each planned against the host as it is now.

    Raises UnsupportedDistro (from detect_distro) when there is no recipe for the host's distribution.
    """
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}: choose {' or '.join(ROUTES)}")
    distro = distro or detect_distro(facts.root)
    ctx = FixContext(
        facts=facts,
        options=options or CheckOptions(offline=facts.offline),
        confirm=confirm,
        runtime=route,
        runtime_path=runtime_path,
    )
    root = facts.root

    def step(
        step_id: str,
        title: str,
        verify_text: str,
        verifier: Verifier,
        make_plan: PlanMaker | None = None,
        *,
        instructions: tuple[str, ...] = (),
        applier: Applier | None = None,
    ) -> InstallStep:
        return InstallStep(id=step_id, title=title, verify_text=verify_text, ctx=ctx, make_plan=make_plan,
                           verifier=verifier, instructions=instructions, applier=applier)

    steps = [
        step("driver", "The NVIDIA driver (instructions only)",
             "the driver checks pass: libnvidia-ml.so.1 is installed and the nvidia module is loaded",
             lambda c: _checks(c, ["driver.installed", "driver.loaded"]),
             instructions=recipes.driver_instructions(distro)),
        step("docker", "Docker 19.03 or newer", "dockerd is installed, version 19.03 or newer", docker_check,
             lambda c: Plan.in_order("install:docker", recipes.docker_items(c.facts.root, distro),
                                     needs_root=c.live)),
    ]
    if route == "nvidia":
        steps.append(step(
            "toolkit", "The NVIDIA Container Toolkit, from NVIDIA's repository",
            "nvidia-container-runtime, nvidia-container-runtime-hook and nvidia-ctk are installed",
            toolkit_check,
            lambda c: Plan.in_order("install:toolkit", recipes.toolkit_items(c.facts.root, distro),
                                    needs_root=c.live),
        ))
    else:
        steps.append(step(
            "engine", "gpudoctor's runtime and CDI spec (no vendor packages)",
            f"the runtime launcher ({runtime_path or LAUNCHER_PATH}) exists and a fresh NVIDIA CDI spec describes "
            "this host",
            engine_check, _engine_plan,
        ))
    steps += [
        step("register", f"Register the {route} runtime in Docker's daemon.json",
             f"daemon.json registers the {route} runtime and its binary exists", register_check, _register_plan),
        step("reload", "Make dockerd load it (SIGHUP; a restart only if you confirm)",
             f"`docker info` lists the {route} runtime", reload_check, _reload_plan, applier=_reload_apply),
        step("verify", "Verify: nvidia-smi inside a container (the parity check)",
             "parity.nvidia_smi passes", parity_check, _verify_plan),
    ]
    state = load_state(root)
    plan = InstallPlan(distro=distro, route=route, steps=steps, state=state)
    if state.warning:
        plan.notes.append(state.warning)
    if state.route is not None and state.route != route:
        plan.notes.append(f"an earlier run used route {state.route}; its steps after `docker` are verified again")
        for sid in ("toolkit", "engine", "register", "reload", "verify"):
            state.steps.pop(sid, None)
    if not root.is_live_root:
        plan.notes.append(
            f"--root is {root.root}: file edits go under it; commands (package managers, reloads) are not run"
        )
    for s in steps:
        recorded = state.state_of(s.id)
        if recorded in ("done", "failed", "skipped"):
            s.state, s.detail = recorded, state.detail_of(s.id)
        s.replan()
    return plan


# -- running -------------------------------------------------------------------------------------------------


def run_step(
    step: InstallStep, on_output: OutputCallback | None = None, *, confirm: ConfirmCallback | None = None
) -> StepResult:
    """Run one step: verify (done already?), plan anew, run its commands/edits with live output, verify."""
    out = on_output or (lambda _line: None)
    before = step.verify()
    if before.ok is True:
        step.state, step.detail = "done", f"already in place: {before.detail}"
        return StepResult(step_id=step.id, state="done", detail=step.detail)
    if step.manual:
        for line in step.instructions:
            out(f"  {line}")
        step.state = "failed"
        step.detail = f"{before.detail}. Do the steps above, then run `gpudoctor install` again: it resumes here."
        return StepResult(step_id=step.id, state="failed", detail=step.detail)
    step.replan()
    if step.plan is None:
        step.state, step.detail = "failed", step.plan_error or "cannot be planned"
        return StepResult(step_id=step.id, state="failed", detail=step.detail)
    ctx = step.fresh_ctx(confirm)
    applier = step.applier or (lambda c, p, o: apply_plan(c, p, o))
    result = applier(ctx, step.plan, out)
    if not result.ok:
        step.state, step.detail = "failed", result.error or "failed"
        return StepResult(step_id=step.id, state="failed", detail=step.detail, apply=result)
    after = step.verify()
    if after.ok is True:
        step.state, step.detail = "done", after.detail
    elif after.ok is None:
        step.state, step.detail = "skipped", after.detail
    else:
        skipped = [s for s in result.skipped if "live action" in s]
        hint = " (its commands were not run: --root is not /; run them on that host)" if skipped else ""
        step.state, step.detail = "failed", after.detail + hint
    return StepResult(step_id=step.id, state=step.state, detail=step.detail, apply=result)


@dataclass(slots=True, kw_only=True)
class InstallOutcome:
    ok: bool
    results: list[StepResult]
    failed: InstallStep | None = None
    state_error: str | None = None


def run_install(
    plan: InstallPlan,
    on_output: OutputCallback | None = None,
    *,
    confirm: ConfirmCallback | None = None,
    on_step: Callable[[InstallStep], None] | None = None,
    save: bool = True,
) -> InstallOutcome:
    """Run the steps in order, resuming after the ones recorded done (if they still verify); stop at the
    first failure. The state file is written after every step."""
    results: list[StepResult] = []
    root = plan.steps[0].ctx.facts.root if plan.steps else None
    plan.state.route = plan.route
    plan.state.distro = plan.distro.describe()
    state_error = None
    for step in plan.steps:
        if on_step is not None:
            on_step(step)
        if plan.state.state_of(step.id) in ("done", "skipped") and step.verify().ok is not False:
            step.state = plan.state.state_of(step.id)
            step.detail = f"done in an earlier run: {plan.state.detail_of(step.id)}".rstrip(": ")
            results.append(StepResult(step_id=step.id, state=step.state, detail=step.detail))
            continue
        result = run_step(step, on_output, confirm=confirm)
        results.append(result)
        plan.state.mark(step.id, result.state, result.detail)
        if save and root is not None:
            try:
                save_state(root, plan.state, plan.state_path)
            except OSError as exc:
                state_error = f"cannot write {plan.state_path}: {exc.strerror}; a rerun starts from the beginning"
        if result.state == "failed":
            return InstallOutcome(ok=False, results=results, failed=step, state_error=state_error)
    return InstallOutcome(ok=True, results=results, state_error=state_error)
