"""The toolkit/runtime checks through the real CLI: `gpudoctor --check --json --offline --root T`.

Also: the live checks (`runtime.docker_daemon`, `parity.nvidia_smi`) are registered as live, after the
file checks, and skip under --offline with that reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from gpudoctor.checks import load_checks
from tests.scenarios import runtime_fragments as frag
from tests.scenarios.runtime_fragments import build_host, remove

OURS = ("toolkit", "runtime", "parity")


def _cli(root: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "gpudoctor", "--check", "--json", "--offline", "--root", str(root),
         "--only", ",".join(OURS), *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.stderr == "", proc.stderr
    report = json.loads(proc.stdout)
    schema = json.loads(resources.files("gpudoctor.report").joinpath("schema.json").read_text())
    jsonschema.validate(report, schema)
    return proc.returncode, report


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


def test_healthy_host_passes_every_file_check_and_skips_the_live_ones(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    code, report = _cli(root)
    assert _statuses(report) == {
        "toolkit.installed": "pass",
        "toolkit.config": "pass",
        "runtime.docker_config": "pass",
        "runtime.containerd": "pass",
        "runtime.cdi": "pass",
        "runtime.cgroups": "pass",
        "runtime.docker_daemon": "skip",
        "parity.nvidia_smi": "skip",
    }
    assert code == 0
    live = {c["id"]: c for c in report["checks"]}
    assert "--offline" in live["runtime.docker_daemon"]["summary"]


def test_broken_daemon_json_exits_1_with_the_position(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.daemon_json_invalid())
    code, report = _cli(root)
    assert code == 1
    docker = next(c for c in report["checks"] if c["id"] == "runtime.docker_config")
    assert docker["status"] == "fail"
    assert docker["evidence"] == [f"{frag.DAEMON_JSON}:4:9: invalid JSON: Expecting ',' delimiter"]
    assert str(root) not in json.dumps(report["checks"]), "evidence must name host paths, not --root paths"


def test_wrong_ldconfig_and_stale_cdi_fail_together(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.rpm_toolkit_with_debian_ldconfig(), frag.cdi_spec(driver_version="535.104.05"))
    remove(root, "/sbin/ldconfig.real")
    code, report = _cli(root)
    assert code == 1
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["toolkit.config"]["status"] == "fail"
    assert by_id["toolkit.config"]["fixes"] == ["toolkit-config"]
    assert by_id["runtime.cdi"]["status"] == "fail"
    assert by_id["runtime.cdi"]["fixes"] == ["cdi-spec"]
    assert any("535.104.05" in e for e in by_id["runtime.cdi"]["evidence"])


def test_cgroup_warning_gates_only_with_fail_on_warn(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.toolkit_config(mode="legacy"))
    remove(root, frag.CDI_SPEC)
    code, report = _cli(root)
    assert _statuses(report)["runtime.cgroups"] == "warn"
    assert code == 0
    code, _ = _cli(root, "--fail-on", "warn")
    assert code == 1


def test_live_checks_are_registered_live_with_their_dependencies() -> None:
    specs = load_checks()
    assert specs["runtime.docker_daemon"].live and specs["parity.nvidia_smi"].live
    assert "runtime.docker_daemon" in specs["parity.nvidia_smi"].depends_on
    assert specs["runtime.docker_daemon"].depends_on == ()  # the direct route needs no toolkit
    assert specs["toolkit.installed"].depends_on == ("driver.installed",)
    for cid in ("toolkit.config", "runtime.docker_config", "runtime.containerd", "runtime.cgroups"):
        assert specs[cid].depends_on == ("toolkit.installed",), cid
    assert specs["runtime.cdi"].depends_on == ("driver.installed", "driver.loaded")
