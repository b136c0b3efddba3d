"""SVG snapshots of the real screens at 80x24 (pytest-textual-snapshot). Update deliberately with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs before committing them.

Everything on these screens is deterministic: demo hosts (their temporary path never shows), no
timings (verbose is off), and each snapshot is taken once the checks and workers have finished.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from textual.pilot import Pilot

from gpudoctor.tui.screens.fix import FixPreviewScreen
from gpudoctor.tui.screens.install import InstallWizardScreen
from tests.tui.helpers import demo_app, idle, settle, wait_for

SIZE = (80, 24)
RunBefore = Callable[[Pilot[Any]], Coroutine[Any, Any, None]]


@pytest.fixture(autouse=True)
def _colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)


def _after(*keys: str, until: Callable[[Pilot[Any]], bool] | None = None, what: str = "") -> RunBefore:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        if until is not None:
            await wait_for(pilot, lambda: until(pilot), what)
        await idle(pilot)

    return run_before


def test_main_screen_broken(snap_compare: Any) -> None:
    """The broken demo: toolkit and runtime layers broken, the cursor on the first problem."""
    with demo_app("broken") as (app, _demo):
        assert snap_compare(app, terminal_size=SIZE, run_before=_after())


def test_main_screen_healthy(snap_compare: Any) -> None:
    """The healthy demo: every layer ok (the container layer needs a live probe, so it is skipped)."""
    with demo_app("healthy") as (app, _demo):
        assert snap_compare(app, terminal_size=SIZE, run_before=_after())


def test_detail_pane(snap_compare: Any) -> None:
    """The second problem's details (n), with the detail pane focused (tab)."""
    with demo_app("broken") as (app, _demo):
        assert snap_compare(app, terminal_size=SIZE, run_before=_after("n", "tab"))


def test_fix_preview(snap_compare: Any) -> None:
    """f on the first problem: the toolkit-config plan, its diff and root line."""
    with demo_app("broken") as (app, _demo):
        assert snap_compare(app, terminal_size=SIZE, run_before=_after(
            "f", until=lambda p: isinstance(p.app.screen, FixPreviewScreen) and p.app.screen.plan is not None,
            what="the fix plan"))


def test_install_wizard(snap_compare: Any) -> None:
    """i on the missing-toolkit demo: driver and Docker done, the toolkit step current with its commands."""
    with demo_app("missing-toolkit") as (app, _demo):
        assert snap_compare(app, terminal_size=SIZE, run_before=_after(
            "i", until=lambda p: isinstance(p.app.screen, InstallWizardScreen) and p.app.screen.plan is not None,
            what="the install plan"))
