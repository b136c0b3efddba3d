"""Time to the first full screen of the TUI against a bare ``python3 -c "import textual.app"``.

The TUI run starts a fresh interpreter that opens the broken demo host, runs the app headlessly (Pilot,
80x24) and says READY once every check has finished and the screen has painted the results; the time is
from spawning the process to that line (interpreter start, imports, demo host, checks, first paint).
The baseline is the bare Textual import, in the same interleaved rounds, so the ratio says what
gpudoctor adds on top of Textual itself. Run: ``python3 -m benchmarks.bench_tui [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from benchmarks.common import interleave, report, time_command

CHILD = r"""
import asyncio, os
os.environ.pop("NO_COLOR", None)
from gpudoctor.checks.base import CheckOptions
from gpudoctor.demo import open_demo
from gpudoctor.tui.app import GpuDoctorApp
from gpudoctor.tui.session import DoctorSession

async def main() -> None:
    with open_demo("broken") as demo:
        session = DoctorSession(facts=demo.facts, options=CheckOptions(offline=True), demo=demo.name,
                                root_arg=str(demo.root))
        app = GpuDoctorApp(session=session)
        async with app.run_test(size=(80, 24)) as pilot:
            while not (app.runs_finished and not app.busy):
                await pilot.pause(0.005)
            await pilot.pause()  # the results are on the screen
            print("READY", flush=True)

asyncio.run(main())
"""

# What the TUI may cost on top of importing Textual: generous, since it includes running every check.
TARGET_RATIO = 8.0


def time_to_first_screen() -> float:
    """Seconds from spawning the TUI process to its READY line."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    _out, err = proc.communicate()
    if line.strip() != "READY" or proc.returncode != 0:
        raise RuntimeError(f"the TUI run failed (exit {proc.returncode}): {line!r} {err}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="also print the samples and medians as JSON")
    args = parser.parse_args(argv)
    baseline = 'python3 -c "import textual.app"'
    tui = "TUI: start -> all checks on screen (demo)"
    py = sys.executable
    samples = interleave(
        {
            baseline: lambda: time_command([py, "-c", "import textual.app"]),
            tui: time_to_first_screen,
        },
        rounds=args.rounds,
    )
    ok = report("gpudoctor TUI: time to the first full screen", samples, baseline=baseline,
                targets={tui: TARGET_RATIO})
    ratios = [t / b for t, b in zip(samples[tui], samples[baseline], strict=True)]
    print(f"  median of the per-round ratios: {statistics.median(ratios):.2f}x")
    if args.json:
        print(json.dumps({
            "samples_s": samples,
            "median_s": {k: statistics.median(v) for k, v in samples.items()},
            "median_round_ratio": statistics.median(ratios),
        }, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
