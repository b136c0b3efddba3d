"""``gpudoctor install``: guided installation of the GPU container stack, step by step.

``gpudoctor install [--dry-run] [--yes] [--route nvidia|gpudoctor] [--root DIR]``

Prints the ordered plan for this distribution (driver instructions, Docker, the NVIDIA toolkit or
gpudoctor's own runtime, registration, reload, verification); ``--dry-run`` stops there. Otherwise, after
one confirmation (or ``--yes``), each step runs with live output and is verified. The first failure stops
the run and says which step to resume from; running it again resumes there. Exit status: 0 when every
step is done (or could not be verified here), 1 when a step failed, 2 usage, 3 when it cannot run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gpudoctor.report.model import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    from gpudoctor.cli import add_host_options

    parser = argparse.ArgumentParser(
        prog="gpudoctor install",
        description="Install the NVIDIA GPU container stack step by step: verified, resumable, distro-aware.",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan (commands and diffs) and stop")
    parser.add_argument("--yes", "-y", action="store_true", help="run without asking first")
    parser.add_argument("--route", choices=("nvidia", "gpudoctor"), default="nvidia",
                        help="nvidia: NVIDIA's toolkit from its repository (default); gpudoctor: gpudoctor's own "
                        "runtime and CDI spec, no vendor packages")
    add_host_options(parser)
    parser.add_argument("--runtime-path", default=None, metavar="PATH",
                        help="route gpudoctor: where the runtime launcher goes "
                        "(default /usr/local/lib/gpudoctor/gpudoctor-runtime)")
    return parser


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _ask(question: str) -> bool:
    sys.stdout.write(f"{question} [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    from gpudoctor.checks.base import CheckOptions
    from gpudoctor.host.open import HostOpenError, is_archive, open_host
    from gpudoctor.install import InstallStep, UnsupportedDistro, build_install_plan, run_install
    from gpudoctor.install.render import render_install_plan, render_step

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    if is_archive(args.root):
        print(f"gpudoctor install: --root {args.root} is a snapshot archive; install needs a directory.",
              file=sys.stderr)
        return EXIT_USAGE
    confirm = _ask if _interactive() else None
    try:
        with open_host(args.root, offline=args.offline, docker_host=args.docker_host) as facts:
            options = CheckOptions(offline=facts.offline, docker_host=args.docker_host)
            try:
                plan = build_install_plan(facts, args.route, options=options, confirm=confirm,
                                          runtime_path=args.runtime_path)
            except UnsupportedDistro as exc:
                print(f"gpudoctor install: {exc}", file=sys.stderr)
                return EXIT_ERROR
            plan.survey()
            sys.stdout.write(render_install_plan(plan))
            if args.dry_run:
                return EXIT_OK
            todo = plan.resume_from
            if todo is None:
                say("every step is already in place; nothing to do")
                return EXIT_OK
            if facts.root.is_live_root and os.geteuid() != 0:
                say("gpudoctor install changes system packages and files: run it as root: "
                    "sudo gpudoctor install " + " ".join(argv))
                return EXIT_FAILED
            if not args.yes:
                if confirm is None:
                    say("nothing run: stdin is not a terminal, so nobody can confirm. Run again with --yes.")
                    return EXIT_FAILED
                if not confirm(f"Run the steps from [{plan.steps.index(todo) + 1}/{len(plan.steps)}] {todo.id}?"):
                    say("nothing run")
                    return EXIT_FAILED
            total = len(plan.steps)

            def on_step(step: InstallStep) -> None:
                say("")
                say(f"==> [{plan.steps.index(step) + 1}/{total}] {step.id}: {step.title}")

            outcome = run_install(plan, lambda line: say(f"    | {line}"), confirm=confirm, on_step=on_step)
            for result in outcome.results:
                say(f"{result.step_id}: {result.state}" + (f": {result.detail}" if result.detail else ""))
            if outcome.state_error:
                say(f"warning: {outcome.state_error}")
            if not outcome.ok and outcome.failed is not None:
                step = outcome.failed
                number = plan.steps.index(step) + 1
                say("")
                for line in render_step(step, number, total):
                    say(line)
                say(f"stopped at step {number} ({step.id}). Fix what it says, then run `gpudoctor install` "
                    f"again: it resumes at step {number} ({step.id}).")
                return EXIT_FAILED
            say("done: every step is in place" + (" (some could not be verified here)" if any(
                r.state == "skipped" for r in outcome.results) else ""))
            return EXIT_OK
    except HostOpenError as exc:
        print(f"gpudoctor install: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"gpudoctor install: {exc}", file=sys.stderr)
        return EXIT_ERROR
