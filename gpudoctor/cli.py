"""Command-line entry points. The headless path imports neither Textual nor the Docker SDK.

``gpudoctor``              interactive TUI on a terminal; otherwise a hint and the headless check
``gpudoctor --check``      the headless report (``--json`` for CI)
``gpudoctor SUBCOMMAND``   cdi | hook | fix | install | snapshot (see ``gpudoctor SUBCOMMAND --help``)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from gpudoctor import __version__
from gpudoctor.report.model import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE

if TYPE_CHECKING:
    from gpudoctor.host.facts import HostFacts

SUBCOMMANDS: dict[str, str] = {
    "cdi": "gpudoctor.commands.cdi",
    "hook": "gpudoctor.commands.hook",
    "fix": "gpudoctor.commands.fix",
    "install": "gpudoctor.commands.install",
    "snapshot": "gpudoctor.commands.snapshot",
}


def add_host_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that reads the host shares."""
    parser.add_argument("--root", default="/", metavar="DIR",
                        help="diagnose the host whose filesystem is at DIR (default /), or a snapshot archive")
    parser.add_argument("--offline", action="store_true",
                        help="no live probes (NVML, Docker daemon, containers); file checks only")
    parser.add_argument("--docker-host", metavar="URL", default=None,
                        help="Docker daemon to talk to (default: $DOCKER_HOST, then the local socket)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpudoctor",
        description="Diagnose (and fix) NVIDIA GPUs in containers, layer by layer.",
        epilog="subcommands: " + ", ".join(SUBCOMMANDS) + " (gpudoctor SUBCOMMAND --help)",
    )
    parser.add_argument("--version", action="version", version=f"gpudoctor {__version__}")
    parser.add_argument("--check", action="store_true", help="run the checks headlessly and print a report")
    parser.add_argument("--json", action="store_true", help="print the JSON report (schema gpudoctor.report/1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every check with evidence and timing")
    add_host_options(parser)
    parser.add_argument("--only", action="append", default=[], metavar="ID|GROUP",
                        help="run only these checks or groups (repeatable, or comma-separated)")
    parser.add_argument("--skip", action="append", default=[], metavar="ID|GROUP",
                        help="leave out these checks or groups (repeatable, or comma-separated)")
    parser.add_argument("--list-checks", action="store_true", help="list the check ids and exit")
    parser.add_argument("--fail-on", choices=("fail", "warn"), default="fail",
                        help="exit 1 on failures (default) or on warnings too")
    parser.add_argument("--image", default=None, metavar="IMAGE",
                        help="image for the in-container nvidia-smi parity check")
    parser.add_argument("--pull", action="store_true", help="allow pulling the parity image")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SEC", help="per-probe timeout")
    parser.add_argument("--fix", action="store_true", help="with --check: apply the safe fixes for the findings")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--demo", nargs="?", const="broken", default=None, metavar="SCENARIO",
                        help="run against a bundled demo host (no GPU needed)")
    parser.add_argument("--no-color", action="store_true", help="no colour (NO_COLOR is honoured too)")
    return parser


def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _list_checks() -> int:
    from gpudoctor.checks import load_checks

    for spec in load_checks().values():
        deps = f"  (after {', '.join(spec.depends_on)})" if spec.depends_on else ""
        live = "  [live]" if spec.live else ""
        print(f"{spec.id:<26} {spec.title}{live}{deps}")
    return 0


@contextlib.contextmanager
def _open_facts(args: argparse.Namespace) -> Iterator[HostFacts]:
    """The host to diagnose: ``--root`` (default /), or with ``--demo SCENARIO`` a bundled demo host."""
    from gpudoctor.host.open import HostOpenError, open_host

    if getattr(args, "demo", None) is not None:
        from gpudoctor.demo import DemoError, open_demo

        try:
            with open_demo(args.demo) as demo:
                yield demo.facts
        except DemoError as exc:
            raise HostOpenError(str(exc)) from None
        return
    with open_host(args.root, offline=args.offline, docker_host=args.docker_host) as facts:
        yield facts


def run_check(args: argparse.Namespace) -> int:
    """The headless doctor. Prints the report; returns the exit code from design.md."""
    import os

    from gpudoctor.checks.base import CheckOptions
    from gpudoctor.doctor import UsageError, run_doctor
    from gpudoctor.host.open import HostOpenError
    from gpudoctor.report.model import EXIT_OK

    options = CheckOptions(offline=args.offline, docker_host=args.docker_host, pull=args.pull, timeout=args.timeout)
    if args.image:
        options.image = args.image
    try:
        with _open_facts(args) as facts:
            if args.fix and facts.replay:
                # A snapshot is a copy of another machine: its fixes' commands would run on this one.
                raise UsageError(f"--fix cannot be used with a snapshot ({args.root}): it replays another host; "
                                 "run `sudo gpudoctor --check --fix` on that host")
            options.offline = facts.offline
            report = run_doctor(facts, options=options, only=_split(args.only), skip=_split(args.skip))
            if args.fix:
                from gpudoctor.commands.fix import fix_from_report

                code = fix_from_report(report, facts=facts, options=options, assume_yes=args.yes)
                if code != EXIT_OK:
                    return code
                report = run_doctor(facts.fresh(), options=options, only=_split(args.only), skip=_split(args.skip))
    except (UsageError, HostOpenError) as exc:
        print(f"gpudoctor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        import json

        sys.stdout.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        from gpudoctor.report.text import render_text, use_color

        color = not args.no_color and use_color(sys.stdout.isatty(), dict(os.environ))
        sys.stdout.write(render_text(report, verbose=args.verbose, color=color))
    return report.exit_code(fail_on=args.fail_on)


def _run_tui(args: argparse.Namespace) -> int | None:
    """Start the TUI; None when it is not available in this build."""
    try:
        from gpudoctor.tui.app import run_tui
    except ImportError:
        return None
    return run_tui(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            module = importlib.import_module(SUBCOMMANDS[argv[0]])
            return int(module.main(argv[1:]))
        args = build_parser().parse_args(argv)
        if args.list_checks:
            return _list_checks()
        if args.fix and not args.check:
            args.check = True
        interactive = not (args.check or args.json) and (args.demo is not None or sys.stdout.isatty())
        if interactive:
            code = _run_tui(args)
            if code is not None:
                return code
        elif not (args.check or args.json):
            print("gpudoctor: stdout is not a terminal; running `gpudoctor --check` "
                  "(use --json for machine output)", file=sys.stderr)
        return run_check(args)
    except KeyboardInterrupt:
        print("gpudoctor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR
    except SystemExit as exc:  # argparse usage errors exit 2 already
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
