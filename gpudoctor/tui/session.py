"""DoctorSession: what the TUI drives. One host, the check options, and the doctor and fixes around them.

It holds no Textual objects, so tests, the benchmark and the screenshot script use it directly. The TUI
calls :meth:`run`, :meth:`plan` and :meth:`apply` from worker threads only; each run works on fresh
HostFacts (nothing cached from an earlier run survives a fix).
"""

from __future__ import annotations

import copy
import os
import shlex
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from gpudoctor.checks import load_checks
from gpudoctor.checks.base import CheckOptions, CheckResult, CheckSpec
from gpudoctor.checks.runner import EventCallback, select_checks
from gpudoctor.doctor import run_doctor
from gpudoctor.host.facts import HostFacts
from gpudoctor.report.model import Report

if TYPE_CHECKING:
    from gpudoctor.fixes.base import ApplyResult, ConfirmCallback, Fix, FixContext, OutputCallback, Plan


class DoctorSession:
    """The host being diagnosed and how. `demo` names the bundled demo scenario, if this is one.

    `only`/`skip` are ``--only``/``--skip`` (ids or groups); `root_arg` is ``--root`` as given, for the
    commands the TUI shows a person to run by hand.
    """

    def __init__(
        self,
        *,
        facts: HostFacts,
        options: CheckOptions,
        only: Sequence[str] = (),
        skip: Sequence[str] = (),
        demo: str | None = None,
        root_arg: str = "/",
    ) -> None:
        self.options = options
        self.only = tuple(only)
        self.skip = tuple(skip)
        self.demo = demo
        self.root_arg = root_arg
        self._facts = facts
        self._lock = threading.Lock()

    # -- the checks -----------------------------------------------------------------------------------------

    @property
    def facts(self) -> HostFacts:
        """The facts of the latest run (a fix plans against these)."""
        with self._lock:
            return self._facts

    @property
    def specs(self) -> dict[str, CheckSpec]:
        return load_checks()

    def reported_ids(self) -> list[str]:
        """The check ids this session shows, in display order (raises KeyError for an unknown id)."""
        return select_checks(self.specs, only=self.only, skip=self.skip)[1]

    def run(
        self, *, ids: Iterable[str] | None = None, on_event: EventCallback | None = None, pull: bool = False
    ) -> Report:
        """Run the session's checks (or just `ids`, which must be among them) on fresh facts.

        `pull` lets `parity.nvidia_smi` pull a missing image for this run only: pass it only after the
        person said yes (the session's own options keep theirs, ``--pull`` or not)."""
        with self._lock:
            self._facts = self._facts.fresh()
            facts = self._facts
        only = list(ids) if ids is not None else list(self.only)
        options = self.options
        if pull:
            options = copy.copy(options)  # the session's own options never change
            options.pull = True
        return run_doctor(facts, options=options, only=only, skip=self.skip, on_event=on_event)

    def host_summary(self) -> dict[str, object]:
        """The report's ``host`` object for the header, before the first run has finished."""
        from gpudoctor.host.model import host_summary

        return host_summary(self.facts)

    def affected(self, check_ids: Iterable[str]) -> list[str]:
        """`check_ids` plus every reported check that depends on them, directly or not (display order)."""
        specs = self.specs
        wanted = set(check_ids)
        changed = True
        while changed:
            changed = False
            for cid, spec in specs.items():
                if cid not in wanted and wanted.intersection(spec.depends_on):
                    wanted.add(cid)
                    changed = True
        return [cid for cid in self.reported_ids() if cid in wanted]

    # -- fixes ---------------------------------------------------------------------------------------------

    def fixes_for(self, result: CheckResult) -> list[Fix]:
        """The fixes a result names (its ``fixes``), else the registered fixes for its check."""
        from gpudoctor.fixes import registry

        named = [registry.FIXES[fid] for fid in result.fixes if fid in registry.FIXES]
        return named or registry.fixes_for_check(result.id)

    def fix_context(self, *, confirm: ConfirmCallback | None = None, choice: str | None = None) -> FixContext:
        """A FixContext on fresh facts. The person already said yes in the TUI, hence `assume_yes`;
        guided steps and risky commands still go through `confirm`."""
        from gpudoctor.fixes.base import FixContext

        return FixContext(facts=self.facts.fresh(), options=self.options, assume_yes=True, confirm=confirm,
                          choice=choice)

    def plan(self, fix: Fix, *, choice: str | None = None) -> Plan:
        """The fix's plan for this host (reads only). Raises FixError when it cannot be planned."""
        return fix.plan(self.fix_context(choice=choice))

    def apply(
        self,
        fix: Fix,
        plan: Plan,
        *,
        on_output: OutputCallback,
        confirm: ConfirmCallback | None,
        choice: str | None = None,
    ) -> ApplyResult:
        """Apply `plan` (lock, backups, atomic writes, commands), streaming progress to `on_output`."""
        return fix.apply(self.fix_context(confirm=confirm, choice=choice), plan, on_output)

    def lacks_root(self, plan: Plan) -> bool:
        """True when the plan needs root and gpudoctor does not have it. (Fixes say they need root only
        for the live /: under ``--root DIR`` they write as whoever may write DIR.)"""
        return plan.needs_root and os.geteuid() != 0

    def shown(self, text: str) -> str:
        """`text` as the TUI shows it: in a demo, the temporary directory's path reads ``<demo host>``."""
        if self.demo is None:
            return text
        return text.replace(str(self.facts.root.root), "<demo host>")

    def fix_command(self, fix_id: str) -> str:
        """The command line that applies a fix from a root shell (shown when the TUI lacks root)."""
        argv = ["sudo", "gpudoctor", "fix", fix_id]
        if self.root_arg not in ("", "/"):
            argv += ["--root", self.root_arg]
        return shlex.join(argv)
