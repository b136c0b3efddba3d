"""The fix flow: choose a fix -> preview its plan -> confirm -> apply with live output -> re-run the checks.

Planning and applying run in thread workers. A guided step's question reaches the person through
:class:`~gpudoctor.tui.screens.confirm.ConfirmModal`, pushed from the worker thread with
``call_from_thread`` while the worker waits on a Future.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalGroup, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, OptionList, RichLog, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from gpudoctor.checks.base import CheckResult, Status
from gpudoctor.tui.messages import OutputLine
from gpudoctor.tui.screens.confirm import ConfirmModal
from gpudoctor.tui.style import MARKS, STYLES

if TYPE_CHECKING:
    from gpudoctor.fixes.base import ApplyResult, Fix, Plan, PlanItem
    from gpudoctor.report.model import Report
    from gpudoctor.tui.app import GpuDoctorApp
    from gpudoctor.tui.session import DoctorSession


def _gd_app(screen: Screen[Any]) -> GpuDoctorApp:
    from gpudoctor.tui.app import GpuDoctorApp

    app = screen.app
    assert isinstance(app, GpuDoctorApp)
    return app


def diff_text(diff: str) -> Text:
    """A unified diff with + lines green, - lines red and hunk headers cyan."""
    text = Text()
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        text.append("  " + line + "\n", style=style)
    return text


def root_line(plan: Plan, *, lacks_root: bool) -> Text:
    """Says whether the plan needs root, and whether gpudoctor has it."""
    if not plan.needs_root:
        return Text("Root: not needed")
    if lacks_root:
        return Text(f"Root: NEEDED, and gpudoctor runs as uid {os.geteuid()} (not root)", style="bold red")
    return Text("Root: needed (gpudoctor runs as root)")


def items_renderable(items: Sequence[PlanItem], *, live_root: bool) -> list[RenderableType]:
    """Plan steps in the order apply runs them: a diff per file, a shell line per command or node."""
    from gpudoctor.fixes.base import Command, FileEdit

    parts: list[RenderableType] = []
    for item in items:
        if isinstance(item, FileEdit):
            verb = "Create" if item.before is None else "Edit"
            parts += [Text(""), Text(f"{verb} {item.path}", style="bold underline")]
            if item.before is not None:
                parts.append(Text("  (the old file is kept as a timestamped backup)", style="dim"))
            parts.append(diff_text(item.diff))
        elif isinstance(item, Command):
            line = Text("  $ " + shlex.join(item.argv), style="bold")
            tags = []
            if item.live and not live_root:
                tags.append("skipped here: acts on the running system, and --root is not /")
            if item.confirm:
                tags.append("asks first")
            if item.needs_root:
                tags.append("needs root")
            if tags:
                line.append(f"  [{'; '.join(tags)}]", style="dim")
            parts += [line, Text(f"    {item.description}", style="dim")]
        else:
            parts.append(Text("  $ " + shlex.join(item.argv), style="bold"))
    return parts


def plan_renderable(
    fix: Fix,
    plan: Plan,
    *,
    result: CheckResult,
    lacks_root: bool,
    live_root: bool,
    fix_command: str,
    demo: bool,
    choice: str | None,
    shown: Callable[[str], str] = str,
) -> RenderableType:
    """What the preview shows: why, root, choices, the steps in order, notes."""
    parts: list[RenderableType] = []
    why = Text()
    why.append(MARKS[result.status] + " ", style=STYLES[result.status])
    why.append(f"{result.id}: ", style="bold")
    why.append(result.summary)
    parts += [why, Text(f"addresses: {', '.join(fix.addresses)}", style="dim")]
    parts.append(root_line(plan, lacks_root=lacks_root))
    if demo:
        parts.append(Text("Demo: the changes go to a temporary copy of the demo host.", style="italic"))
    choices = dict(plan.choices) or dict(fix.choices)
    if choices:
        parts += [Text(""), Text("Options (press c to switch)", style="bold underline")]
        for name, desc in choices.items():
            mark = "●" if name == choice else "○"
            parts.append(Text(f"  {mark} {name}: {desc}", style="bold" if name == choice else ""))
    if plan.guided:
        parts.append(Text("Guided fix: every step asks before it runs.", style="yellow"))
    if plan.empty:
        if choices and choice is None:
            parts += [Text(""), Text("Pick an option first (c).", style="yellow")]
        else:
            parts += [Text(""), Text("Nothing to do: this is already in place.", style="green")]
    parts += items_renderable(plan.ordered(), live_root=live_root)
    if plan.notes:
        parts += [Text(""), Text("Notes", style="bold underline")]
        parts += [Text(f"  • {shown(note)}") for note in plan.notes]
    if plan.reboot_required:
        parts.append(Text("A reboot is needed afterwards.", style="yellow"))
    if lacks_root and not plan.empty:
        parts += [Text(""), Text("This fix needs root. Run it from a root shell:", style="bold red"),
                  Text(f"  {shown(fix_command)}", style="bold")]
        if plan.commands or plan.actions:
            parts.append(Text("or run the commands above yourself with sudo.", style="dim"))
    return Group(*parts)


def apply_question(fix: Fix, plan: Plan, *, demo: bool) -> str:
    """The confirmation question: what applying will do, in one sentence."""
    what: list[str] = []
    if plan.edits:
        n = len(plan.edits)
        what.append(f"write {n} file{'s' if n != 1 else ''} (each old one is backed up first)")
    if plan.actions:
        what.append(f"create {len(plan.actions)} device node{'s' if len(plan.actions) != 1 else ''} or link(s)")
    if plan.commands:
        what.append(f"run {len(plan.commands)} command{'s' if len(plan.commands) != 1 else ''}")
    where = " in the demo's temporary copy" if demo else ""
    return f"Apply {fix.id}? It will {', '.join(what) or 'change nothing'}{where}."


class FixChooser(ModalScreen[str | None]):
    """Pick one of several fixes for a check; dismisses with its id (None: cancelled)."""

    DEFAULT_CSS = """
    FixChooser { align: center middle; }
    FixChooser > VerticalGroup { width: 70; max-width: 95%; border: round $primary; background: $surface;
                                 padding: 1 2; height: auto; }
    FixChooser OptionList { height: auto; max-height: 12; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="chooser-cancel")]

    def __init__(self, *, result: CheckResult, fixes: Sequence[Fix]) -> None:
        super().__init__()
        self._result = result
        self._fixes = list(fixes)

    def compose(self) -> ComposeResult:
        with VerticalGroup():
            yield Static(f"Fixes for {self._result.id}: pick one", markup=False)
            yield OptionList(*[Option(f"{f.id}: {f.title}", id=f.id) for f in self._fixes])

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class FixPreviewScreen(Screen[None]):
    """The plan of one fix: diffs, commands, root. `a`/Enter asks for confirmation, then applies."""

    DEFAULT_CSS = """
    FixPreviewScreen #fix-title { height: auto; padding: 0 1; background: $panel; text-style: bold; }
    FixPreviewScreen #plan { height: 1fr; border: round $primary; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "apply", "Apply", id="fix-apply"),
        Binding("enter", "apply", "Apply", id="fix-apply-enter", show=False),
        Binding("c", "next_choice", "Other option", id="fix-choice"),
        Binding("escape", "back", "Back", id="fix-back"),
    ]

    def __init__(self, *, fix: Fix, result: CheckResult) -> None:
        super().__init__(id="fix-preview")
        self.fix = fix
        self.result = result
        self.plan: Plan | None = None
        self.error: str | None = None
        self.choice: str | None = None

    @property
    def session(self) -> DoctorSession:
        return _gd_app(self).session

    def compose(self) -> ComposeResult:
        yield Static(f"Fix {self.fix.id}: {self.fix.title}", id="fix-title", markup=False)
        with VerticalScroll(id="plan"):
            yield Static(Text("Planning… (reading the host; nothing is changed)", style="italic"), id="plan-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#plan", VerticalScroll).border_title = "Preview"
        self.query_one("#plan", VerticalScroll).focus()
        self._plan_worker(self.choice)

    @work(thread=True, exclusive=True, group="plan", description="planning the fix")
    def _plan_worker(self, choice: str | None) -> tuple[Plan | None, str | None]:
        from gpudoctor.fixes.base import FixError

        try:
            return self.session.plan(self.fix, choice=choice), None
        except FixError as exc:
            return None, str(exc)
        except Exception as exc:  # a crashing plan must not take the session with it
            return None, f"planning crashed: {type(exc).__name__}: {exc} (a gpudoctor bug; please report it)"

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "plan" or event.state is not WorkerState.SUCCESS:
            return
        event.stop()
        outcome: tuple[Plan | None, str | None] | None = event.worker.result
        if outcome is None:
            return
        plan, error = outcome
        self.plan, self.error = plan, error
        self._paint()
        self.refresh_bindings()

    def _paint(self) -> None:
        body = self.query_one("#plan-body", Static)
        if self.error is not None:
            body.update(Group(
                Text("This fix cannot be planned here:", style="bold red"),
                Text(self.session.shown(self.error)),
                Text(""),
                Text("Nothing was changed. Press Escape to go back.", style="dim"),
            ))
            return
        if self.plan is None:
            return
        body.update(plan_renderable(
            self.fix, self.plan, result=self.result, lacks_root=self.session.lacks_root(self.plan),
            live_root=self.session.facts.root.is_live_root, fix_command=self.session.fix_command(self.fix.id),
            demo=self.session.demo is not None, choice=self.choice, shown=self.session.shown,
        ))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply":
            return True if self._ready() else None
        if action == "next_choice":
            return bool(self._choices())
        return True

    def _choices(self) -> list[str]:
        plan_choices = dict(self.plan.choices) if self.plan is not None else {}
        return list(plan_choices or self.fix.choices)

    def _ready(self) -> bool:
        return self.plan is not None and not self.plan.empty and not self.session.lacks_root(self.plan)

    def action_apply(self) -> None:
        plan = self.plan
        if plan is None:
            self.notify("still planning" if self.error is None else "this fix cannot be applied here", timeout=3)
            return
        if plan.empty:
            self.notify("nothing to do: already in place", timeout=3)
            return
        if self.session.lacks_root(plan):
            self.notify(f"this fix needs root: run `{self.session.fix_command(self.fix.id)}`",
                        severity="warning", timeout=8)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.switch_screen(FixApplyScreen(fix=self.fix, plan=plan, result=self.result,
                                                      choice=self.choice))

        self.app.push_screen(ConfirmModal(apply_question(self.fix, plan, demo=self.session.demo is not None),
                                          yes="Apply"), answered)

    def action_next_choice(self) -> None:
        names = self._choices()
        if not names:
            return
        self.choice = names[(names.index(self.choice) + 1) % len(names)] if self.choice in names else names[0]
        self.plan, self.error = None, None
        self.query_one("#plan-body", Static).update(Text(f"Planning with {self.choice}…", style="italic"))
        self.refresh_bindings()
        self._plan_worker(self.choice)

    def action_back(self) -> None:
        self.app.pop_screen()


class FixApplyScreen(Screen[None]):
    """Applies a confirmed plan, streaming its output, then re-runs the affected checks in place."""

    DEFAULT_CSS = """
    FixApplyScreen #apply-title { height: auto; padding: 0 1; background: $panel; text-style: bold; }
    FixApplyScreen #fix-log { height: 1fr; border: round $primary; }
    FixApplyScreen #apply-status { height: auto; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="apply-back"),
        Binding("enter", "back", "Back", id="apply-back-enter", show=False),
    ]

    def __init__(self, *, fix: Fix, plan: Plan, result: CheckResult, choice: str | None = None) -> None:
        super().__init__(id="fix-apply")
        self.fix = fix
        self.plan = plan
        self.result = result
        self.choice = choice
        self.done = False
        self.apply_result: ApplyResult | None = None
        self.verified: list[CheckResult] = []
        self._pending: list[Future[bool]] = []

    @property
    def session(self) -> DoctorSession:
        return _gd_app(self).session

    @property
    def busy(self) -> bool:
        """True until the fix has applied and its checks have run again (quitting waits for that)."""
        return not self.done

    def compose(self) -> ComposeResult:
        yield Static(f"Applying {self.fix.id}: {self.fix.title}", id="apply-title", markup=False)
        yield RichLog(id="fix-log", wrap=True, markup=False, highlight=False, min_width=20)
        yield Static(Text("applying…", style="italic"), id="apply-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#fix-log", RichLog).border_title = "Output"
        self._apply_worker()

    def on_unmount(self) -> None:
        for fut in self._pending:  # nobody will answer any more: a pending question is a no
            if not fut.done():
                fut.set_result(False)

    def _log(self, line: str) -> None:
        self.query_one("#fix-log", RichLog).write(self.session.shown(line))

    @on(OutputLine)
    def _output(self, message: OutputLine) -> None:
        self._log(message.line)

    def _post_line(self, line: str) -> None:
        self.post_message(OutputLine(line))

    def _ask_from_thread(self, question: str) -> bool:
        """ConfirmCallback for guided steps: ask on the UI thread, wait here for the answer."""
        answer: Future[bool] = Future()
        self._pending.append(answer)

        def ask() -> None:
            self.app.push_screen(ConfirmModal(question), lambda yes: answer.set_result(bool(yes)))

        self.app.call_from_thread(ask)
        return answer.result()

    @work(thread=True, exclusive=True, group="apply", description="applying the fix")
    def _apply_worker(self) -> ApplyResult | None:
        self.post_message(OutputLine(f"== {self.fix.id}: applying"))
        try:
            return self.session.apply(
                self.fix, self.plan, choice=self.choice,
                on_output=self._post_line,
                confirm=self._ask_from_thread,
            )
        except Exception as exc:  # apply reports its own failures; anything else is a bug, not a crash
            self.post_message(OutputLine(f"apply crashed: {type(exc).__name__}: {exc} (a gpudoctor bug)"))
            return None

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "apply" or event.state is not WorkerState.SUCCESS:
            return
        event.stop()
        self.apply_result = event.worker.result
        self._report_apply(self.apply_result)
        self._verify()

    def _report_apply(self, res: ApplyResult | None) -> None:
        if res is None:
            return
        self._log(f"== {res.fix_id}: {'done' if res.ok else 'FAILED'}")
        for path in res.changed:
            backup = res.backups.get(path)
            self._log(f"  changed {path}" + (f" (backup {backup})" if backup else ""))
        for msg in res.messages:
            self._log(f"  {msg}")
        for skipped in res.skipped:
            self._log(f"  skipped: {skipped}")
        if res.reboot_required and res.ok:
            self._log("  reboot the machine to finish this fix")
        if res.error:
            self._log(f"  error: {res.error}")

    @work(exclusive=True, group="verify", description="re-running the checks")
    async def _verify(self) -> None:
        status = self.query_one("#apply-status", Static)
        ids = self.session.affected(self.fix.addresses)
        if ids:
            status.update(Text(f"re-running {len(ids)} checks…", style="italic"))
            self._log(f"== re-running {', '.join(ids)}")
            report: Report | None
            try:
                report = await _gd_app(self).start_run(ids).wait()
            except Exception as exc:
                self._log(f"  the checks could not run again: {exc}")
                report = None
            if report is None:
                self._log("  the checks could not run again (the notification says why); press r on the main screen")
            else:
                self.verified = list(report.checks)
                for res in report.checks:
                    self._log(f"  {MARKS[res.status]} {res.id}: {res.summary}")
        self.done = True
        applied = self.apply_result
        outcome = "applied" if applied is not None and applied.ok else "did not complete"
        self.query_one("#apply-title", Static).update(f"{self.fix.id} {outcome}: {self.fix.title}")
        status.update(self._verdict())
        self.refresh_bindings()

    def _verdict(self) -> Text:
        res = self.apply_result
        still = [r for r in self.verified if r.id in self.fix.addresses and r.status in (Status.FAIL, Status.ERROR)]
        if res is None or not res.ok:
            return Text("✗ The fix did not complete (see the log). Press Enter to go back.", style="bold red")
        if still:
            return Text(f"! Applied, but {', '.join(r.id for r in still)} still fails. Press Enter to go back.",
                        style="bold yellow")
        return Text("✓ Fixed: the checks it addresses no longer fail. Press Enter to go back.", style="bold green")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":
            return True if self.done else None
        return True

    def action_back(self) -> None:
        if not self.done:
            self.notify("the fix is still running", timeout=2)
            return
        self.app.pop_screen()
