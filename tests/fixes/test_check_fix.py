"""`gpudoctor --check --fix --yes --root T` on broken fake hosts: the fixable failures pass on the next --check.

Also `gpudoctor fix` itself: --list, --dry-run, unknown ids, and cdi-spec against a real scenario host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.engine.launcher import entry_path
from gpudoctor.fixes.cdi_spec import CdiSpecFix
from gpudoctor.fixes.registry import FIXES
from tests.scenarios import runtime_fragments as rtf
from tests.scenarios.builder import Scenario, build_into, healthy_host

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scenario hosts have device nodes (mknod needs root)")

# The fake host has gpudoctor installed where this one is: the CDI spec's hooks run that Python.
GPUDOCTOR_ON_HOST = {sys.executable: "#!/bin/sh\nexit 0\n", entry_path(): "# gpudoctor's hook entry\n"}


def _gpudoctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpudoctor", *args], capture_output=True, text=True, timeout=300)


def _check(root: Path) -> dict[str, dict[str, Any]]:
    res = _gpudoctor("--check", "--json", "--offline", "--root", str(root))
    assert res.returncode in (0, 1), res.stderr
    return {c["id"]: c for c in json.loads(res.stdout)["checks"]}


def broken_host() -> Scenario:
    """Four layers broken at once, each in a way a safe fix can repair under --root."""
    return (
        healthy_host(2)
        .without("/dev/nvidia1", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/sbin/ldconfig.real")
        .with_tree(rtf.merge(
            rtf.toolkit_config(ldconfig="@/sbin/ldconfig.real"),   # D1: Debian's path, not on this host
            rtf.daemon_json_missing_runtime_binary(),              # C6: a runtime whose binary is gone
            rtf.cdi_spec(driver_version="535.104.05", gpu_minors=[0, 1]),  # I1: spec for an old driver
        ))
        .with_files(GPUDOCTOR_ON_HOST, mode=0o755)
        .named("broken_for_fix")
    )


def test_check_fix_turns_the_fixable_failures_into_passes(tmp_path: Path) -> None:
    root = build_into(tmp_path / "host", broken_host())
    before = _check(root)
    fixable = {cid: c for cid, c in before.items() if c["status"] == "fail" and c["fixes"]}
    assert {"devices.gpus", "devices.uvm", "toolkit.config", "runtime.docker_config", "runtime.cdi"} <= set(fixable)
    safe = {cid for cid, c in fixable.items() if any(not FIXES[f].guided for f in c["fixes"])}

    res = _gpudoctor("--check", "--fix", "--yes", "--offline", "--root", str(root))
    assert "Traceback" not in res.stdout + res.stderr
    assert res.returncode in (0, 1), res.stderr
    after = _check(root)
    still = {cid: after[cid]["summary"] for cid in safe if after[cid]["status"] != "pass"}
    assert not still, still
    # Nothing that passed before was broken by the fixes.
    regressed = {cid for cid, c in before.items() if c["status"] == "pass" and after[cid]["status"] != "pass"}
    assert not regressed

    # A second --check --fix finds nothing left to do for those checks.
    again = _gpudoctor("--check", "--fix", "--yes", "--offline", "--root", str(root))
    assert "wrote " not in again.stderr and "created " not in again.stderr


def test_cdi_spec_regenerates_a_stale_spec_with_host_paths(tmp_path: Path) -> None:
    root = build_into(tmp_path / "host", healthy_host(2).with_tree(
        rtf.cdi_spec(driver_version="535.104.05", gpu_minors=[0, 1])).with_files(GPUDOCTOR_ON_HOST, mode=0o755))
    assert _check(root)["runtime.cdi"]["status"] == "fail"
    from tests.fixes.helpers import ctx_for

    fix = CdiSpecFix()
    plan = fix.plan(ctx_for(root))
    assert [e.path for e in plan.edits] == ["/etc/cdi/nvidia.yaml"]
    assert str(root) not in plan.edits[0].after  # host paths, never --root-prefixed
    result = fix.apply(ctx_for(root), plan)
    assert result.ok, result.error
    assert _check(root)["runtime.cdi"]["status"] == "pass"
    assert fix.plan(ctx_for(root)).empty


def test_fix_list_names_every_fix() -> None:
    res = _gpudoctor("fix", "--list")
    assert res.returncode == 0
    for fid, fix in FIXES.items():
        assert fid in res.stdout and fix.title in res.stdout


def test_unknown_fix_is_a_usage_error() -> None:
    res = _gpudoctor("fix", "no-such-fix")
    assert res.returncode == 2
    assert "unknown fix no-such-fix" in res.stderr


def test_dry_run_prints_diffs_and_changes_nothing(tmp_path: Path) -> None:
    root = build_into(tmp_path / "host", broken_host())
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    res = _gpudoctor("fix", "device-nodes", "toolkit-config", "docker-runtime", "--dry-run", "--root", str(root))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "-ldconfig = \"@/sbin/ldconfig.real\"" in res.stdout
    assert "+ldconfig = \"@/sbin/ldconfig\"" in res.stdout
    assert "$ mknod -m 666 /dev/nvidia1 c 195 1" in res.stdout
    assert "needs root: yes" in res.stdout
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before
    assert not (root / "var/backups/gpudoctor").exists()


def test_without_yes_and_without_a_terminal_nothing_is_applied(tmp_path: Path) -> None:
    root = build_into(tmp_path / "host", broken_host())
    config = root / "etc/nvidia-container-runtime/config.toml"
    before = config.read_bytes()
    res = subprocess.run([sys.executable, "-m", "gpudoctor", "fix", "toolkit-config", "--root", str(root)],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 1
    assert "Run again with --yes" in res.stdout
    assert config.read_bytes() == before
