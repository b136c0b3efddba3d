"""The check contract: what a check is, what it returns, and the result the runner records.

A check is a function ``(ctx: CheckContext) -> Finding`` registered with :func:`check`. The runner wraps
the Finding into a :class:`CheckResult` with the check's id, group, title, dependencies and duration. Check
ids are stable API: CI users filter on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

from gpudoctor.record import Record, field

if TYPE_CHECKING:
    from gpudoctor.host.facts import HostFacts


class Status(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


# The layers a person reads top to bottom; the TUI's stack view and the text report group by them.
LAYERS: tuple[str, ...] = (
    "hardware",
    "kernel",
    "devices",
    "libraries",
    "toolkit",
    "runtime",
    "container",
)

GROUP_TITLES: dict[str, str] = {
    "driver": "NVIDIA driver",
    "modules": "Kernel modules",
    "devices": "Device nodes",
    "toolkit": "NVIDIA Container Toolkit",
    "runtime": "Container runtimes",
    "parity": "GPU inside a container",
}


class Finding(Record, frozen=False):
    """What a check function returns. `summary` is one line; `evidence` says what was read and what it said."""

    status: Status
    summary: str
    evidence: list[str] = field(default_factory=list)
    remedy: str | None = None
    fixes: list[str] = field(default_factory=list)


def passed(summary: str, evidence: Iterable[str] = (), *, fixes: Iterable[str] = ()) -> Finding:
    return Finding(status=Status.PASS, summary=summary, evidence=list(evidence), fixes=list(fixes))


def warned(
    summary: str, evidence: Iterable[str] = (), *, remedy: str | None = None, fixes: Iterable[str] = ()
) -> Finding:
    return Finding(status=Status.WARN, summary=summary, evidence=list(evidence), remedy=remedy, fixes=list(fixes))


def failed(
    summary: str, evidence: Iterable[str] = (), *, remedy: str | None = None, fixes: Iterable[str] = ()
) -> Finding:
    return Finding(status=Status.FAIL, summary=summary, evidence=list(evidence), remedy=remedy, fixes=list(fixes))


def skipped(reason: str, evidence: Iterable[str] = (), *, remedy: str | None = None) -> Finding:
    """A check that does not apply, or cannot run here. `reason` is the summary line."""
    return Finding(status=Status.SKIP, summary=reason, evidence=list(evidence), remedy=remedy)


class CheckResult(Record):
    """One row of the report. Field names are the JSON report's (schema ``gpudoctor.report/1``)."""

    id: str
    group: str
    title: str
    status: Status
    summary: str
    evidence: tuple[str, ...] = ()
    remedy: str | None = None
    fixes: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    duration_ms: float = 0.0
    layer: str = "hardware"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "remedy": self.remedy,
            "fixes": list(self.fixes),
            "depends_on": list(self.depends_on),
            "duration_ms": round(self.duration_ms, 3),
            "layer": self.layer,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            id=str(data["id"]),
            group=str(data["group"]),
            title=str(data["title"]),
            status=Status(data["status"]),
            summary=str(data["summary"]),
            evidence=tuple(str(e) for e in data.get("evidence", ())),
            remedy=data.get("remedy"),
            fixes=tuple(str(f) for f in data.get("fixes", ())),
            depends_on=tuple(str(d) for d in data.get("depends_on", ())),
            duration_ms=float(data.get("duration_ms", 0.0)),
            layer=str(data.get("layer", "hardware")),
        )


class CheckOptions(Record, frozen=False):
    """User options that checks may read. Live probes are off when `offline`."""

    offline: bool = False
    docker_host: str | None = None
    image: str = "nvidia/cuda:12.4.1-base-ubuntu22.04"
    pull: bool = False
    timeout: float = 10.0


class CheckContext:
    """What a check sees: the host facts, the options, and the results of the checks it depends on."""

    def __init__(self, *, host: HostFacts, options: CheckOptions, results: Mapping[str, CheckResult]) -> None:
        self.host = host
        self.options = options
        self._results = results

    def result(self, check_id: str) -> CheckResult | None:
        """The result of an earlier check (a dependency is always finished before its dependents run)."""
        return self._results.get(check_id)

    @property
    def offline(self) -> bool:
        return self.options.offline


CheckFunc = Callable[[CheckContext], Finding]


class CheckSpec(Record):
    """A registered check. `live` checks need a live probe and are skipped under ``--offline``."""

    id: str
    title: str
    func: CheckFunc
    depends_on: tuple[str, ...] = ()
    layer: str = "hardware"
    live: bool = False

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


REGISTRY: dict[str, CheckSpec] = {}


def check(
    id: str, *, title: str, depends_on: Iterable[str] = (), layer: str, live: bool = False
) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check function under a stable id."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r} for check {id}")

    def register(func: CheckFunc) -> CheckFunc:
        if id in REGISTRY:
            raise ValueError(f"check id {id} registered twice")
        REGISTRY[id] = CheckSpec(id=id, title=title, func=func, depends_on=tuple(depends_on), layer=layer, live=live)
        return func

    return register
