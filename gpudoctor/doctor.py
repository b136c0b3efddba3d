"""Run the doctor: open the host, run the checks, build the Report. Shared by the CLI and the TUI."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone

from gpudoctor.checks import load_checks
from gpudoctor.checks.base import CheckOptions
from gpudoctor.checks.runner import EventCallback, run_checks, select_checks
from gpudoctor.host.facts import HostFacts
from gpudoctor.report.model import Report


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


def run_doctor(
    facts: HostFacts,
    *,
    options: CheckOptions,
    only: Iterable[str] = (),
    skip: Iterable[str] = (),
    on_event: EventCallback | None = None,
) -> Report:
    """Run the selected checks against `facts` and return the finished Report."""
    from gpudoctor.host.model import host_summary

    specs = load_checks()
    try:
        run_ids, reported = select_checks(specs, only=only, skip=skip)
    except KeyError as exc:
        known = ", ".join(sorted({s.group for s in specs.values()}))
        raise UsageError(f"unknown check id or group: {exc.args[0]} (groups: {known}; see --list-checks)") from None
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    results = run_checks(specs, host=facts, options=options, ids=run_ids, on_event=on_event)
    reported_set = set(reported)
    return Report(
        checks=[r for r in results if r.id in reported_set],
        host=host_summary(facts),
        generated_at=generated,
        duration_ms=(time.perf_counter() - start) * 1000.0,
    )
