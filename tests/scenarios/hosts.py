"""Built scenario roots shared by a test session, and helpers to run gpudoctor against them.

Building a root costs a kit install, an ``ldconfig -r`` and some mknods, so each scenario is built once
per session (:func:`built_hosts`). Tests must treat those roots as read-only; a test that edits a root
builds its own with :func:`tests.scenarios.builder.build_host`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.builder import Scenario, ScenarioBuildError, build_host, fake_dev_env

REPO_ROOT = Path(__file__).resolve().parents[2]


def require_root() -> None:
    """Skip (with the reason) where fake hosts cannot be built: their device nodes need mknod."""
    if os.geteuid() != 0:
        pytest.skip("building fake hosts needs root: device nodes are made with mknod")


class BuiltHosts:
    """Scenario name -> built root, under one session directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._roots: dict[str, Path] = {}

    def get(self, scenario: Scenario) -> Path:
        require_root()
        if scenario.name not in self._roots:
            try:
                self._roots[scenario.name] = build_host(self.base, scenario)
            except ScenarioBuildError as exc:
                pytest.fail(f"cannot build scenario {scenario.name}: {exc}", pytrace=False)
        return self._roots[scenario.name]


_SESSIONS: dict[Path, BuiltHosts] = {}


def built_hosts(tmp_path_factory: pytest.TempPathFactory) -> BuiltHosts:
    """The session's BuiltHosts (one per pytest base temp directory)."""
    key = tmp_path_factory.getbasetemp()
    if key not in _SESSIONS:
        _SESSIONS[key] = BuiltHosts(tmp_path_factory.mktemp("scenario-hosts"))
    return _SESSIONS[key]


@dataclass(frozen=True, slots=True)
class Run:
    """One `gpudoctor` process: exit code, stdout, stderr, and the JSON report when --json was given."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        data = json.loads(self.stdout)
        assert isinstance(data, dict)
        return data

    def checks(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.report["checks"]}


def run_gpudoctor(args: Sequence[str], *, root: Path | None = None, env: Mapping[str, str] | None = None,
                  live: bool = False) -> Run:
    """Run ``python -m gpudoctor ARGS`` in a fresh process (``--root`` and the fake NVML's /dev are added)."""
    argv = [sys.executable, "-m", "gpudoctor", *args]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("NO_COLOR", None)
    if root is not None:
        argv += ["--root", str(root)]
        if live:
            full_env.update(fake_dev_env(root))
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=REPO_ROOT, timeout=300)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def schema() -> dict[str, Any]:
    import gpudoctor.report

    path = Path(gpudoctor.report.__file__).with_name("schema.json")
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless `report` matches the shipped schema (formats checked too)."""
    import jsonschema

    jsonschema.validate(report, schema(), format_checker=jsonschema.FormatChecker())


def mismatches(checks: Mapping[str, Mapping[str, Any]], *, expected: Mapping[str, str],
               evidence: Mapping[str, str], summary: Mapping[str, str] | None = None) -> list[str]:
    """What differs between a report's checks and a scenario's expectations (empty when all hold)."""
    out: list[str] = []
    for cid, status in expected.items():
        got = checks.get(cid)
        if got is None:
            out.append(f"{cid}: not in the report")
        elif got["status"] != status:
            out.append(f"{cid}: status {got['status']}, expected {status} ({got['summary']})")
    for cid, text in evidence.items():
        lines = checks[cid]["evidence"] if cid in checks else []
        if not any(text in line for line in lines):
            out.append(f"{cid}: no evidence line contains {text!r}; evidence: {lines}")
    for cid, text in (summary or {}).items():
        got_summary = checks[cid]["summary"] if cid in checks else ""
        if text not in got_summary:
            out.append(f"{cid}: summary {got_summary!r} does not contain {text!r}")
    return out
