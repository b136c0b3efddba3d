"""Helpers for the fix tests: fake roots, contexts, and golden files."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from gpudoctor.checks.base import CheckOptions
from gpudoctor.fixes.base import ApplyResult, Fix, FixContext, Plan
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("GPUDOCTOR_UPDATE_GOLDEN") == "1"
STUB = "#!/bin/sh\nexit 0\n"


def write_files(root: Path, files: Mapping[str, str | bytes], *, mode: int = 0o644) -> Path:
    """Write host paths under `root`. A value starting with '#!' becomes an executable."""
    for host_path, content in files.items():
        real = root / host_path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        real.write_bytes(data)
        real.chmod(0o755 if data.startswith(b"#!") else mode)
    return root


def ctx_for(root: Path | str, **kwargs: object) -> FixContext:
    """A FixContext on an offline fake root."""
    facts = HostFacts(root=HostRoot(str(root), offline=True))
    return FixContext(facts=facts, options=CheckOptions(offline=True), **kwargs)  # type: ignore[arg-type]


def plan_and_apply(fix: Fix, root: Path | str, **kwargs: object) -> tuple[Plan, ApplyResult]:
    ctx = ctx_for(root, **kwargs)
    plan = fix.plan(ctx)
    return plan, fix.apply(ctx, plan)


def normalize(text: str, root: Path | str | None = None) -> str:
    """Make output comparable across machines: this interpreter's paths and the fake root's location."""
    from gpudoctor.engine.launcher import entry_path

    out = text.replace(entry_path(), "<ENTRY>").replace(sys.executable, "<PYTHON>")
    if root is not None:
        out = out.replace(str(root), "<ROOT>")
    return out


def assert_golden(name: str, text: str) -> None:
    """Compare with tests/*/golden/<name>; GPUDOCTOR_UPDATE_GOLDEN=1 (re)writes the file instead."""
    path = GOLDEN / name
    if UPDATE or not path.exists():
        if not UPDATE:
            raise AssertionError(f"missing golden file {path}; run with GPUDOCTOR_UPDATE_GOLDEN=1 to create it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"output differs from {path} (GPUDOCTOR_UPDATE_GOLDEN=1 rewrites it)"
