"""The fix contract: plan -> apply -> verify (design.md, Fixes).

- ``plan(ctx)`` is pure with respect to the host: it reads, never writes. It returns file edits as
  unified diffs, filesystem actions (device nodes, links) and commands as argv lists, and says whether
  root is needed. A file it cannot parse makes it raise :class:`FixError` (with line and column), so the
  file is never touched.
- ``apply(ctx, plan, on_output)`` takes the lock, backs each file up (timestamped), writes atomically,
  refuses a file that changed since the plan, and runs the commands (live actions are skipped, with a
  note, when the root is not ``/``). See :mod:`gpudoctor.fixes.apply`.
- ``verify(ctx)`` re-runs the checks the fix addresses and returns their results.

Fixes are idempotent: a second apply changes nothing (its plan is empty). Guided fixes (reboot, boot
chain) never run silently: every step needs ``ctx.confirm``, and ``--yes`` does not stand in for it.
Fixes never print; what they have to say goes through `on_output` and :class:`ApplyResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpudoctor.checks.base import CheckOptions, CheckResult
    from gpudoctor.host.facts import HostFacts


OutputCallback = Callable[[str], None]
"""Receives apply's progress and command output line by line (the TUI streams it into a log)."""

ConfirmCallback = Callable[[str], bool]
"""Asks the person a yes/no question (the text says what happens on yes); True means go ahead."""

StageHook = Callable[[str, str], None]
"""Called as ``hook(stage, host_path)`` at each step of an atomic write (tests kill the process there).
Stages: ``backup-written``, ``temp-partial``, ``temp-written``, ``renamed``."""


class FixError(Exception):
    """A fix cannot be planned or applied. The message says what is wrong, the evidence, and what to do."""


@dataclass(slots=True, frozen=True, kw_only=True)
class FileEdit:
    """Replace the content of `path` (a host path) with `after`. `before` is None for a new file.

    `mode` applies to a new file only; an existing file keeps its mode and owner.
    """

    path: str
    before: str | None
    after: str
    mode: int = 0o644

    @property
    def diff(self) -> str:
        import difflib

        a = [] if self.before is None else self.before.splitlines(keepends=True)
        b = self.after.splitlines(keepends=True)
        # A last line without a newline would glue itself to the next diff line.
        if a and not a[-1].endswith("\n"):
            a[-1] += "\n\\ No newline at end of file\n"
        if b and not b[-1].endswith("\n"):
            b[-1] += "\n\\ No newline at end of file\n"
        return "".join(
            difflib.unified_diff(a, b, fromfile=f"a{self.path}" if self.before is not None else "/dev/null",
                                 tofile=f"b{self.path}")
        )


@dataclass(slots=True, frozen=True, kw_only=True)
class DeviceNode:
    """Create the character device `path` (a host path) as ``major:minor`` with `mode` and owner."""

    path: str
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0

    @property
    def argv(self) -> tuple[str, ...]:
        """The equivalent shell command, for the plan's display."""
        return ("mknod", "-m", f"{self.mode:o}", self.path, "c", str(self.major), str(self.minor))


@dataclass(slots=True, frozen=True, kw_only=True)
class Symlink:
    """Create the symlink `path` -> `target` (a host path); an existing wrong link is replaced."""

    path: str
    target: str

    @property
    def argv(self) -> tuple[str, ...]:
        return ("ln", "-sfn", self.target, self.path)


FsAction = DeviceNode | Symlink


@dataclass(slots=True, frozen=True, kw_only=True)
class Command:
    """A command to run. `live` commands act on the running system (reload, modprobe) and are skipped
    under ``--root`` other than ``/``. `confirm` commands (e.g. `systemctl restart docker`, which stops
    running containers) run only when ``ctx.confirm`` answers yes to the `confirm` question; ``--yes``
    alone does not run them."""

    argv: tuple[str, ...]
    description: str
    needs_root: bool = True
    live: bool = True
    confirm: str | None = None


PlanItem = FileEdit | DeviceNode | Symlink | Command
"""One step of a plan."""


