"""Shared pieces of the TUI tests: demo sessions, and waiting for the app to settle (never timing it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from textual.pilot import Pilot

from gpudoctor.checks.base import CheckOptions
from gpudoctor.demo import DemoHost, open_demo
from gpudoctor.tui.app import GpuDoctorApp
from gpudoctor.tui.session import DoctorSession

T = TypeVar("T")

# Polls, not timeouts on behaviour: a generous bound so a loaded CI machine never flakes.
MAX_POLLS = 1200
POLL_S = 0.05


def session_for(demo: DemoHost) -> DoctorSession:
    """A session on a demo host, as ``gpudoctor --demo`` makes it."""
    return DoctorSession(facts=demo.facts, options=CheckOptions(offline=True), demo=demo.name,
                         root_arg=str(demo.root))


@contextmanager
def demo_app(name: str, *, verbose: bool = False) -> Iterator[tuple[GpuDoctorApp, DemoHost]]:
    with open_demo(name) as demo:
        yield GpuDoctorApp(session=session_for(demo), verbose=verbose), demo


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    """Let the app run until `condition` holds (fails the test, naming `what`, if it never does)."""
    for _ in range(MAX_POLLS):
        if condition():
            return
        await pilot.pause(POLL_S)
    raise AssertionError(f"the app never got to: {what}")


async def settle(pilot: Pilot[Any], *, runs: int = 1) -> None:
    """Wait until `runs` check runs have finished, every worker is done and the screen has caught up."""
    app = pilot.app
    assert isinstance(app, GpuDoctorApp)
    await wait_for(pilot, lambda: app.runs_finished >= runs and not app.busy, f"{runs} finished run(s)")
    await app.workers.wait_for_complete()
    await pilot.pause()
    await wait_for(pilot, lambda: _moves_done(app), "the cursor to land on its check")
    await pilot.pause()


def _moves_done(app: GpuDoctorApp) -> bool:
    from gpudoctor.tui.widgets.check_tree import CheckTree

    return all(tree.pending_moves == 0 for tree in app.screen.query(CheckTree))


async def idle(pilot: Pilot[Any]) -> None:
    """Wait for every worker of the app and of its screens, then let the messages land."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    app = pilot.app
    if isinstance(app, GpuDoctorApp):
        await wait_for(pilot, lambda: _moves_done(app), "the cursor to land on its check")


def run(body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async test body (the suite has no asyncio plugin)."""
    return asyncio.run(body())


def plain(renderable: object, *, width: int = 120) -> str:
    """What a Static shows, as plain text (wrapped at `width`)."""
    import io

    from rich.console import Console

    if isinstance(renderable, str):
        return renderable
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def static_text(app: GpuDoctorApp, selector: str) -> str:
    """Plain text of the Static matching `selector` on the active screen."""
    from textual.widgets import Static

    return plain(app.screen.query_one(selector, Static).content)
