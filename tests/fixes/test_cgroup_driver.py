"""cgroup-driver: a guided choice between CDI, cgroupfs and /dev/char links; each turns runtime.cgroups green."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from gpudoctor.engine.launcher import entry_path
from gpudoctor.fixes.cgroup_driver import CHOICES, CgroupDriverFix
from gpudoctor.fixes.render import render_plan
from tests.fixes.helpers import assert_golden, ctx_for, normalize
from tests.scenarios.builder import build_into, healthy_host
from tests.scenarios.runtime_fragments import doctor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scenario hosts have device nodes (mknod needs root)")


def _host(tmp_path: Path) -> Path:
    """cgroup v2 + systemd driver + the legacy hook, no CDI spec, no /dev/char links: GPUs vanish on reload."""
    sc = (
        healthy_host(2)
        .without("/etc/cdi/nvidia.yaml", "/etc/containerd/config.toml")
        .with_files({sys.executable: "#!/bin/sh\n", entry_path(): "#\n"}, mode=0o755)
    )
    root = build_into(tmp_path / "host", sc)
    assert doctor(root, "runtime.cgroups")["runtime.cgroups"].status.value == "warn"
    return root


def _without_spec_body(text: str) -> str:
    """The CDI spec is the engine's output (its own tests pin it); here only that it is written matters."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if skipping and line.startswith("    "):
            continue
        skipping = line.strip() == "create /etc/cdi/nvidia.yaml:"
        out.append(line)
        if skipping:
            out.append("    (the engine's CDI spec for this host)\n")
    return "".join(out)


def _yes(answers: list[str]) -> object:
    def confirm(question: str) -> bool:
        answers.append(question)
        return True

    return confirm


def test_without_a_choice_the_plan_offers_the_choices(tmp_path: Path) -> None:
    root = _host(tmp_path)
    plan = CgroupDriverFix().plan(ctx_for(root))
    assert plan.guided and plan.empty and dict(plan.choices) == CHOICES


@pytest.mark.parametrize("choice", sorted(CHOICES))
def test_each_choice_makes_the_check_pass(tmp_path: Path, choice: str) -> None:
    root = _host(tmp_path)
    fix = CgroupDriverFix()
    plan = fix.plan(ctx_for(root, choice=choice))
    assert_golden(f"cgroup-driver/{choice}.txt", _without_spec_body(normalize(render_plan(plan, fix, live=False), root)))
    # Guided: without someone to confirm, nothing happens, even with --yes.
    refused = fix.apply(ctx_for(root, choice=choice, assume_yes=True), plan)
    assert not refused.ok and "guided fix" in (refused.error or "")
    asked: list[str] = []
    result = fix.apply(ctx_for(root, choice=choice, confirm=_yes(asked)), plan)
    assert result.ok, result.error
    assert asked  # every step asked
    assert doctor(root, "runtime.cgroups")["runtime.cgroups"].status.value == "pass"
    assert fix.plan(ctx_for(root, choice=choice)).empty
    if choice == "cgroupfs":
        assert json.loads((root / "etc/docker/daemon.json").read_text())["exec-opts"] == [
            "native.cgroupdriver=cgroupfs"]
        assert any("systemctl restart docker" in s for s in result.skipped)  # live: not under --root


def test_a_no_changes_nothing(tmp_path: Path) -> None:
    root = _host(tmp_path)
    fix = CgroupDriverFix()
    before = (root / "etc/nvidia-container-runtime/config.toml").read_bytes()
    result = fix.apply(ctx_for(root, choice="cdi", confirm=lambda q: False), fix.plan(ctx_for(root, choice="cdi")))
    assert result.ok and result.changed == []
    assert (root / "etc/nvidia-container-runtime/config.toml").read_bytes() == before
    assert not (root / "etc/cdi/nvidia.yaml").exists()
