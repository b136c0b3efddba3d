"""The Report: the checks' results plus a summary of the host, as the JSON schema ``gpudoctor.report/1`` fixes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gpudoctor import __version__
from gpudoctor.checks.base import CheckResult, Status
from gpudoctor.record import Record, field

SCHEMA_ID = "gpudoctor.report/1"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130


class Report(Record, frozen=False):
    """A finished run. `host` is the JSON report's ``host`` object, already plain data."""

    checks: list[CheckResult]
    host: dict[str, Any]
    generated_at: str
    duration_ms: float
    tool_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for res in self.checks:
            counts[res.status.value] += 1
        return counts

    @property
    def status(self) -> Status:
        """fail > error > warn > pass. Skips alone never fail a run."""
        c = self.counts
        if c["fail"]:
            return Status.FAIL
        if c["error"]:
            return Status.ERROR
        if c["warn"]:
            return Status.WARN
        return Status.PASS

    def exit_code(self, *, fail_on: str = "fail") -> int:
        """0 = no failures (warnings allowed unless fail_on == 'warn'); 1 = failed; 3 = a check errored."""
        st = self.status
        if st is Status.FAIL:
            return EXIT_FAILED
        if st is Status.ERROR:
            return EXIT_ERROR
        if st is Status.WARN and fail_on == "warn":
            return EXIT_FAILED
        return EXIT_OK

    def by_id(self) -> dict[str, CheckResult]:
        return {r.id: r for r in self.checks}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "tool": {"name": "gpudoctor", "version": self.tool_version},
            "generated_at": self.generated_at,
            "duration_ms": round(self.duration_ms, 3),
            "host": self.host,
            "summary": {"status": self.status.value, "counts": self.counts},
            "checks": [r.to_dict() for r in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            checks=[CheckResult.from_dict(c) for c in data.get("checks", [])],
            host=dict(data.get("host", {})),
            generated_at=str(data.get("generated_at", "")),
            duration_ms=float(data.get("duration_ms", 0.0)),
            tool_version=str(data.get("tool", {}).get("version", __version__)),
        )


def group_results(results: Sequence[CheckResult]) -> dict[str, list[CheckResult]]:
    """Results grouped by check group, in first-seen order."""
    groups: dict[str, list[CheckResult]] = {}
    for res in results:
        groups.setdefault(res.group, []).append(res)
    return groups


_SEVERITY = {Status.PASS: 0, Status.SKIP: 1, Status.WARN: 2, Status.ERROR: 3, Status.FAIL: 4}


def worst(statuses: Sequence[Status]) -> Status:
    """The status a group shows: its most severe problem; otherwise pass if anything passed (skips beside
    passes are not a problem); skip only when everything was skipped; pass for an empty group."""
    if not statuses:
        return Status.PASS
    top = max(statuses, key=lambda s: _SEVERITY[s])
    if top is Status.SKIP and Status.PASS in statuses:
        return Status.PASS
    return top
