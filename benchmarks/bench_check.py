"""`gpudoctor --check --json --offline --root <healthy tree>` against a bare `python3 -c pass`.

Target (issue: headless doctor): the median ratio stays under 4x. Run: ``python3 -m benchmarks.bench_check``.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import sys
import tempfile
from pathlib import Path

import gpudoctor
from benchmarks.common import interleave, report, time_command


def build_healthy_tree(base: Path) -> Path:
    from tests.scenarios.builder import build_host, healthy_host

    return build_host(base, healthy_host(gpus=2))


def ensure_bytecode() -> None:
    """Compile gpudoctor's bytecode first, as an installed package has it: with PYTHONDONTWRITEBYTECODE set
    (or a read-only checkout) every run would otherwise recompile the edited modules, timing the compiler."""
    compileall.compile_dir(str(Path(gpudoctor.__file__).parent), quiet=1)


def console_script() -> str | None:
    """The ``gpudoctor`` script of this interpreter's environment (a venv's bin/), else the one on PATH."""
    beside = Path(sys.executable).with_name("gpudoctor")
    return str(beside) if beside.is_file() else shutil.which("gpudoctor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gpudoctor-bench-"))
    try:
        root = build_healthy_tree(tmp)
        ensure_bytecode()
        py = sys.executable
        check = [py, "-m", "gpudoctor", "--check", "--json", "--offline", "--root", str(root)]
        gpudoctor_bin = console_script()
        runs = {
            "python3 -c pass": lambda: time_command([py, "-c", "pass"]),
            "python3 -m gpudoctor --check --json --offline": lambda: time_command(check),
        }
        targets = {"python3 -m gpudoctor --check --json --offline": 4.0}
        if gpudoctor_bin:
            script = [gpudoctor_bin, "--check", "--json", "--offline", "--root", str(root)]
            runs["gpudoctor --check --json --offline"] = lambda: time_command(script)
            targets["gpudoctor --check --json --offline"] = 4.0
        samples = interleave(runs, rounds=args.rounds)
        ok = report("headless check vs bare interpreter", samples, baseline="python3 -c pass", targets=targets)
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
