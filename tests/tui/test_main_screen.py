"""The main screen, driven with Pilot: live status, the stack view, navigation, verbose, help, export,
the command palette, NO_COLOR, and a check that is still running while the UI keeps answering."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from gpudoctor.checks.base import REGISTRY, CheckContext, Finding
from gpudoctor.record import replace
from gpudoctor.report.model import EXIT_FAILED, EXIT_OK
from gpudoctor.tui import style
from gpudoctor.tui.screens.export import ExportScreen
from gpudoctor.tui.screens.help import HelpScreen
from gpudoctor.tui.screens.main import MainScreen
from gpudoctor.tui.widgets.check_tree import CheckTree
from gpudoctor.tui.widgets.stack import LayerBar
from tests.tui.helpers import demo_app, run, settle, static_text, wait_for


@pytest.fixture(autouse=True)
def _colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_broken_demo_shows_the_first_broken_layer_and_its_evidence() -> None:
    with demo_app("broken") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                screen = app.screen
                assert isinstance(screen, MainScreen)
                bars = {bar.layer_name: bar for bar in screen.query(LayerBar)}
                assert bars["toolkit"].has_class("-first")
                assert bars["runtime"].has_class("-fail") and not bars["runtime"].has_class("-first")
                for layer in ("hardware", "kernel", "devices", "libraries"):
                    assert bars[layer].has_class("-pass"), layer
                assert "BROKEN" in str(bars["toolkit"].content)
                # The cursor lands on the first problem, so its evidence is on screen at once.
                assert screen.query_one(CheckTree).selected_id == "toolkit.config"
                detail = static_text(app, "#detail-body")
                assert "/sbin/ldconfig.real" in detail
                assert "Evidence" in detail and "Fix (press f)" in detail and "toolkit-config" in detail
                header = static_text(app, "#host-header")
                assert "first broken layer: Container toolkit" in header
                assert "Rocky Linux 9.3" in header and "DEMO broken" in header
                # Every bar of the stack is on screen at 80x24.
                for bar in bars.values():
                    assert bar.region.height == 1 and bar.region.bottom <= 24

        run(body)
        assert app.exit_code() == EXIT_FAILED


def test_next_problem_and_moving_the_cursor_update_the_details() -> None:
    with demo_app("broken") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                tree = app.screen.query_one(CheckTree)
                await pilot.press("n")
                await pilot.pause()
                assert tree.selected_id == "runtime.docker_config"
                assert "default-runtime 'nvidia'" in static_text(app, "#detail-body")
                await pilot.press("n")
                await pilot.pause()
                assert tree.selected_id == "toolkit.config"  # wraps around
                await pilot.press("up")
                await pilot.pause()
                assert tree.selected_id == "toolkit.installed"
                assert "Container toolkit installed" in static_text(app, "#detail-body")

        run(body)


def test_verbose_shows_timing_and_the_evidence_of_passed_checks() -> None:
    with demo_app("healthy") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await settle(pilot)
                tree = app.screen.query_one(CheckTree)
                assert tree.selected_id == "driver.gpus"
                quiet = static_text(app, "#detail-body")
                assert "lines of evidence: press v" in quiet and "took" not in quiet
                await pilot.press("v")
                await pilot.pause()
                assert app.verbose
                loud = static_text(app, "#detail-body")
                assert "Evidence" in loud and "took" in loud and "0000:3b:00.0" in loud.lower()
                label = tree.cursor_node.label if tree.cursor_node else None
                assert label is not None and " ms" in str(label)

        run(body)
        assert app.exit_code() == EXIT_OK


def test_help_opens_and_closes() -> None:
    with demo_app("healthy") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                await pilot.press("question_mark")
                await pilot.pause()
                assert isinstance(app.screen, HelpScreen)
                await pilot.press("escape")
                await pilot.pause()
                assert isinstance(app.screen, MainScreen)
                await pilot.press("q")
                await pilot.pause()

        run(body)
        assert app.return_code == 0 or app.return_code is None


def test_export_writes_markdown_and_json(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[2] / "gpudoctor" / "report" / "schema.json").read_text())
    with demo_app("broken") as (app, _demo):

        async def write(pilot: Pilot[Any], path: Path) -> None:
            await pilot.press("e")
            await pilot.pause()
            assert isinstance(app.screen, ExportScreen)
            app.screen.query_one("#export-path", Input).value = str(path)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, MainScreen)

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                await write(pilot, tmp_path / "report.md")
                await write(pilot, tmp_path / "out" / "report.json")

        run(body)
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# gpudoctor report")
    assert "First broken layer: **Container toolkit**" in md
    assert "`toolkit.config`" in md and "gpudoctor fix toolkit-config" in md
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    jsonschema.validate(data, schema)
    assert {c["id"]: c["status"] for c in data["checks"]}["runtime.docker_config"] == "fail"


def test_export_error_stays_in_the_dialog(tmp_path: Path) -> None:
    with demo_app("healthy") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                await pilot.press("e")
                await pilot.pause()
                app.screen.query_one("#export-path", Input).value = str(tmp_path)  # a directory
                await pilot.press("enter")
                await pilot.pause()
                assert isinstance(app.screen, ExportScreen)
                assert "is a directory" in static_text(app, "#export-error")
                await pilot.press("escape")
                await pilot.pause()
                assert isinstance(app.screen, MainScreen)

        run(body)


def test_command_palette_runs_the_same_actions() -> None:
    with demo_app("broken") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await settle(pilot)
                titles = [cmd.title for cmd in app.get_system_commands(app.screen)]
                for wanted in ("Re-run all checks", "Fix the selected problem", "Install wizard",
                               "Export the report", "Toggle verbose", "Help"):
                    assert wanted in titles
                assert any(t.startswith("Fix toolkit.config: ") for t in titles)
                await pilot.press("ctrl+p")
                await pilot.pause()
                await pilot.press(*"Re-run all")
                await pilot.pause(0.3)
                await pilot.press("enter")
                await settle(pilot, runs=2)
                assert app.runs_finished == 2
                assert isinstance(app.screen, MainScreen)

        run(body)


def test_a_slow_check_shows_it_is_running_and_the_ui_keeps_answering(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    entered = threading.Event()
    spec = REGISTRY["toolkit.config"]

    def slow(ctx: CheckContext) -> Finding:
        entered.set()
        release.wait(60)
        return spec.func(ctx)

    monkeypatch.setitem(REGISTRY, "toolkit.config", replace(spec, func=slow))
    with demo_app("broken") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, MainScreen)
                await wait_for(pilot, lambda: "toolkit.config" in app.running, "toolkit.config running")
                tree = screen.query_one(CheckTree)
                tree.select_check("toolkit.config")
                await wait_for(pilot, lambda: tree.cursor_node is not None and "running" in str(tree.cursor_node.label),
                               "toolkit.config labelled running")
                node = tree.cursor_node
                assert node is not None
                # Past the slow threshold the label says so in words (simulate the elapsed time).
                app.running["toolkit.config"] = time.monotonic() - 7
                screen.tick()
                assert "still running 7s" in str(node.label)
                assert "running…" in static_text(app, "#detail-body")
                # The UI thread is free while the check blocks.
                await pilot.press("v")
                await pilot.pause()
                assert app.verbose and app.busy
                assert "checking…" in static_text(app, "#host-header")
                release.set()
                await settle(pilot)
                assert app.results["toolkit.config"].status.value == "fail"
                assert "running" not in str(node.label)

        try:
            run(body)
        finally:
            release.set()
    assert entered.is_set()


def test_no_color_keeps_the_meaning_in_marks_and_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    with demo_app("broken") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                assert app.no_color
                assert dict(style.STYLES) == style.MONO_STYLES
                bar = app.screen.query_one("#layer-toolkit", LayerBar)
                text = str(bar.content)
                assert "▶" in text and "✗" in text and "BROKEN" in text

        run(body)
    monkeypatch.delenv("NO_COLOR")
    with demo_app("healthy") as (app2, _demo):
        assert dict(style.STYLES) == style.COLOR_STYLES
        del app2
