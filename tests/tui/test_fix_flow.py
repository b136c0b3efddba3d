"""The fix flow with Pilot against demo hosts (a fake root in a temporary directory): preview, confirm,
apply with streamed output, the checks re-run in place; cancelling changes nothing; a plan that needs
root without having it shows the command instead; a guided step's question reaches the person.

`test_keyboard_only_from_broken_to_fixed` is the issue's acceptance test: only key presses, from the
broken demo host to one where no check fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import RichLog

from gpudoctor.checks.base import CheckResult, Status
from gpudoctor.demo import DemoHost, open_demo
from gpudoctor.fixes.base import FileEdit, Fix, FixContext, Plan
from gpudoctor.report.model import EXIT_OK
from gpudoctor.tui.app import GpuDoctorApp
from gpudoctor.tui.screens.confirm import ConfirmModal
from gpudoctor.tui.screens.fix import FixApplyScreen, FixPreviewScreen
from gpudoctor.tui.screens.main import MainScreen
from gpudoctor.tui.session import DoctorSession
from gpudoctor.tui.widgets.check_tree import CheckTree
from gpudoctor.tui.widgets.stack import LayerBar
from tests.tui.helpers import demo_app, run, session_for, settle, static_text, wait_for

TOOLKIT_CONFIG = "etc/nvidia-container-runtime/config.toml"
DAEMON_JSON = "etc/docker/daemon.json"


@pytest.fixture(autouse=True)
def _colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)


async def _fix_selected(pilot: Pilot[Any], app: GpuDoctorApp) -> list[str]:
    """f, wait for the plan, a, y, wait for apply + re-check, Enter. Returns the apply log lines."""
    await pilot.press("f")
    await wait_for(pilot, lambda: isinstance(app.screen, FixPreviewScreen) and app.screen.plan is not None,
                   "the fix preview with its plan")
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
    await pilot.press("y")
    await wait_for(pilot, lambda: isinstance(app.screen, FixApplyScreen) and app.screen.done,
                   "the fix applied and its checks re-run")
    screen = app.screen
    assert isinstance(screen, FixApplyScreen)
    lines = [line.text for line in screen.query_one("#fix-log", RichLog).lines]
    verdict = static_text(app, "#apply-status")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "back on the main screen")
    return lines + [verdict]


def test_keyboard_only_from_broken_to_fixed() -> None:
    with demo_app("broken") as (app, demo):
        before = {p: (demo.root / p).read_text() for p in (TOOLKIT_CONFIG, DAEMON_JSON)}

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                assert {r.id for r in app.problems()} == {"toolkit.config", "runtime.docker_config"}

                first = await _fix_selected(pilot, app)
                assert any("wrote /etc/nvidia-container-runtime/config.toml" in line for line in first)
                assert any("✓ toolkit.config:" in line for line in first)
                assert "Fixed" in first[-1]
                await settle(pilot, runs=2)
                # Updated in place: the toolkit layer is no longer the first broken one.
                assert app.results["toolkit.config"].status is Status.PASS
                main = app.screen
                assert not main.query_one("#layer-toolkit", LayerBar).has_class("-fail")
                assert main.query_one("#layer-runtime", LayerBar).has_class("-first")

                # `f` on a check that passes now goes to the next fixable problem.
                second = await _fix_selected(pilot, app)
                assert any("wrote /etc/docker/daemon.json" in line for line in second)
                await settle(pilot, runs=3)
                assert app.problems() == []
                assert "no broken layer" in static_text(app, "#host-header")
                await pilot.press("q")

        run(body)
        assert app.exit_code() == EXIT_OK
        toolkit = (demo.root / TOOLKIT_CONFIG).read_text()
        assert 'ldconfig = "@/sbin/ldconfig"' in toolkit
        assert toolkit.replace('"@/sbin/ldconfig"', '"@/sbin/ldconfig.real"') == before[TOOLKIT_CONFIG]
        daemon = json.loads((demo.root / DAEMON_JSON).read_text())
        assert daemon["runtimes"]["nvidia"]["path"] == "/usr/bin/nvidia-container-runtime"
        assert daemon["default-runtime"] == "nvidia" and daemon["log-driver"] == "json-file"
        backups = sorted((demo.root / "var/backups/gpudoctor").rglob("*.*Z"))
        assert {b.read_text() for b in backups} == set(before.values())


def test_cancelling_changes_nothing() -> None:
    with demo_app("broken") as (app, demo):
        before = (demo.root / TOOLKIT_CONFIG).read_bytes()

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                await pilot.press("f")
                await wait_for(pilot, lambda: isinstance(app.screen, FixPreviewScreen) and app.screen.plan is not None,
                               "the preview")
                preview = static_text(app, "#plan-body")
                assert "Edit /etc/nvidia-container-runtime/config.toml" in preview
                assert '-ldconfig = "@/sbin/ldconfig.real"' in preview and '+ldconfig = "@/sbin/ldconfig"' in preview
                assert "Root: not needed" in preview and "temporary copy" in preview
                await pilot.press("a")
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
                await pilot.press("n")
                await wait_for(pilot, lambda: isinstance(app.screen, FixPreviewScreen), "back on the preview")
                await pilot.press("escape")
                await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "back on the main screen")
                assert app.screen.query_one(CheckTree).selected_id == "toolkit.config"

        run(body)
        assert (demo.root / TOOLKIT_CONFIG).read_bytes() == before
        assert not (demo.root / "var/backups/gpudoctor").exists()


class _EditDaemonJson(Fix):
    """A test fix: rewrites daemon.json; `needs_root` and `guided` as the test wants."""

    id = "test-edit"
    title = "Rewrite daemon.json (test)"
    addresses = ("runtime.docker_config",)

    def __init__(self, *, needs_root: bool, guided: bool) -> None:
        self.needs_root = needs_root
        self.is_guided = guided

    def plan(self, ctx: FixContext) -> Plan:
        before = ctx.facts.root.read_text("/etc/docker/daemon.json")
        after = json.dumps({"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}},
                            "default-runtime": "nvidia"}, indent=4) + "\n"
        return Plan(fix_id=self.id, edits=(FileEdit(path="/etc/docker/daemon.json", before=before, after=after),),
                    needs_root=self.needs_root, guided=self.is_guided)


class _OneFixSession(DoctorSession):
    """A demo session whose only fix, for the problems it addresses, is `fix`."""

    def __init__(self, fix: Fix, base: DoctorSession) -> None:
        super().__init__(facts=base.facts, options=base.options, demo=base.demo, root_arg=base.root_arg)
        self._fix = fix

    def fixes_for(self, result: CheckResult) -> list[Fix]:
        return [self._fix] if result.id in self._fix.addresses else []


@contextmanager
def _app_with(fix: Fix, demo_name: str = "broken") -> Iterator[tuple[GpuDoctorApp, DemoHost]]:
    """An app on a demo host whose only fix, for every problem it addresses, is `fix`."""
    with open_demo(demo_name) as demo:
        yield GpuDoctorApp(session=_OneFixSession(fix, session_for(demo))), demo


def test_a_fix_that_needs_root_shows_the_command_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gpudoctor.tui.session.os.geteuid", lambda: 1000)
    monkeypatch.setattr("gpudoctor.tui.screens.fix.os.geteuid", lambda: 1000)
    with _app_with(_EditDaemonJson(needs_root=True, guided=False)) as (app, demo):
        before = (demo.root / DAEMON_JSON).read_bytes()

        async def body() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await settle(pilot)
                app.main_screen.select_check("runtime.docker_config")
                await pilot.pause()
                await pilot.press("f")
                await wait_for(pilot, lambda: isinstance(app.screen, FixPreviewScreen) and app.screen.plan is not None,
                               "the preview")
                preview = static_text(app, "#plan-body")
                assert "Root: NEEDED, and gpudoctor runs as uid 1000" in preview
                assert "sudo gpudoctor fix test-edit --root <demo host>" in preview
                await pilot.press("a")
                await pilot.pause()
                assert isinstance(app.screen, FixPreviewScreen)  # no confirmation, nothing applied
                assert app.screen.check_action("apply", ()) is None

        run(body)
        assert (demo.root / DAEMON_JSON).read_bytes() == before


@pytest.mark.parametrize("answer", ["y", "n"])
def test_a_guided_step_asks_from_the_worker_thread(answer: str) -> None:
    with _app_with(_EditDaemonJson(needs_root=False, guided=True)) as (app, demo):
        before = (demo.root / DAEMON_JSON).read_text()

        async def body() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await settle(pilot)
                app.main_screen.select_check("runtime.docker_config")
                await pilot.pause()
                await pilot.press("f")
                await wait_for(pilot, lambda: isinstance(app.screen, FixPreviewScreen) and app.screen.plan is not None,
                               "the preview")
                assert "Guided fix" in static_text(app, "#plan-body")
                await pilot.press("a")
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), "the apply confirmation")
                await pilot.press("y")
                # apply_plan asks again for the guided step, from the worker thread.
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), "the step's question")
                assert "Write /etc/docker/daemon.json?" in static_text(app, "#question")
                await pilot.press(answer)
                await wait_for(pilot, lambda: isinstance(app.screen, FixApplyScreen) and app.screen.done, "done")

        run(body)
        after = (demo.root / DAEMON_JSON).read_text()
        if answer == "y":
            assert json.loads(after)["runtimes"]["nvidia"]["path"] == "/usr/bin/nvidia-container-runtime"
            assert app.results["runtime.docker_config"].status is Status.PASS
        else:
            assert after == before
            assert app.results["runtime.docker_config"].status is Status.FAIL


def test_fix_with_nothing_to_fix_says_so() -> None:
    with demo_app("healthy") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                await pilot.press("f")
                await pilot.pause()
                assert isinstance(app.screen, MainScreen)
                assert any("nothing to fix" in n.message for n in app._notifications)

        run(body)


def test_demo_files_live_in_a_temporary_copy() -> None:
    with open_demo("broken") as demo:
        root = demo.root
        assert root.is_dir() and "gpudoctor-demo-" in str(root)
    assert not root.exists()
