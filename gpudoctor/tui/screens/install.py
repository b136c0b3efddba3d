"""The install wizard: the install plan's steps with their states, the current step's commands and live
output, and continue / skip / abort.

It drives :mod:`gpudoctor.install.plan` exactly as ``gpudoctor install`` does: the plan is built and
surveyed (steps already in place become done) in a worker; `c` runs the current step with
:func:`~gpudoctor.install.plan.run_step` in a worker, streaming its output, and records the outcome in the
install state file so that ``gpudoctor install`` resumes where the wizard stopped.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static
from textual.worker import Worker, WorkerState

from gpudoctor.tui.messages import OutputLine
from gpudoctor.tui.screens.confirm import ConfirmModal
from gpudoctor.tui.screens.fix import items_renderable
from gpudoctor.tui.style import SPINNER

if TYPE_CHECKING:
    from gpudoctor.install.plan import InstallPlan, InstallStep, StepResult
    from gpudoctor.tui.app import GpuDoctorApp

STEP_MARKS = {"pending": "○", "done": "✓", "failed": "✗", "skipped": "–", "running": "◐"}
STEP_STYLES = {"pending": "", "done": "green", "failed": "bold red", "skipped": "dim", "running": "bold cyan"}


def steps_renderable(plan: InstallPlan, current: InstallStep | None, *, running: bool, tick: int = 0) -> Text:
    """The step list: a mark per state, the current step arrowed."""
    text = Text()
    for number, step in enumerate(plan.steps, start=1):
        is_current = step is current
        state = "running" if running and is_current else step.state
        mark = SPINNER[tick % len(SPINNER)] if state == "running" else STEP_MARKS.get(state, "?")
        text.append("▶ " if is_current else "  ", style="bold")
        text.append(mark, style=STEP_STYLES.get(state, ""))
        text.append(f" {number}. {step.id}", style="bold" if is_current else "")
        text.append(f"  {state}\n", style="dim")
    return text


def step_renderable(
    step: InstallStep,
    *,
    number: int,
    total: int,
    live_root: bool,
    shown: Callable[[str], str] = str,
    root_command: str | None = None,
) -> RenderableType:
    """The current step: what it is, what it would run, how it is verified, and how it last went.
    `root_command` is set when the step needs root that gpudoctor lacks: the command to run instead."""
    parts: list[RenderableType] = [Text(f"Step {number}/{total}: {step.title}", style="bold")]
    if root_command is not None:
        parts += [Text(f"This step needs root, and gpudoctor runs as uid {os.geteuid()}. Run it from a root "
                       "shell (it resumes here):", style="bold red"), Text(f"  {root_command}", style="bold")]
    if step.detail:
        style = {"done": "green", "failed": "red"}.get(step.state, "dim")
        parts.append(Text(f"{step.state}: {shown(step.detail)}", style=style))
    parts.append(Text(f"verified by: {step.verify_text}", style="dim"))
    if step.manual:
        parts += [Text(""), Text("gpudoctor does not install drivers. Do this yourself, then reboot:",
                                 style="bold underline")]
        parts += [Text(f"  {line}") for line in step.instructions]
    elif step.plan_error is not None:
        parts += [Text(""), Text(f"Planned when it runs: {shown(step.plan_error)}", style="italic")]
    elif step.plan is not None:
        items = step.plan.ordered()
        if not items:
            parts += [Text(""), Text("Nothing to run: it only verifies.", style="italic")]
        parts += items_renderable(items, live_root=live_root)
        parts += [Text(f"  • {shown(note)}", style="dim") for note in step.plan.notes]
    return Group(*parts)


class InstallWizardScreen(Screen[bool]):
    """Guided install; dismisses with True when it changed anything (so the checks run again)."""

    DEFAULT_CSS = """
    InstallWizardScreen #wizard-title { height: auto; padding: 0 1; background: $panel; }
    InstallWizardScreen #wizard-body { height: 1fr; }
    InstallWizardScreen #wizard-steps { width: 30; border: round $primary-muted; padding: 0 1; height: 1fr; }
    InstallWizardScreen #wizard-step { width: 1fr; border: round $primary; padding: 0 1; height: 1fr; }
    InstallWizardScreen #wizard-log { height: 7; border: round $primary-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "continue", "Continue", id="wizard-continue", tooltip="Run the current step"),
        Binding("s", "skip", "Skip", id="wizard-skip", tooltip="Leave this step for later"),
        Binding("o", "route", "Other route", id="wizard-route",
                tooltip="Switch between NVIDIA's toolkit and gpudoctor's own runtime"),
        Binding("a", "abort", "Abort", id="wizard-abort", tooltip="Close the wizard"),
        Binding("escape", "abort", "Abort", id="wizard-abort-esc", show=False),
    ]

    def __init__(self, *, route: str = "nvidia") -> None:
        super().__init__(id="install-wizard")
        self.route = route
        self.plan: InstallPlan | None = None
        self.error: str | None = None
        self.current: InstallStep | None = None
        self.running = False
        self.changed = False
        self._tick = 0
        self._pending: list[Future[bool]] = []

    @property
    def busy(self) -> bool:
        """True while a step runs (quitting waits for it)."""
        return self.running

    @property
    def gd_app(self) -> GpuDoctorApp:
        from gpudoctor.tui.app import GpuDoctorApp

        assert isinstance(self.app, GpuDoctorApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Static(Text("Install wizard: reading the host…", style="bold"), id="wizard-title")
        with Horizontal(id="wizard-body"):
            yield Static("", id="wizard-steps")
            with VerticalScroll(id="wizard-step"):
                yield Static(Text("Building the install plan (nothing is changed)…", style="italic"),
                             id="wizard-step-body")
        yield RichLog(id="wizard-log", wrap=True, markup=False, highlight=False, min_width=20)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#wizard-steps", Static).border_title = "Steps"
        self.query_one("#wizard-step", VerticalScroll).border_title = "Current step"
        self.query_one("#wizard-log", RichLog).border_title = "Output"
        self.query_one("#wizard-step", VerticalScroll).focus()
        self.set_interval(0.2, self._spin)
        self._build_plan()

    def on_unmount(self) -> None:
        for fut in self._pending:
            if not fut.done():
                fut.set_result(False)

    # -- workers ----------------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="install-plan", description="building the install plan")
    def _build_plan(self) -> tuple[InstallPlan | None, str | None]:
        from gpudoctor.install.distro import UnsupportedDistro
        from gpudoctor.install.plan import build_install_plan

        session = self.gd_app.session
        try:
            plan = build_install_plan(session.facts.fresh(), self.route, options=session.options,
                                      confirm=self._ask_from_thread)
            plan.survey()
        except UnsupportedDistro as exc:
            return None, str(exc)
        except Exception as exc:  # a crash here is a bug; the wizard says so instead of dying
            return None, f"the install plan could not be built: {type(exc).__name__}: {exc}"
        return plan, None

    @work(thread=True, exclusive=True, group="install-step", description="running an install step")
    def _run_step(self, step: InstallStep) -> StepResult | None:
        from gpudoctor.install.plan import run_step
        from gpudoctor.install.state import save_state

        self.post_message(OutputLine(f"== {step.id}: {step.title}"))
        try:
            result = run_step(step, self._post_line, confirm=self._ask_from_thread)
        except Exception as exc:
            self.post_message(OutputLine(f"the step crashed: {type(exc).__name__}: {exc} (a gpudoctor bug)"))
            step.state, step.detail = "failed", f"crashed: {exc}"
            return None
        plan = self.plan
        if plan is not None:
            plan.state.route, plan.state.distro = plan.route, plan.distro.describe()
            plan.state.mark(step.id, result.state, result.detail)
            try:
                save_state(step.ctx.facts.root, plan.state, plan.state_path)
            except OSError as exc:
                self.post_message(OutputLine(f"cannot record the step in {plan.state_path}: {exc.strerror}"))
        return result

    def _post_line(self, line: str) -> None:
        self.post_message(OutputLine(line))

    def _ask_from_thread(self, question: str) -> bool:
        answer: Future[bool] = Future()
        self._pending.append(answer)

        def ask() -> None:
            self.app.push_screen(ConfirmModal(question), lambda yes: answer.set_result(bool(yes)))

        self.app.call_from_thread(ask)
        return answer.result()

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group not in ("install-plan", "install-step") or event.state is not WorkerState.SUCCESS:
            return
        event.stop()
        if event.worker.group == "install-plan":
            outcome: tuple[InstallPlan | None, str | None] | None = event.worker.result
            if outcome is None:
                return
            self.plan, self.error = outcome
            self.current = self.plan.resume_from if self.plan is not None else None
        else:
            self.running = False
            result: StepResult | None = event.worker.result
            if result is not None:
                self._log(f"== {result.step_id}: {result.state}: {result.detail}")
                if result.apply is not None and result.apply.changed:
                    self.changed = True
                if result.state in ("done", "skipped"):
                    self._advance()
        self._paint()
        self.refresh_bindings()

    # -- painting ---------------------------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        self.query_one("#wizard-log", RichLog).write(self.gd_app.session.shown(line))

    @on(OutputLine)
    def _output(self, message: OutputLine) -> None:
        self._log(message.line)

    def _spin(self) -> None:
        if self.running and self.plan is not None:
            self._tick += 1
            self.query_one("#wizard-steps", Static).update(
                steps_renderable(self.plan, self.current, running=True, tick=self._tick))

    def _paint(self) -> None:
        title = self.query_one("#wizard-title", Static)
        body = self.query_one("#wizard-step-body", Static)
        steps = self.query_one("#wizard-steps", Static)
        if self.plan is None:
            title.update(Text("Install wizard", style="bold"))
            body.update(Group(Text("No install plan for this host:", style="bold red"), Text(self.error or "")))
            steps.update("")
            return
        plan = self.plan
        head = Text(f"Install wizard: {plan.distro.describe()}, route {plan.route}", style="bold")
        for note in plan.notes:
            head.append(f"\n  note: {self.gd_app.session.shown(note)}", style="dim")
        title.update(head)
        steps.update(steps_renderable(plan, self.current, running=self.running, tick=self._tick))
        if self.current is None:
            body.update(Group(
                Text("✓ Every step is done or skipped.", style="bold green"),
                Text("Press a to close the wizard; the checks run again.", style="dim"),
            ))
            return
        number = plan.steps.index(self.current) + 1
        session = self.gd_app.session
        body.update(step_renderable(self.current, number=number, total=len(plan.steps),
                                    live_root=session.facts.root.is_live_root, shown=session.shown,
                                    root_command=self._root_command()))

    def _root_command(self) -> str | None:
        """`sudo gpudoctor install ...` when the current step needs root that gpudoctor lacks."""
        step = self.current
        session = self.gd_app.session
        if step is None or step.plan is None or not session.lacks_root(step.plan):
            return None
        argv = ["sudo", "gpudoctor", "install", "--route", self.route]
        if session.root_arg not in ("", "/"):
            argv += ["--root", session.root_arg]
        return session.shown(shlex.join(argv))

    def _advance(self) -> None:
        plan = self.plan
        if plan is None or self.current is None:
            return
        index = plan.steps.index(self.current)
        later = [s for s in plan.steps[index + 1:] if s.state not in ("done", "skipped")]
        self.current = later[0] if later else None

    # -- actions ----------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "continue":
            ready = self.current is not None and not self.running and self._root_command() is None
            return True if ready else None
        if action == "skip":
            return True if (self.current is not None and not self.running) else None
        if action == "route":
            return True if not self.running else None
        if action == "abort":
            return True if not self.running else None
        return True

    def action_continue(self) -> None:
        if self.current is None or self.running:
            return
        command = self._root_command()
        if command is not None:
            self.notify(f"this step needs root: run `{command}`", severity="warning", timeout=8)
            return
        self.running = True
        self._paint()
        self.refresh_bindings()
        self._run_step(self.current)

    def action_skip(self) -> None:
        if self.current is None or self.running:
            return
        self._log(f"== {self.current.id}: skipped (for now; `gpudoctor install` offers it again)")
        self.current.state = "skipped"
        self._advance()
        self._paint()
        self.refresh_bindings()

    def action_route(self) -> None:
        from gpudoctor.install.plan import ROUTES

        self.route = ROUTES[(ROUTES.index(self.route) + 1) % len(ROUTES)] if self.route in ROUTES else ROUTES[0]
        self.plan, self.current = None, None
        self.query_one("#wizard-step-body", Static).update(Text(f"Planning route {self.route}…", style="italic"))
        self._log(f"== route: {self.route}")
        self.refresh_bindings()
        self._build_plan()

    def action_abort(self) -> None:
        if self.running:
            self.notify("a step is running; wait for it to finish", timeout=3)
            return
        self.dismiss(self.changed)
