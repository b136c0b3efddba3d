"""``gpudoctor fix``: list, preview (``--dry-run``) and apply fix-ups; and ``gpudoctor --check --fix``.

``gpudoctor fix --list``
``gpudoctor fix ID... [--dry-run] [--yes] [--root DIR] [--choice NAME] [--runtime nvidia|gpudoctor] ...``

Each fix is planned first (diffs, argv lists, whether root is needed); ``--dry-run`` prints the plans and
stops. Otherwise one confirmation (or ``--yes``) applies them all; guided fixes ask again at every step.
Then the checks each fix addresses run again and their status is printed. Exit status: 0 when every fix
applied and its checks no longer fail, 1 otherwise, 2 for usage errors, 3 when gpudoctor could not run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from gpudoctor.report.model import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from gpudoctor.checks.base import CheckOptions
    from gpudoctor.fixes.base import ApplyResult, Fix, FixContext, Plan
    from gpudoctor.host.facts import HostFacts
    from gpudoctor.report.model import Report

Printer = Callable[[str], None]


def build_parser() -> argparse.ArgumentParser:
    from gpudoctor.cli import add_host_options

    parser = argparse.ArgumentParser(
        prog="gpudoctor fix",
        description="Preview and apply fix-ups. Every file is backed up and written atomically.",
        epilog="`gpudoctor fix --list` shows the fixes; `gpudoctor --check` says which ones a finding needs.",
    )
    parser.add_argument("ids", nargs="*", metavar="ID", help="fixes to apply, e.g. docker-runtime")
    parser.add_argument("--list", action="store_true", help="list the fixes and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the diffs and commands, change nothing")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="apply without asking (guided fixes still ask at every step)")
    add_host_options(parser)
    parser.add_argument("--choice", default=None, metavar="NAME", help="the option to take, for fixes that offer several")
    parser.add_argument("--runtime", choices=("nvidia", "gpudoctor"), default=None,
                        help="docker-runtime / containerd-runtime: the runtime to register (default: nvidia when "
                        "the toolkit is installed, else gpudoctor)")
    parser.add_argument("--default-runtime", action="store_true",
                        help="docker-runtime: also make it Docker's default-runtime")
    parser.add_argument("--docker-config", default=None, metavar="PATH",
                        help="docker-runtime: the daemon.json to edit (default: the one dockerd reads)")
    parser.add_argument("--runtime-path", default=None, metavar="PATH",
                        help="docker-runtime: where gpudoctor's runtime launcher goes "
                        "(default /usr/local/lib/gpudoctor/gpudoctor-runtime)")
    parser.add_argument("--runtime-config", default=None, metavar="PATH",
                        help="docker-runtime: the shim's settings file the launcher names "
                        "(default /etc/gpudoctor/runtime.toml)")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SEC",
                        help="wait this long for another fix run to finish (default: fail at once)")
    return parser


# -- talking to the person -----------------------------------------------------------------------------------


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _ask(question: str, stream: TextIO) -> bool:
    stream.write(f"{question} [y/N] ")
    stream.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _pick(name: str, choices: dict[str, str], stream: TextIO) -> str | None:
    stream.write(f"{name} offers a choice:\n")
    keys = list(choices)
    for i, (key, text) in enumerate(choices.items(), start=1):
        stream.write(f"  {i}) {key}: {text}\n")
    stream.write(f"Pick 1-{len(keys)} (anything else: none) ")
    stream.flush()
    answer = sys.stdin.readline().strip()
    if answer.isdigit() and 1 <= int(answer) <= len(keys):
        return keys[int(answer) - 1]
    return answer if answer in choices else None


def _lines(printer: Printer, text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        printer(line)


def list_fixes() -> str:
    """The ``--list`` table."""
    from gpudoctor.fixes.registry import FIXES

    rows = []
    for fix in FIXES.values():
        kind = "guided" if fix.guided else "safe"
        rows.append(f"{fix.id:<20} {kind:<7} {fix.title}")
        rows.append(f"{'':<20} {'':<7} addresses: {', '.join(fix.addresses)}")
        for key, text in fix.choices.items():
            rows.append(f"{'':<20} {'':<7} --choice {key}: {text}")
    return "\n".join(rows) + "\n"


# -- planning and applying -----------------------------------------------------------------------------------


def plan_fix(fix: Fix, ctx: FixContext, printer: Printer, stream: TextIO) -> Plan | None:
    """Plan one fix, asking for a choice when it needs one and someone can answer; None when it cannot."""
    from gpudoctor.fixes.base import FixError

    try:
        plan = fix.plan(ctx)
        if plan.choices and ctx.choice is None and _interactive():
            picked = _pick(fix.id, dict(plan.choices), stream)
            if picked is not None:
                ctx.choice = picked
                plan = fix.plan(ctx)
    except FixError as exc:
        printer(f"{fix.id}: cannot fix: {exc}")
        return None
    return plan


def _needs_root_message(plans: Sequence[Plan], argv_hint: str) -> str | None:
    if os.geteuid() == 0:
        return None
    need = [p.fix_id for p in plans if p.needs_root and not p.empty]
    if not need:
        return None
    return (f"{', '.join(need)} need root to change system files; nothing was changed. Run: "
            f"sudo {argv_hint}")


def _apply_one(fix: Fix, ctx: FixContext, plan: Plan, printer: Printer, *, replan: bool = False) -> ApplyResult:
    """Apply one fix. With `replan`, plan it again first: the fixes applied before it changed the host (a
    CDI spec must list the device nodes device-nodes just made); a plan that changed is shown again."""
    from gpudoctor.fixes.base import ApplyResult, FixError
    from gpudoctor.fixes.render import render_plan, render_result

    if replan:
        ctx = ctx.fresh()
        try:
            fresh = fix.plan(ctx)
        except FixError as exc:
            result = ApplyResult(fix_id=fix.id, ok=False, error=str(exc))
            _lines(printer, render_result(result))
            return result
        if fresh.ordered() != plan.ordered():
            printer(f"{fix.id}: updated after the fixes before it:")
            _lines(printer, render_plan(fresh, fix, live=ctx.live))
        plan = fresh
    result = fix.apply(ctx, plan, lambda line: printer(f"  | {line}"))
    _lines(printer, render_result(result))
    return result


def _verify(fix: Fix, ctx: FixContext, printer: Printer) -> bool:
    from gpudoctor.checks.base import Status

    ok = True
    for res in fix.verify(ctx):
        printer(f"  check {res.id}: {res.status.value}: {res.summary}")
        if res.status in (Status.FAIL, Status.ERROR):
            ok = False
    return ok


def _make_ctx(args: argparse.Namespace, facts: HostFacts, options: CheckOptions, stream: TextIO) -> FixContext:
    from gpudoctor.fixes.base import FixContext

    confirm = (lambda q: _ask(q, stream)) if _interactive() else None
    return FixContext(
        facts=facts,
        options=options,
        assume_yes=args.yes,
        confirm=confirm,
        choice=args.choice,
        runtime=args.runtime,
        set_default_runtime=args.default_runtime,
        docker_config=args.docker_config,
        runtime_path=args.runtime_path,
        runtime_config=args.runtime_config,
        lock_timeout=args.wait,
    )


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    out = sys.stdout

    def printer(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    if args.list:
        out.write(list_fixes())
        return EXIT_OK
    if not args.ids:
        parser.print_usage(sys.stderr)
        print("gpudoctor fix: name at least one fix (see `gpudoctor fix --list`)", file=sys.stderr)
        return EXIT_USAGE
    from gpudoctor.fixes.registry import FIXES

    unknown = [i for i in args.ids if i not in FIXES]
    if unknown:
        print(f"gpudoctor fix: unknown fix {', '.join(unknown)} (known: {', '.join(FIXES)})", file=sys.stderr)
        return EXIT_USAGE
    from gpudoctor.checks.base import CheckOptions
    from gpudoctor.fixes.render import render_plan
    from gpudoctor.host.open import HostOpenError, is_archive, open_host

    if is_archive(args.root):
        print(f"gpudoctor fix: --root {args.root} is a snapshot archive; fixes change a live tree, not a "
              "snapshot. Point --root at a directory.", file=sys.stderr)
        return EXIT_USAGE
    options = CheckOptions(offline=args.offline, docker_host=args.docker_host)
    code = EXIT_OK
    try:
        with open_host(args.root, offline=args.offline, docker_host=args.docker_host) as facts:
            ctx = _make_ctx(args, facts, options, out)
            fixes = [FIXES[i] for i in dict.fromkeys(args.ids)]
            planned: list[tuple[Fix, Plan]] = []
            for fix in fixes:
                plan = plan_fix(fix, ctx, printer, out)
                if plan is None:
                    code = EXIT_FAILED
                    continue
                _lines(printer, render_plan(plan, fix, live=ctx.live))
                if plan.choices and ctx.choice is None:
                    printer(f"  {fix.id}: nothing applied until you pick one with --choice")
                    code = EXIT_FAILED
                    continue
                planned.append((fix, plan))
            todo = [(f, p) for f, p in planned if not p.empty]
            if args.dry_run or not todo:
                return code
            if ctx.live:
                msg = _needs_root_message([p for _, p in todo], "gpudoctor fix " + " ".join(argv))
                if msg:
                    printer(msg)
                    return EXIT_FAILED
            if not args.yes:
                if not _interactive():
                    printer("nothing applied: stdin is not a terminal, so nobody can confirm. Run again with --yes.")
                    return EXIT_FAILED
                if not _ask("Apply " + ", ".join(f.id for f, _ in todo) + "?", out):
                    printer("nothing applied")
                    return EXIT_FAILED
            for index, (fix, plan) in enumerate(todo):
                result = _apply_one(fix, ctx, plan, printer, replan=index > 0)
                if not result.ok:
                    code = EXIT_FAILED
                    continue
                if not _verify(fix, ctx, printer):
                    code = EXIT_FAILED
    except HostOpenError as exc:
        print(f"gpudoctor fix: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        raise
    except OSError as exc:  # the last line of defence: a clear message, never a traceback
        print(f"gpudoctor fix: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return code


# -- gpudoctor --check --fix ---------------------------------------------------------------------------------


def fixable_ids(report: Report) -> list[str]:
    """Fix ids named by the report's failing or warning checks, in apply order."""
    from gpudoctor.checks.base import Status
    from gpudoctor.fixes.registry import apply_order

    ids: list[str] = []
    for res in report.checks:
        if res.status in (Status.FAIL, Status.WARN):
            ids.extend(res.fixes)
    return apply_order(ids)


