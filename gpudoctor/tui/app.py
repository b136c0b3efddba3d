"""The interactive session (``gpudoctor`` on a terminal, ``gpudoctor --demo``): a Textual app.

Threading contract: checks, fix plans, applies and install steps run in thread workers, never on the UI
thread. Workers talk to the UI only through messages (:mod:`gpudoctor.tui.messages`) or
``call_from_thread``. Every run has an id; a full re-run makes the results of older runs stale, and their
late messages are dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from gpudoctor.checks.base import CheckOptions, CheckResult, Status
from gpudoctor.report.model import EXIT_INTERRUPTED, EXIT_USAGE, Report
from gpudoctor.tui.messages import CheckFinished, CheckStarted, HostKnown, RunFailed, RunFinished
from gpudoctor.tui.screens.main import MainScreen
from gpudoctor.tui.session import DoctorSession
from gpudoctor.tui.style import set_monochrome

if TYPE_CHECKING:
    from gpudoctor.fixes.base import Fix
    from gpudoctor.tui.pull import MissingImage

PROBLEMS = (Status.FAIL, Status.ERROR, Status.WARN)
PARITY = "parity.nvidia_smi"


class GpuDoctorApp(App[int]):
    """gpudoctor's TUI. `session` says which host and how; the app holds the latest results."""

    TITLE = "gpudoctor"
    CSS = """
    Screen { background: $background; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "rerun", "Re-run", id="rerun", tooltip="Run every check again"),
        Binding("f", "fix", "Fix", id="fix", tooltip="Preview and apply the fix for the selected problem"),
        Binding("i", "install", "Install", id="install", tooltip="Guided install of the missing parts"),
        Binding("p", "pull", "Pull", id="pull-image",
                tooltip="Pull the image parity.nvidia_smi is missing (asks first), then re-run it"),
        Binding("e", "export", "Export", id="export", tooltip="Write the report as JSON or Markdown"),
        Binding("v", "verbose", "Verbose", id="verbose", tooltip="Show evidence and timing for every check"),
        Binding("n", "next_problem", "Next", id="next-problem", tooltip="Jump to the next problem"),
        Binding("question_mark", "help", "Help", id="help", key_display="?", tooltip="Keys and legend"),
        Binding("q", "quit", "Quit", id="quit", tooltip="Leave gpudoctor"),
        Binding("f8", "screenshot", "Screenshot", id="screenshot", show=False),
    ]

    # Actions that only make sense on the main screen (other screens have their own keys).
    MAIN_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"rerun", "fix", "install", "pull", "export", "verbose", "next_problem", "help"}
    )

    verbose: reactive[bool] = reactive(False)

    def __init__(self, *, session: DoctorSession, verbose: bool = False, fail_on: str = "fail") -> None:
        super().__init__()
        set_monochrome(self.no_color)
        self.session = session
        self.fail_on = fail_on
        self.results: dict[str, CheckResult] = {}
        self.running: dict[str, float] = {}
        self.report: Report | None = None
        self.tick_count = 0
        self.runs_finished = 0
        self._run_counter = 0
        self._oldest_live_run = 0
        self._active_runs: set[int] = set()
        self._spinner: Timer | None = None
        self._first_full_run_done = False
        self.set_reactive(GpuDoctorApp.verbose, verbose)
        self._specs = [session.specs[cid] for cid in session.reported_ids()]
        self.main_screen: MainScreen

    # -- lifecycle ----------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.session.demo:
            self.sub_title = f"demo: {self.session.demo}"
        self.main_screen = MainScreen(specs=self._specs, demo=self.session.demo)
        self.push_screen(self.main_screen)
        self.start_run()

    @property
    def busy(self) -> bool:
        """True while any run is still going."""
        return bool(self._active_runs)

    # -- runs ---------------------------------------------------------------------------------------------

    def start_run(self, ids: Iterable[str] | None = None, *, pull: bool = False) -> Worker[Report | None]:
        """Run all checks (`ids` None) or re-run `ids` in a thread worker; results stream in as messages.
        `pull` lets parity.nvidia_smi pull its missing image: only after the person confirmed it."""
        self._run_counter += 1
        run_id = self._run_counter
        id_tuple = None if ids is None else tuple(ids)
        if id_tuple is None:
            # A full run supersedes everything before it.
            self._oldest_live_run = run_id
            self.running.clear()
        self._active_runs.add(run_id)
        if self._spinner is None:
            self._spinner = self.set_interval(0.2, self._tick)
        return self._run_worker(run_id, id_tuple, pull)

    @work(thread=True, exit_on_error=False, group="checks", description="running checks")
    def _run_worker(self, run_id: int, ids: tuple[str, ...] | None, pull: bool = False) -> Report | None:
        """Returns the report, or None when the run could not happen (RunFailed says why)."""
        # The header is a nicety; if it cannot be read the checks say what is wrong with the host.
        with contextlib.suppress(Exception):
            self.post_message(HostKnown(host=self.session.host_summary(), run_id=run_id))

        def on_event(check_id: str, result: CheckResult | None) -> None:
            if result is None:
                self.post_message(CheckStarted(check_id=check_id, run_id=run_id))
            else:
                self.post_message(CheckFinished(result=result, run_id=run_id))

        try:
            report = self.session.run(ids=ids, on_event=on_event, pull=pull)
        except Exception as exc:  # the runner keeps check crashes in; this is anything around it
            self.post_message(RunFailed(error=f"{type(exc).__name__}: {exc}", run_id=run_id))
            return None
        self.post_message(RunFinished(report=report, run_id=run_id, ids=ids))
        return report

    def _live(self, run_id: int) -> bool:
        return run_id >= self._oldest_live_run

    @on(HostKnown)
    def _host_known(self, message: HostKnown) -> None:
        if self._live(message.run_id):
            self.main_screen.set_host(message.host)

    @on(CheckStarted)
    def _check_started(self, message: CheckStarted) -> None:
        if self._live(message.run_id):
            self.running[message.check_id] = time.monotonic()
            self.main_screen.paint_check(message.check_id)

    @on(CheckFinished)
    def _check_finished(self, message: CheckFinished) -> None:
        if not self._live(message.run_id):
            return
        self.running.pop(message.result.id, None)
        self.results[message.result.id] = message.result
        self.main_screen.paint_check(message.result.id)

    @on(RunFinished)
    def _run_finished(self, message: RunFinished) -> None:
        self._end_run(message.run_id)
        if not self._live(message.run_id):
            return
        if message.ids is None:
            self.report = message.report
            self.main_screen.set_host(message.report.host)
        else:
            self.report = self._merged_report(message.report)
        self.runs_finished += 1
        self.main_screen.paint()
        if message.ids is None and not self._first_full_run_done:
            self._first_full_run_done = True
            # Land on the first problem; on a clean host, on the first check.
            target = self.main_screen.first_problem()
            if target is None and self._specs:
                target = self._specs[0].id
            if target is not None:
                self.main_screen.select_check(target)
        self.refresh_bindings()

    @on(RunFailed)
    def _run_failed(self, message: RunFailed) -> None:
        self._end_run(message.run_id)
        self.running.clear()
        self.main_screen.paint()
        self.notify(f"the checks could not run: {message.error}", title="gpudoctor", severity="error", timeout=10)

    def _end_run(self, run_id: int) -> None:
        self._active_runs.discard(run_id)
        if not self._active_runs and self._spinner is not None:
            self._spinner.stop()
            self._spinner = None

    def _merged_report(self, partial: Report) -> Report:
        """The last full report with a partial re-run's results put in place."""
        base = self.report or partial
        fresh = partial.by_id()
        return Report(
            checks=[fresh.get(r.id, r) for r in base.checks],
            host=partial.host,
            generated_at=partial.generated_at,
            duration_ms=partial.duration_ms,
            tool_version=base.tool_version,
        )

    def _tick(self) -> None:
        self.tick_count += 1
        if self.running:
            self.main_screen.tick()

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        # exit_on_error=False: a crashed worker becomes a notification, never a dead app.
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            err = event.worker.error
            self.notify(f"{event.worker.description}: {type(err).__name__}: {err}", severity="error", timeout=10)

    # -- state helpers for screens ------------------------------------------------------------------------

    def fixes_for(self, result: CheckResult) -> list[Fix]:
        """Fixes for a result; [] when the fix registry cannot be loaded in this build."""
        try:
            return self.session.fixes_for(result)
        except ImportError:
            return []

    def missing_image(self) -> MissingImage | None:
        """The image parity.nvidia_smi was skipped for because the daemon lacks it, else None."""
        result = self.results.get(PARITY)
        if result is None or result.status is not Status.SKIP:
            return None  # the common case, without loading the live checks' modules
        from gpudoctor.tui.pull import missing_image

        return missing_image(result)

    def problems(self) -> list[CheckResult]:
        """Results that did not pass, in display order."""
        return [
            self.results[cid]
            for cid in self.session.reported_ids()
            if cid in self.results and self.results[cid].status in PROBLEMS
        ]

    def watch_verbose(self, verbose: bool) -> None:
        if getattr(self, "main_screen", None) is not None and self.main_screen.is_mounted:
            self.main_screen.paint()

    # -- actions ------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "quit" and getattr(self.screen, "busy", False):
            return None  # a fix or an install step is running: let it finish first
        if action == "pull" and self.missing_image() is None:
            return False  # shown only while parity.nvidia_smi waits for a missing image
        return action not in self.MAIN_ONLY or isinstance(self.screen, MainScreen)

    def action_rerun(self) -> None:
        if self.busy:
            self.notify("checks are still running", timeout=3)
            return
        self.start_run()

    def action_verbose(self) -> None:
        self.verbose = not self.verbose
        self.notify("verbose: evidence and timing for every check" if self.verbose else "verbose off", timeout=2)

    def action_next_problem(self) -> None:
        target = self.main_screen.next_problem()
        if target is None:
            self.notify("no problems found" if self.runs_finished else "checks are still running", timeout=3)
            return
        self.main_screen.select_check(target)

    def action_fix(self, check_id: str | None = None, fix_id: str | None = None) -> None:
        """Open the fix flow for `check_id` (default: the selected problem, else the first fixable one)."""
        from gpudoctor.tui.screens.fix import FixChooser, FixPreviewScreen

        if self._refuse_on_replay("fix"):
            return
        target = self._fix_target(check_id)
        if target is None:
            return
        result, fixes = target
        if fix_id is not None:
            fixes = [f for f in fixes if f.id == fix_id] or fixes
        if len(fixes) == 1:
            self.push_screen(FixPreviewScreen(fix=fixes[0], result=result))
            return

        def chosen(fix_id: str | None) -> None:
            fix = next((f for f in fixes if f.id == fix_id), None)
            if fix is not None:
                self.push_screen(FixPreviewScreen(fix=fix, result=result))

        self.push_screen(FixChooser(result=result, fixes=fixes), chosen)

    def _fix_target(self, check_id: str | None) -> tuple[CheckResult, list[Fix]] | None:
        wanted = check_id or self.main_screen.selected_id
        if wanted is not None:
            result = self.results.get(wanted)
            if result is None:
                self.notify(f"{wanted} has not finished yet", timeout=3)
                return None
            if result.status in PROBLEMS:
                fixes = self.fixes_for(result)
                if fixes:
                    return result, fixes
                if check_id is not None:
                    self.notify(f"no automatic fix for {wanted}; see 'What to do' in the details", timeout=5)
                    return None
        for result in self.problems():
            fixes = self.fixes_for(result)
            if fixes:
                if wanted is not None and wanted != result.id:
                    self.notify(f"{wanted} has no automatic fix; fixing {result.id} instead", timeout=4)
                self.main_screen.select_check(result.id)
                return result, fixes
        if not self.runs_finished:
            self.notify("checks are still running", timeout=3)
        elif self.problems():
            self.notify("no automatic fix for these problems; see 'What to do' in the details", timeout=5)
        else:
            self.notify("nothing to fix: no problems found", timeout=3)
        return None

    def _refuse_on_replay(self, what: str) -> bool:
        """A snapshot replay shows another machine: changing the extracted copy would fix nothing."""
        if not self.session.facts.replay:
            return False
        self.notify(f"this is a replay of a snapshot: {what} on the machine it came from "
                    f"(`sudo gpudoctor {what}` there)", title="gpudoctor", severity="warning", timeout=6)
        return True

    def action_install(self) -> None:
        from gpudoctor.tui.screens.install import InstallWizardScreen

        if self._refuse_on_replay("install"):
            return

        def closed(changed: bool | None) -> None:
            if changed and not self.busy:
                self.start_run()

        self.push_screen(InstallWizardScreen(), closed)

    def action_pull(self) -> None:
        """Offer to pull the image parity.nvidia_smi is missing. Nothing is pulled without a yes."""
        from gpudoctor.tui.pull import pull_question
        from gpudoctor.tui.screens.confirm import ConfirmModal

        missing = self.missing_image()
        if self.session.demo is not None:
            self.notify("this is a demo host: there is no Docker daemon to pull an image into",
                        title="gpudoctor", severity="warning", timeout=6)
            return
        if self.session.facts.replay:
            command = missing.command if missing else f"docker pull {self.session.options.image}"
            self.notify(f"this is a replay of a snapshot: pull the image on the machine it came from "
                        f"(`{command}` there)", title="gpudoctor", severity="warning", timeout=6)
            return
        if missing is None:
            self.notify(f"{PARITY} is not waiting for a missing image", timeout=3)
            return
        if self.busy:
            self.notify("checks are still running", timeout=3)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._pull_worker(missing)

        self.push_screen(ConfirmModal(pull_question(missing), yes="Pull", no="Cancel"), answered)

    @work(exit_on_error=False, group="pull", description="pulling the image")
    async def _pull_worker(self, missing: MissingImage) -> None:
        """Re-run parity.nvidia_smi (and its dependents) with pull on, then say how it went."""
        if self.busy:  # a run started while the question was open
            self.notify("checks are still running; pull when they have finished", timeout=4)
            return
        self.notify(f"pulling {missing.image} into the daemon at {missing.daemon}", timeout=5)
        report = await self.start_run(self.session.affected([PARITY]), pull=True).wait()
        result = report.by_id().get(PARITY) if report is not None else None
        if result is None:
            return  # RunFailed has said why
        # A skip or an error now means the image still could not be used (the pull failed, most likely).
        severity: SeverityLevel = (
            "information" if result.status is Status.PASS
            else "error" if result.status in (Status.SKIP, Status.ERROR) else "warning"
        )
        self.notify(f"{PARITY}: {result.status.value}: {result.summary}", title=f"pull {missing.image}",
                    severity=severity, timeout=10)

    def action_export(self) -> None:
        from gpudoctor.tui.screens.export import ExportScreen

        if self.report is None:
            self.notify("the checks have not finished yet; export when they have", timeout=3)
            return
        self.push_screen(ExportScreen(report=self.report))

    def action_help(self) -> None:
        from gpudoctor.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        path = self.save_screenshot(filename=filename, path=path or os.getcwd())
        self.notify(f"screenshot saved to {path}", timeout=4)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen):
            return
        yield SystemCommand("Re-run all checks", "Run every check again (r)", self.action_rerun)
        yield SystemCommand("Fix the selected problem", "Preview, confirm and apply its fix (f)", self.action_fix)
        yield SystemCommand("Install wizard", "Guided install of the missing parts (i)", self.action_install)
        yield SystemCommand("Export the report", "Write it as JSON or Markdown (e)", self.action_export)
        yield SystemCommand("Toggle verbose", "Evidence and timing for every check (v)", self.action_verbose)
        yield SystemCommand("Next problem", "Jump to the next check that did not pass (n)", self.action_next_problem)
        yield SystemCommand("Help", "Keys and legend (?)", self.action_help)
        for result in self.problems():
            for fix in self.fixes_for(result):
                yield SystemCommand(
                    f"Fix {result.id}: {fix.title}",
                    f"{fix.id} — preview, confirm, apply",
                    lambda cid=result.id, fid=fix.id: self.action_fix(cid, fid),
                )
        missing = self.missing_image()
        if missing is not None:
            yield SystemCommand(f"Pull {missing.image}", f"{PARITY} needs it: asks first, then re-runs it (p)",
                                self.action_pull)

    # -- exit ---------------------------------------------------------------------------------------------

    def exit_code(self) -> int:
        """The report's exit code (design.md), or 130 when the person left before the checks finished."""
        if self.report is None:
            return EXIT_INTERRUPTED
        return self.report.exit_code(fail_on=self.fail_on)


