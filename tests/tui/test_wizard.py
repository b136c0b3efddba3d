"""The install wizard with Pilot on the missing-toolkit demo: the steps and their states, the current
step's commands, continue (live output, verified, recorded for `gpudoctor install`), skip, other route,
abort."""

from __future__ import annotations

import dataclasses
import json

import pytest
from textual.widgets import RichLog

from gpudoctor.tui.app import GpuDoctorApp
from gpudoctor.tui.screens.install import InstallWizardScreen
from gpudoctor.tui.screens.main import MainScreen
from tests.tui.helpers import demo_app, run, settle, static_text, wait_for


@pytest.fixture(autouse=True)
def _colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)


def _wizard(app: GpuDoctorApp) -> InstallWizardScreen:
    screen = app.screen
    assert isinstance(screen, InstallWizardScreen)
    return screen


def test_wizard_steps_continue_skip_and_abort() -> None:
    with demo_app("missing-toolkit") as (app, demo):

        async def body() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await settle(pilot)
                await pilot.press("i")
                await wait_for(pilot, lambda: isinstance(app.screen, InstallWizardScreen)
                               and _wizard(app).plan is not None, "the install plan")
                wiz = _wizard(app)
                assert wiz.plan is not None
                assert [(s.id, s.state) for s in wiz.plan.steps][:3] == [
                    ("driver", "done"), ("docker", "done"), ("toolkit", "pending")]
                assert wiz.current is not None and wiz.current.id == "toolkit"
                steps = static_text(app, "#wizard-steps")
                assert "▶ ○ 3. toolkit" in steps and "✓ 1. driver" in steps
                step = static_text(app, "#wizard-step-body")
                assert "Step 3/6" in step and "$ apt-get" in step and "skipped here" in step
                assert "<demo host>" in static_text(app, "#wizard-title")

                # Continue: the package commands are live actions, skipped under a demo root, so the
                # step does not verify and stays current, failed, with its reason.
                await pilot.press("c")
                await wait_for(pilot, lambda: not wiz.running and wiz.current is not None
                               and wiz.current.state == "failed", "the toolkit step run")
                log = "\n".join(line.text for line in wiz.query_one("#wizard-log", RichLog).lines)
                assert "== toolkit:" in log and "live action" in log
                assert "✗ 3. toolkit" in static_text(app, "#wizard-steps")
                state = json.loads((demo.root / "var/lib/gpudoctor/install-state.json").read_text())
                assert state["route"] == "nvidia" and state["steps"]["toolkit"]["state"] == "failed"

                # Skip the rest, one by one, to the end.
                for now_current in ("register", "reload", "verify", None):
                    await pilot.press("s")
                    await pilot.pause()
                    assert (wiz.current.id if wiz.current else None) == now_current
                assert "– 3. toolkit" in static_text(app, "#wizard-steps")
                assert "Every step is done or skipped" in static_text(app, "#wizard-step-body")
                assert wiz.check_action("continue", ()) is None
                await pilot.press("a")
                await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "back on the main screen")

        run(body)


def test_wizard_other_route_replans() -> None:
    with demo_app("missing-toolkit") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await settle(pilot)
                await pilot.press("i")
                await wait_for(pilot, lambda: isinstance(app.screen, InstallWizardScreen)
                               and _wizard(app).plan is not None, "the install plan")
                await pilot.press("o")
                await wait_for(pilot, lambda: _wizard(app).plan is not None and _wizard(app).route == "gpudoctor",
                               "the gpudoctor route's plan")
                wiz = _wizard(app)
                assert wiz.plan is not None
                assert [s.id for s in wiz.plan.steps] == ["driver", "docker", "engine", "register", "reload", "verify"]
                assert "route gpudoctor" in static_text(app, "#wizard-title")
                assert "Step 3/6: gpudoctor's runtime" in static_text(app, "#wizard-step-body")
                await pilot.press("escape")
                await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "back on the main screen")

        run(body)


def test_a_step_that_needs_root_shows_the_command_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gpudoctor.tui.session.os.geteuid", lambda: 1000)
    monkeypatch.setattr("gpudoctor.tui.screens.install.os.geteuid", lambda: 1000)
    with demo_app("missing-toolkit") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await settle(pilot)
                await pilot.press("i")
                await wait_for(pilot, lambda: isinstance(app.screen, InstallWizardScreen)
                               and _wizard(app).plan is not None, "the install plan")
                wiz = _wizard(app)
                assert wiz.current is not None and wiz.current.plan is not None
                # On a live host this plan needs root (the demo's does not): make it so.
                wiz.current.plan = dataclasses.replace(wiz.current.plan, needs_root=True)
                wiz._paint()
                wiz.refresh_bindings()
                step = static_text(app, "#wizard-step-body")
                assert "needs root, and gpudoctor runs as uid 1000" in step
                assert "sudo gpudoctor install --route nvidia --root <demo host>" in step
                await pilot.press("c")
                await pilot.pause()
                assert not wiz.running and wiz.current.state == "pending"
                assert wiz.check_action("continue", ()) is None

        run(body)
