#!/usr/bin/env python3
"""Regenerate the README screenshots: ``screenshots/*.svg`` from the real TUI (headless, Pilot) on the
bundled demo hosts, and ``screenshots/*.png`` from them with ``rsvg-convert`` (Debian: librsvg2-bin).

    python3 scripts/screenshots.py [--size 100x30] [--out screenshots] [--no-png]

The SVGs get ``xml:space="preserve"``: Textual writes runs of text that begin with a (non-breaking)
space, and without it librsvg drops that space and glues words together.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual.pilot import Pilot  # noqa: E402

from gpudoctor.checks.base import CheckOptions  # noqa: E402
from gpudoctor.demo import open_demo  # noqa: E402
from gpudoctor.tui.app import GpuDoctorApp  # noqa: E402
from gpudoctor.tui.screens.fix import FixApplyScreen, FixPreviewScreen  # noqa: E402
from gpudoctor.tui.screens.install import InstallWizardScreen  # noqa: E402
from gpudoctor.tui.session import DoctorSession  # noqa: E402


@dataclass(frozen=True)
class Shot:
    name: str
    scenario: str
    keys: tuple[str, ...]
    ready: Callable[[GpuDoctorApp], bool]
    what: str


def _on(screen_type: type, attr: str | None = None) -> Callable[[GpuDoctorApp], bool]:
    def ready(app: GpuDoctorApp) -> bool:
        screen = app.screen
        return isinstance(screen, screen_type) and (attr is None or bool(getattr(screen, attr)))

    return ready


SHOTS: tuple[Shot, ...] = (
    Shot("main-broken", "broken", (), lambda app: True, "the broken demo host"),
    Shot("main-healthy", "healthy", (), lambda app: True, "the healthy demo host"),
    Shot("detail", "broken", ("n", "tab"), lambda app: True, "the second problem's details"),
    Shot("fix-preview", "broken", ("f",), _on(FixPreviewScreen, "plan"), "the toolkit-config fix preview"),
    Shot("fix-applied", "broken", ("f", "_plan", "a", "y"), _on(FixApplyScreen, "done"), "the applied fix"),
    Shot("wizard", "missing-toolkit", ("i",), _on(InstallWizardScreen, "plan"), "the install wizard"),
)


async def _until(pilot: Pilot[Any], cond: Callable[[], bool], what: str) -> None:
    for _ in range(1200):
        if cond():
            return
        await pilot.pause(0.05)
    raise SystemExit(f"screenshots: gave up waiting for {what}")


async def take(shot: Shot, size: tuple[int, int]) -> str:
    """The SVG of one screen."""
    with open_demo(shot.scenario) as demo:
        session = DoctorSession(facts=demo.facts, options=CheckOptions(offline=True), demo=demo.name,
                                root_arg=str(demo.root))
        app = GpuDoctorApp(session=session)
        async with app.run_test(size=size) as pilot:
            await _until(pilot, lambda: app.runs_finished >= 1 and not app.busy, "the checks")
            await app.workers.wait_for_complete()
            await pilot.pause()
            for key in shot.keys:
                if key == "_plan":  # wait for the fix plan before pressing on
                    await _until(pilot, lambda: _on(FixPreviewScreen, "plan")(app), "the fix plan")
                    continue
                await pilot.press(key)
                await pilot.pause()
            await _until(pilot, lambda: shot.ready(app), shot.what)
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.pause()
            return app.export_screenshot(title=f"gpudoctor — {shot.what}")


def preserve_space(svg: str) -> str:
    return svg.replace("<svg ", '<svg xml:space="preserve" ', 1) if "xml:space" not in svg else svg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100x30", help="terminal size COLSxROWS (default 100x30)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "screenshots"))
    parser.add_argument("--no-png", action="store_true", help="write the SVGs only")
    parser.add_argument("--only", action="append", default=[], help="just these shots (by name)")
    args = parser.parse_args(argv)
    cols, rows = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rsvg = None if args.no_png else shutil.which("rsvg-convert")
    if not args.no_png and rsvg is None:
        print("screenshots: rsvg-convert is not installed (apt-get install librsvg2-bin); use --no-png",
              file=sys.stderr)
        return 2
    os.environ.pop("NO_COLOR", None)
    for shot in SHOTS:
        if args.only and shot.name not in args.only:
            continue
        svg = preserve_space(asyncio.run(take(shot, (cols, rows))))
        svg_path = out / f"{shot.name}.svg"
        svg_path.write_text(svg, encoding="utf-8")
        line = f"wrote {svg_path}"
        if rsvg is not None:
            png_path = out / f"{shot.name}.png"
            subprocess.run([rsvg, "-w", str(cols * 14), str(svg_path), "-o", str(png_path)], check=True)
            line += f" and {png_path.name}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