def _session_options(args: argparse.Namespace, *, offline: bool) -> CheckOptions:
    options = CheckOptions(
        offline=offline,
        docker_host=getattr(args, "docker_host", None),
        pull=bool(getattr(args, "pull", False)),
        timeout=float(getattr(args, "timeout", 10.0)),
    )
    if getattr(args, "image", None):
        options.image = args.image
    return options


def _split(values: Iterable[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def run_tui(args: argparse.Namespace) -> int:
    """Run the TUI for the parsed CLI `args` (a host, or ``--demo SCENARIO``); return the exit code."""
    from gpudoctor.doctor import UsageError
    from gpudoctor.host.open import HostOpenError, open_host

    if getattr(args, "no_color", False):
        os.environ["NO_COLOR"] = "1"
    only, skip = _split(getattr(args, "only", [])), _split(getattr(args, "skip", []))
    with ExitStack() as stack:
        try:
            if getattr(args, "demo", None) is not None:
                from gpudoctor.demo import DemoError, describe_scenarios, open_demo

                if args.demo in ("list", "help"):
                    print(f"gpudoctor --demo [SCENARIO], where SCENARIO is one of:\n{describe_scenarios()}")
                    return 0

                try:
                    demo = stack.enter_context(open_demo(args.demo))
                except DemoError as exc:
                    print(f"gpudoctor: {exc}", file=sys.stderr)
                    return EXIT_USAGE
                session = DoctorSession(
                    facts=demo.facts, options=_session_options(args, offline=True), only=only, skip=skip,
                    demo=demo.name, root_arg=str(demo.root),
                )
            else:
                facts = stack.enter_context(open_host(args.root, offline=args.offline, docker_host=args.docker_host))
                session = DoctorSession(
                    facts=facts, options=_session_options(args, offline=facts.offline), only=only, skip=skip,
                    root_arg=args.root,
                )
            session.reported_ids()  # an unknown --only/--skip is a usage error before the screen opens
        except KeyError as exc:
            print(f"gpudoctor: unknown check id or group: {exc.args[0]} (see --list-checks)", file=sys.stderr)
            return EXIT_USAGE
        except (UsageError, HostOpenError) as exc:
            print(f"gpudoctor: {exc}", file=sys.stderr)
            return EXIT_USAGE
        app = GpuDoctorApp(session=session, verbose=bool(getattr(args, "verbose", False)),
                           fail_on=getattr(args, "fail_on", "fail"))
        app.run()
        return app.exit_code()
