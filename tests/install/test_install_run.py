"""Running `gpudoctor install` on fake hosts: steps verify, stop at the first failure, and a rerun resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.checks.base import CheckOptions
from gpudoctor.engine.launcher import entry_path
from gpudoctor.fixes.base import Command, FileEdit, FixContext, Plan
from gpudoctor.fixes.paths import LAUNCHER_PATH
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot
from gpudoctor.install import InstallPlan, InstallStep, StepCheck, build_install_plan, run_install, run_step
from gpudoctor.install.state import STATE_PATH, load_state, save_state
from tests.scenarios import runtime_fragments as rtf
from tests.scenarios.builder import build_into, healthy_host

STUB = "#!/bin/sh\nexit 0\n"
DPKG_STATUS = (
    "Package: docker.io\nStatus: install ok installed\nArchitecture: amd64\nVersion: 20.10.24+dfsg1-1+b3\n\n"
    "Package: runc\nStatus: install ok installed\nVersion: 1.1.5+ds1-1+deb12u1\n"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="scenario hosts have device nodes (mknod needs root)")


def _install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpudoctor", "install", "--yes", "--offline", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=300)


def _host(tmp_path: Path) -> Path:
    """Ubuntu with the driver and Docker 20.10 installed, and no toolkit."""
    sc = healthy_host(2, runtime=False).with_files(
        {"/var/lib/dpkg/status": DPKG_STATUS, sys.executable: STUB, entry_path(): "# gpudoctor\n"}
    ).with_tree(rtf.merge(rtf.docker_engine(bin_dir="/usr/bin"), rtf.mountinfo("v2")))
    return build_into(tmp_path / "host", sc)


def _state(root: Path) -> dict[str, str]:
    data = json.loads((root / STATE_PATH.lstrip("/")).read_text())
    return {k: v["state"] for k, v in data["steps"].items()}


@needs_root
def test_stops_at_the_first_failure_and_resumes_there(tmp_path: Path) -> None:
    root = _host(tmp_path)
    first = _install(root)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "stopped at step 3 (toolkit)" in first.stdout
    assert "it resumes at step 3 (toolkit)" in first.stdout
    assert "its commands were not run: --root is not /" in first.stdout
    assert _state(root) == {"driver": "done", "docker": "done", "toolkit": "failed"}
    # The repository file went in (edits apply under --root); the package commands did not run.
    assert "signed-by=/usr/share/keyrings" in (root / "etc/apt/sources.list.d/nvidia-container-toolkit.list").read_text()
    assert not (root / "etc/docker/daemon.json").exists()

    # The person installs the toolkit on that host; the rerun resumes at step 3.
    for name in rtf.TOOLKIT_BINARIES:
        (root / "usr/bin" / name).write_text(STUB)
        (root / "usr/bin" / name).chmod(0o755)
    second = _install(root)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "driver: done: done in an earlier run" in second.stdout
    assert "toolkit: done" in second.stdout
    assert _state(root) == {"driver": "done", "docker": "done", "toolkit": "done", "register": "done",
                            "reload": "skipped", "verify": "skipped"}
    config = json.loads((root / "etc/docker/daemon.json").read_text())
    assert config == {"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}}

    third = _install(root)
    assert third.returncode == 0
    assert "every step is already in place; nothing to do" in third.stdout


@needs_root
def test_route_gpudoctor_installs_the_launcher_and_the_cdi_spec(tmp_path: Path) -> None:
    root = _host(tmp_path)
    res = _install(root, "--route", "gpudoctor")
    assert res.returncode == 0, res.stdout + res.stderr
    assert os.access(root / LAUNCHER_PATH.lstrip("/"), os.X_OK)
    spec = (root / "etc/cdi/nvidia.yaml").read_text()
    assert "kind: nvidia.com/gpu" in spec and str(root) not in spec
    config = json.loads((root / "etc/docker/daemon.json").read_text())
    assert config == {"runtimes": {"gpudoctor": {"path": LAUNCHER_PATH}}}
    assert _state(root)["engine"] == "done"


def test_a_missing_driver_stops_at_step_1_with_the_instructions(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    res = _install(tmp_path)
    assert res.returncode == 1
    assert "stopped at step 1 (driver)" in res.stdout
    assert "sudo apt-get update && sudo apt-get install -y nvidia-driver firmware-misc-nonfree" in res.stdout
    assert _state(tmp_path) == {"driver": "failed"}


# -- the step API the TUI wizard drives, with steps of our own ----------------------------------------------


def _plan_with(tmp_path: Path, steps: list[InstallStep]) -> InstallPlan:
    plan = build_install_plan(_facts(tmp_path), "nvidia", options=CheckOptions(offline=True))
    plan.steps = steps
    return plan


def _facts(tmp_path: Path) -> HostFacts:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc/os-release").write_text('ID=ubuntu\nVERSION_ID="22.04"\nID_LIKE=debian\n')
    return HostFacts(root=HostRoot(str(tmp_path), offline=True))


def test_run_step_verifies_before_and_after(tmp_path: Path) -> None:
    ctx = FixContext(facts=_facts(tmp_path), options=CheckOptions(offline=True))
    marker = tmp_path / "etc/marker"
    step = InstallStep(
        id="marker", title="write the marker", verify_text="the marker exists", ctx=ctx,
        make_plan=lambda c: Plan.in_order("t", [FileEdit(path="/etc/marker", before=None, after="x\n"),
                                                Command(argv=("true",), description="noop", live=False)]),
        verifier=lambda c: StepCheck(ok=c.facts.root.exists("/etc/marker"), detail="marker"),
    )
    lines: list[str] = []
    result = run_step(step, lines.append)
    assert result.state == "done" and marker.read_text() == "x\n"
    assert lines[:2] == ["wrote /etc/marker (new file)", "$ true"]
    again = run_step(step, lines.append)
    assert again.state == "done" and again.detail.startswith("already in place")


def test_run_install_keeps_state_and_a_damaged_state_file_is_ignored(tmp_path: Path) -> None:
    facts = _facts(tmp_path)
    ctx = FixContext(facts=facts, options=CheckOptions(offline=True))
    flag = tmp_path / "ok"
    steps = [
        InstallStep(id="a", title="a", verify_text="", ctx=ctx, make_plan=lambda c: Plan(fix_id="a"),
                    verifier=lambda c: StepCheck(ok=True, detail="fine")),
        InstallStep(id="b", title="b", verify_text="", ctx=ctx, make_plan=lambda c: Plan(fix_id="b"),
                    verifier=lambda c: StepCheck(ok=flag.exists(), detail="flag file")),
    ]
    plan = _plan_with(tmp_path, steps)
    outcome = run_install(plan)
    assert not outcome.ok and outcome.failed is steps[1]
    assert load_state(facts.root).steps["b"]["state"] == "failed"
    flag.touch()
    assert run_install(plan).ok
    state = load_state(facts.root)
    assert {k: v["state"] for k, v in state.steps.items()} == {"a": "done", "b": "done"}

    (tmp_path / STATE_PATH.lstrip("/")).write_text("{not json")
    damaged = load_state(facts.root)
    assert damaged.steps == {} and damaged.warning and "unreadable" in damaged.warning
    save_state(facts.root, state)
    assert load_state(facts.root).steps == state.steps
