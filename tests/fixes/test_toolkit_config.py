"""toolkit-config: the ldconfig path for this distro, as a one-line edit."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudoctor.fixes.base import FixError
from gpudoctor.fixes.render import render_plan
from gpudoctor.fixes.toolkit_config import TOOLKIT_CONFIG, ToolkitConfigFix
from tests.fixes.helpers import STUB, assert_golden, ctx_for, normalize, write_files
from tests.scenarios.runtime_fragments import toolkit_config_text

DEBIAN = {"/sbin/ldconfig": STUB, "/sbin/ldconfig.real": STUB}
RPM = {"/sbin/ldconfig": STUB}

COMMENTED = """# my notes about this file
disable-require = false

[nvidia-container-cli]
environment = []
#ldconfig = "@/sbin/ldconfig.real"
load-kmods = true   # keep

[nvidia-container-runtime]
log-level = "info"
"""

SCENARIOS: dict[str, dict[str, str]] = {
    # The classic: a Debian-built config on an RPM distro.
    "rpm-with-ldconfig-real": {**RPM, TOOLKIT_CONFIG: toolkit_config_text(ldconfig="@/sbin/ldconfig.real")},
    # Debian/Ubuntu where ldconfig.real does not exist (a minimal image): plain ldconfig.
    "debian-without-ldconfig-real": {**RPM, TOOLKIT_CONFIG: toolkit_config_text(ldconfig="@/usr/bin/ldconfig")},
    # A wrong path on a host that has ldconfig.real: that one is preferred.
    "debian-wrong-path": {**DEBIAN, TOOLKIT_CONFIG: toolkit_config_text(ldconfig="@/nonexistent/ldconfig")},
    # Only a commented-out default: the line goes right below it; every comment stays.
    "commented-out-key": {**RPM, TOOLKIT_CONFIG: COMMENTED},
    "no-table": {**RPM, TOOLKIT_CONFIG: 'disable-require = false\n'},
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_diff_then_idempotent(tmp_path: Path, name: str) -> None:
    root = write_files(tmp_path / "root", SCENARIOS[name])
    fix = ToolkitConfigFix()
    plan = fix.plan(ctx_for(root))
    assert_golden(f"toolkit-config/{name}.txt", normalize(render_plan(plan, fix, live=False), root))
    result = fix.apply(ctx_for(root), plan)
    assert result.ok, result.error
    assert fix.plan(ctx_for(root)).empty
    before = SCENARIOS[name][TOOLKIT_CONFIG].splitlines()
    after = (root / TOOLKIT_CONFIG.lstrip("/")).read_text().splitlines()
    # Every other line (comments included) is still there, in order; exactly one live ldconfig line.
    kept = [ln for ln in before if not ln.startswith("ldconfig =")]
    rest = iter(after)
    assert all(any(ln == other for other in rest) for ln in kept)
    assert [ln for ln in after if ln.startswith("ldconfig =")] == [f'ldconfig = "{_expected(name)}"']


def _expected(name: str) -> str:
    return "@/sbin/ldconfig.real" if name.startswith("debian-wrong") else "@/sbin/ldconfig"


def test_a_working_value_is_kept(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {**DEBIAN, TOOLKIT_CONFIG: toolkit_config_text(ldconfig="@/sbin/ldconfig.real")})
    assert ToolkitConfigFix().plan(ctx_for(root)).empty


def test_no_ldconfig_at_all_is_refused(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {TOOLKIT_CONFIG: toolkit_config_text(ldconfig="@/sbin/ldconfig.real")})
    with pytest.raises(FixError, match="no ldconfig under"):
        ToolkitConfigFix().plan(ctx_for(root))


def test_invalid_toml_is_refused_with_position(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {**RPM, TOOLKIT_CONFIG: '[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig\n'})
    with pytest.raises(FixError) as info:
        ToolkitConfigFix().plan(ctx_for(root))
    assert str(info.value).startswith(f"{TOOLKIT_CONFIG}:2:")
    assert "not valid TOML" in str(info.value)
