"""The fix registry agrees with the check registry."""

from __future__ import annotations

import re
from pathlib import Path

import gpudoctor
from gpudoctor.checks import load_checks
from gpudoctor.fixes import FIXES, fixes_for_check
from gpudoctor.fixes.registry import apply_order, get_fix


def test_every_fix_addresses_registered_checks() -> None:
    checks = load_checks()
    for fix in FIXES.values():
        assert fix.id and fix.title and fix.addresses
        assert set(fix.addresses) <= set(checks), fix.id
        for cid in fix.addresses:
            assert fix in fixes_for_check(cid)


def test_every_fix_id_a_check_names_exists() -> None:
    # Checks name fixes in their findings (`fixes=[...]`); each such id must be a registered fix.
    named: set[str] = set()
    for path in (Path(gpudoctor.__file__).parent / "checks").glob("*.py"):
        for match in re.finditer(r"fixes=\[([^\]]*)\]", path.read_text()):
            named.update(re.findall(r'"([a-z-]+)"', match.group(1)))
    assert named, "no check names a fix"
    assert named <= set(FIXES), named - set(FIXES)


def test_apply_order_and_lookup() -> None:
    assert apply_order(["docker-runtime", "device-nodes", "docker-runtime", "nope"]) == ["device-nodes", "docker-runtime"]
    assert get_fix("toolkit-config").id == "toolkit-config"
    assert fixes_for_check("no.such.check") == []