@dataclass(slots=True, frozen=True, kw_only=True)
class Plan:
    """What a fix will do. An empty plan (no edits, no actions, no commands) means there is nothing to do.

    `data` carries values the fix's own apply needs (a daemon pid, a runtime name); it is never shown.
    `choices` (name -> what it does) is set when the fix needs the person to pick one first
    (``ctx.choice``); such a plan has nothing to apply until one is picked. `sequence`, when set, is the
    exact order of the steps (see :meth:`in_order`).
    """

    fix_id: str
    edits: tuple[FileEdit, ...] = ()
    commands: tuple[Command, ...] = ()
    notes: tuple[str, ...] = ()
    needs_root: bool = False
    guided: bool = False
    actions: tuple[FsAction, ...] = ()
    reboot_required: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, str] = field(default_factory=dict)
    sequence: tuple[PlanItem, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.edits and not self.commands and not self.actions

    def ordered(self) -> list[PlanItem]:
        """Everything to do, in the order apply does it: `sequence` when set, else edits, actions, commands."""
        if self.sequence:
            return list(self.sequence)
        return [*self.edits, *self.actions, *self.commands]

    @classmethod
    def in_order(cls, fix_id: str, items: Sequence[PlanItem], **kwargs: Any) -> Plan:
        """A plan whose steps run exactly in the order of `items` (a command may come before an edit)."""
        return cls(
            fix_id=fix_id,
            edits=tuple(i for i in items if isinstance(i, FileEdit)),
            actions=tuple(i for i in items if isinstance(i, DeviceNode | Symlink)),
            commands=tuple(i for i in items if isinstance(i, Command)),
            sequence=tuple(items),
            **kwargs,
        )


@dataclass(slots=True, kw_only=True)
class ApplyResult:
    """What apply did. `changed` lists host paths written or created, `backups` maps each changed file to
    its backup (host path), `skipped` says what was left out and why, `messages` is the rest of the story
    for the person (reload done, reboot needed)."""

    fix_id: str
    ok: bool
    changed: list[str] = field(default_factory=list)
    backups: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    messages: list[str] = field(default_factory=list)
    commands_run: list[tuple[str, ...]] = field(default_factory=list)
    reboot_required: bool = False


class FixContext:
    """What a fix sees: the host facts, the check options, and whether it may act on the live system.

    - `assume_yes`: the person said ``--yes`` for the safe fixes (guided steps still need `confirm`).
    - `confirm`: asks a yes/no question; None means nobody can be asked (headless), so anything that
      needs a confirmation is skipped with a note.
    - `choice`: the option picked for a fix that offers several (``cgroup-driver``: ``cdi``/``cgroupfs``).
    - `runtime`: force the Docker runtime to register (``nvidia`` or ``gpudoctor``); None picks.
    - `set_default_runtime`: also set daemon.json ``default-runtime``.
    - `docker_config`: the daemon.json to edit (a host path), instead of the one the daemon uses.
    - `runtime_path`: where gpudoctor's runtime launcher lives (a host path; default
      ``/usr/local/lib/gpudoctor/gpudoctor-runtime``).
    - `runtime_config`: the shim's settings file the launcher names (default: the shim's own default,
      ``/etc/gpudoctor/runtime.toml``).
    - `lock_timeout`: seconds to wait for another fix run's lock (0 fails at once with its PID).
    - `stage_hook`: test hook called at each stage of an atomic write.
    """

    def __init__(
        self,
        *,
        facts: HostFacts,
        options: CheckOptions,
        assume_yes: bool = False,
        confirm: ConfirmCallback | None = None,
        choice: str | None = None,
        runtime: str | None = None,
        set_default_runtime: bool = False,
        docker_config: str | None = None,
        runtime_path: str | None = None,
        runtime_config: str | None = None,
        lock_timeout: float = 0.0,
        stage_hook: StageHook | None = None,
    ) -> None:
        self.facts = facts
        self.options = options
        self.assume_yes = assume_yes
        self.confirm = confirm
        self.choice = choice
        self.runtime = runtime
        self.set_default_runtime = set_default_runtime
        self.docker_config = docker_config
        self.runtime_path = runtime_path
        self.runtime_config = runtime_config
        self.lock_timeout = lock_timeout
        self.stage_hook = stage_hook

    def fresh(self, **changes: Any) -> FixContext:
        """A copy on fresh facts (nothing cached from before an apply), with `changes` to any setting."""
        settings: dict[str, Any] = {
            "facts": self.facts.fresh(),
            "options": self.options,
            "assume_yes": self.assume_yes,
            "confirm": self.confirm,
            "choice": self.choice,
            "runtime": self.runtime,
            "set_default_runtime": self.set_default_runtime,
            "docker_config": self.docker_config,
            "runtime_path": self.runtime_path,
            "runtime_config": self.runtime_config,
            "lock_timeout": self.lock_timeout,
            "stage_hook": self.stage_hook,
        }
        settings.update(changes)
        return FixContext(**settings)

    @property
    def live(self) -> bool:
        """Live actions (reload, modprobe) only when the root is this machine's own /."""
        return self.facts.root.is_live_root

    def ask(self, question: str) -> bool:
        """True when someone was asked `question` and said yes; False when nobody can be asked."""
        return self.confirm is not None and bool(self.confirm(question))


class Fix:
    """Base class for fix-ups. Subclasses set the class attributes and implement plan (and may extend apply).

    `choices` maps option names to a one-line description for fixes that make the person pick one.
    """

    id: str = ""
    title: str = ""
    addresses: tuple[str, ...] = ()
    guided: bool = False
    choices: Mapping[str, str] = {}

    def plan(self, ctx: FixContext) -> Plan:
        raise NotImplementedError

    def apply(self, ctx: FixContext, plan: Plan, on_output: OutputCallback | None = None) -> ApplyResult:
        """Apply `plan` with the shared machinery (lock, backup, atomic write, commands)."""
        from gpudoctor.fixes.apply import apply_plan

        return apply_plan(ctx, plan, on_output)

    def verify(self, ctx: FixContext) -> Sequence[CheckResult]:
        """Re-run the checks this fix addresses, on fresh facts (nothing cached from before the apply)."""
        from gpudoctor.checks import load_checks
        from gpudoctor.doctor import run_doctor

        known = load_checks()
        only = [cid for cid in self.addresses if cid in known]
        if not only:
            return []
        report = run_doctor(ctx.facts.fresh(), options=ctx.options, only=only)
        return report.checks
