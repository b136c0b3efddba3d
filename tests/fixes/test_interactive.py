"""The prompts, on a real terminal (a pty): one confirmation for safe fixes, one per step for guided ones."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.fixes.nouveau_blacklist import BLACKLIST_FILE
from gpudoctor.fixes.toolkit_config import TOOLKIT_CONFIG
from tests.fixes.helpers import STUB, write_files
from tests.scenarios.runtime_fragments import toolkit_config_text


def _on_a_terminal(args: list[str], answers: str) -> subprocess.CompletedProcess[str]:
    """Run gpudoctor with stdin on a pty holding `answers` (what a person would type)."""
    master, slave = pty.openpty()
    try:
        os.write(master, answers.encode())
        return subprocess.run([sys.executable, "-m", "gpudoctor", *args], stdin=slave, capture_output=True,
                              text=True, timeout=120)
    finally:
        os.close(slave)
        os.close(master)


def test_one_confirmation_applies_a_safe_fix(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {"/sbin/ldconfig": STUB,
                                            TOOLKIT_CONFIG: toolkit_config_text(ldconfig="@/sbin/ldconfig.real")})
    res = _on_a_terminal(["fix", "toolkit-config", "--root", str(root)], "y\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Apply toolkit-config? [y/N]" in res.stdout
    assert 'ldconfig = "@/sbin/ldconfig"' in (root / TOOLKIT_CONFIG.lstrip("/")).read_text()


def test_answering_no_changes_nothing(tmp_path: Path) -> None:
    config = toolkit_config_text(ldconfig="@/sbin/ldconfig.real")
    root = write_files(tmp_path / "root", {"/sbin/ldconfig": STUB, TOOLKIT_CONFIG: config})
    res = _on_a_terminal(["fix", "toolkit-config", "--root", str(root)], "n\n")
    assert res.returncode == 1 and "nothing applied" in res.stdout
    assert (root / TOOLKIT_CONFIG.lstrip("/")).read_text() == config


def test_a_guided_fix_asks_at_every_step_even_with_yes(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {"/proc/modules": "nouveau 2355200 0 - Live 0x0\n",
                                            "/usr/bin/dracut": STUB})
    res = _on_a_terminal(["fix", "nouveau-blacklist", "--yes", "--root", str(root)], "y\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Write {BLACKLIST_FILE}? [y/N]" in res.stdout
    assert "`dracut --force` skipped: live action" in res.stdout
    assert "reboot the machine to finish this fix" in res.stdout
    assert (root / BLACKLIST_FILE.lstrip("/")).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="scenario hosts have device nodes (mknod needs root)")
def test_a_choice_is_asked_for_when_none_was_given(tmp_path: Path) -> None:
    # Picking "cgroupfs" by number; then the step prompt (write daemon.json) gets a yes.
    from tests.fixes.test_cgroup_driver import _host

    root = _host(tmp_path)
    res = _on_a_terminal(["fix", "cgroup-driver", "--offline", "--root", str(root)], "2\ny\ny\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "cgroup-driver offers a choice:" in res.stdout
    assert "native.cgroupdriver=cgroupfs" in (root / "etc/docker/daemon.json").read_text()
