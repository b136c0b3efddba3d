"""The fix contract: plan -> apply -> verify (design.md, Fixes).

- ``plan(ctx)`` is pure with respect to the host: it reads, never writes. It returns file edits as
  unified diffs and commands as argv lists, and says whether root is needed.
- ``apply(ctx, plan, on_output)`` takes the lock, backs each file up (timestamped), writes atomically,
  refuses to touch a file it cannot parse, and runs the commands (live actions are skipped, with a note,
  when the root is not ``/``).
- ``verify(ctx)`` re-runs the checks the fix addresses and returns their results.

Fixes are idempotent: a second apply changes nothing. Guided fixes (reboot, boot chain) never run silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpudoctor.checks.base import CheckOptions, CheckResult
    from gpudoctor.host.facts import HostFacts


OutputCallback = Callable[[str], None]
"""Receives apply's progress and command output line by line (the TUI streams it into a log)."""


@dataclass(slots=True, frozen=True, kw_only=True)
class FileEdit:
    """Replace the content of `path` (a host path) with `after`. `before` is None for a new file."""

    path: str
    before: str | None
    after: str
    mode: int = 0o644

    @property
    def diff(self) -> str:
        import difflib

        a = [] if self.before is None else self.before.splitlines(keepends=True)
        b = self.after.splitlines(keepends=True)
        return "".join(
            difflib.unified_diff(a, b, fromfile=f"a{self.path}" if self.before is not None else "/dev/null",
                                 tofile=f"b{self.path}")
        )


@dataclass(slots=True, frozen=True, kw_only=True)
class Command:
    """A command to run. `live` commands act on the running system (reload, modprobe) and are skipped
    under ``--root`` other than ``/``. `confirm` commands need an explicit yes even with ``--yes``
    off-by-default semantics (e.g. `systemctl restart docker` stops running containers)."""

    argv: tuple[str, ...]
    description: str
    needs_root: bool = True
    live: bool = True
    confirm: str | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class Plan:
    """What a fix will do. An empty plan (no edits, no commands) means there is nothing to do."""

    fix_id: str
    edits: tuple[FileEdit, ...] = ()
    commands: tuple[Command, ...] = ()
    notes: tuple[str, ...] = ()
    needs_root: bool = False
    guided: bool = False

    @property
    def empty(self) -> bool:
        return not self.edits and not self.commands


@dataclass(slots=True, kw_only=True)
class ApplyResult:
    fix_id: str
    ok: bool
    changed: list[str] = field(default_factory=list)
    backups: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


class FixContext:
    """What a fix sees: the host facts, the check options, and whether it may act on the live system."""

    def __init__(self, *, facts: HostFacts, options: CheckOptions, assume_yes: bool = False) -> None:
        self.facts = facts
        self.options = options
        self.assume_yes = assume_yes

    @property
    def live(self) -> bool:
        """Live actions (reload, modprobe) only when the root is this machine's own /."""
        return self.facts.root.is_live_root


class Fix:
    """Base class for fix-ups. Subclasses set the class attributes and implement plan/apply."""

    id: str = ""
    title: str = ""
    addresses: tuple[str, ...] = ()
    guided: bool = False

    def plan(self, ctx: FixContext) -> Plan:
        raise NotImplementedError

    def apply(self, ctx: FixContext, plan: Plan, on_output: OutputCallback | None = None) -> ApplyResult:
        raise NotImplementedError

    def verify(self, ctx: FixContext) -> Sequence[CheckResult]:
        from gpudoctor.doctor import run_doctor

        report = run_doctor(ctx.facts.fresh(), options=ctx.options, only=self.addresses)
        return report.checks