def fix_from_report(
    report: Report, *, facts: HostFacts, options: CheckOptions, assume_yes: bool
) -> int:
    """Apply every safe fix the report's findings name, after one confirmation (none with `assume_yes`).

    Guided fixes are only named (they need a person at every step). Prints to stderr, so that ``--json``
    output on stdout stays clean. Returns EXIT_OK unless a fix that was applied failed.
    """
    from gpudoctor.fixes.base import FixContext
    from gpudoctor.fixes.registry import FIXES
    from gpudoctor.fixes.render import render_plan

    err = sys.stderr

    def printer(line: str) -> None:
        err.write(line + "\n")
        err.flush()

    ids = fixable_ids(report)
    if not ids:
        return EXIT_OK
    guided = [i for i in ids if FIXES[i].guided]
    confirm = (lambda q: _ask(q, err)) if _interactive() else None
    ctx = FixContext(facts=facts, options=options, assume_yes=assume_yes, confirm=confirm)
    todo: list[tuple[Fix, Plan]] = []
    for fid in ids:
        if fid in guided:
            continue
        fix = FIXES[fid]
        plan = plan_fix(fix, ctx, printer, err)
        if plan is None:
            continue
        if plan.empty:
            continue
        _lines(printer, render_plan(plan, fix, live=ctx.live))
        todo.append((fix, plan))
    for fid in guided:
        printer(f"{fid}: guided fix ({FIXES[fid].title}); run `gpudoctor fix {fid}` yourself, it asks at every step")
    if not todo:
        return EXIT_OK
    if ctx.live:
        msg = _needs_root_message([p for _, p in todo], "gpudoctor --check --fix")
        if msg:
            printer(msg)
            return EXIT_OK
    if not assume_yes:
        if confirm is None:
            printer("no fixes applied: stdin is not a terminal, so nobody can confirm. Run again with --yes.")
            return EXIT_OK
        if not confirm("Apply " + ", ".join(f.id for f, _ in todo) + "?"):
            printer("no fixes applied")
            return EXIT_OK
    code = EXIT_OK
    for index, (fix, plan) in enumerate(todo):
        if not _apply_one(fix, ctx, plan, printer, replan=index > 0).ok:
            code = EXIT_FAILED
    return code
