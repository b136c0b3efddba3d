"""Messages that worker threads post to the app. ``post_message`` is thread-safe; widgets never are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from gpudoctor.checks.base import CheckResult
from gpudoctor.report.model import Report


@dataclass
class HostKnown(Message):
    """The host summary for the header (computed in the worker: it reads the host)."""

    host: dict[str, Any]
    run_id: int


@dataclass
class CheckStarted(Message):
    """A check of run `run_id` started running."""

    check_id: str
    run_id: int


@dataclass
class CheckFinished(Message):
    """A check of run `run_id` finished."""

    result: CheckResult
    run_id: int


@dataclass
class RunFinished(Message):
    """Run `run_id` finished. `ids` is None for a full run, else the checks it re-ran."""

    report: Report
    run_id: int
    ids: tuple[str, ...] | None


@dataclass
class RunFailed(Message):
    """Run `run_id` could not run at all (a bad --only, a crash outside any check)."""

    error: str
    run_id: int


@dataclass
class OutputLine(Message):
    """A line of a fix's or an install step's output."""

    line: str
