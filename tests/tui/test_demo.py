"""The bundled demo hosts: each gives the statuses it promises, offline, with no GPU, gcc or test suite."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.checks.base import CheckOptions
from gpudoctor.cli import main
from gpudoctor.demo import DemoError, materialise, open_demo, scenario_names
from gpudoctor.demo.devroot import DemoRoot
from gpudoctor.demo.hosts import CATALOG, healthy
from gpudoctor.demo.ldcache import build_ld_so_cache
from gpudoctor.doctor import run_doctor
from gpudoctor.host.parsers.ldcache import parse_ld_so_cache

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(CATALOG))
def test_scenario_gives_its_expected_statuses(name: str) -> None:
    with open_demo(name) as demo:
        assert demo.expected, f"{name} promises no statuses"
        report = run_doctor(demo.facts, options=CheckOptions(offline=True))
        got = {r.id: r.status.value for r in report.checks}
        wrong = {cid: (want, got.get(cid)) for cid, want in demo.expected.items() if got.get(cid) != want}
        assert not wrong, f"{name}: (expected, got) {wrong}"
        # Host paths in the report, never the temporary directory.
        assert not any(str(demo.root) in line for r in report.checks for line in (r.summary, *r.evidence))


def test_default_scenario_is_the_broken_one() -> None:
    assert scenario_names()[0] == "broken"


def test_ld_so_cache_reads_back_with_glibc_ldconfig(tmp_path: Path) -> None:
    entries = [("libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"),
               ("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1")]
    data = build_ld_so_cache(entries)
    assert {(e.key, e.value) for e in parse_ld_so_cache(data)} == set(entries)
    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if ldconfig is None:
        pytest.skip("no ldconfig to cross-check with")
    cache = tmp_path / "ld.so.cache"
    cache.write_bytes(data)
    out = subprocess.run([ldconfig, "-p", "-C", str(cache)], capture_output=True, text=True, check=True).stdout
    assert "2 libs found" in out
    for soname, path in entries:
        assert f"{soname} (libc6" in out and f"=> {path}" in out


def test_placeholder_nodes_stat_as_the_devices_they_stand_for(tmp_path: Path) -> None:
    tree = healthy()
    root = tree.write(tmp_path / "host", real_devices=False)
    hr = DemoRoot(root, devices=tree.devices)
    assert (root / "dev/nvidiactl").is_file()  # on disk a placeholder...
    st = hr.stat("/dev/nvidiactl")  # ...to the checks a device
    assert st is not None and stat.S_ISCHR(st.st_mode)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (195, 255)
    assert stat.S_IMODE(st.st_mode) == 0o666
    assert hr.is_char_device("/dev/nvidia-uvm")
    # Anything not declared, or no longer a placeholder, is what it is.
    assert not hr.is_char_device("/etc/os-release")
    (root / "dev/nvidia0").write_text("replaced by something else\n")
    assert not hr.is_char_device("/dev/nvidia0")


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_as_root_the_nodes_are_real(tmp_path: Path) -> None:
    demo = materialise("healthy", tmp_path / "host")
    st = os.lstat(demo.root / "dev/nvidia-uvm")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 508


def test_open_demo_removes_its_copy_and_unknown_names_are_explained() -> None:
    with open_demo("wsl2") as demo:
        root = demo.root
        assert (root / "usr/lib/wsl/lib/libnvidia-ml.so.1").exists()
    assert not root.exists()
    with pytest.raises(DemoError) as err, open_demo("nope"):
        pass
    assert "unknown demo scenario 'nope'" in str(err.value) and "missing-toolkit" in str(err.value)


def test_cli_demo_list_and_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--demo", "list"]) == 0
    out = capsys.readouterr().out
    for name in CATALOG:
        assert name in out
    assert main(["--demo", "nope"]) == 2
    assert "unknown demo scenario 'nope'" in capsys.readouterr().err


def test_demo_package_imports_neither_textual_nor_the_tests() -> None:
    code = ("import sys, gpudoctor.demo, gpudoctor.demo.hosts\n"
            "from gpudoctor.demo import open_demo\n"
            "with open_demo('broken') as d: pass\n"
            "bad = [m for m in sys.modules if m == 'textual' or m.startswith(('textual.', 'tests'))]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == ""


def test_demo_matches_the_test_suite_healthy_host(tmp_path: Path) -> None:
    """The demo's healthy host and the scenario builder's give every check the same status."""
    builder = pytest.importorskip("tests.scenarios.builder")
    if os.geteuid() != 0 or shutil.which("gcc") is None:
        pytest.skip("the scenario builder needs root (mknod) and gcc (the simulated driver)")
    from gpudoctor.host.facts import HostFacts
    from gpudoctor.host.root import HostRoot

    built = builder.build_host(tmp_path, builder.healthy_host())
    suite = run_doctor(HostFacts(root=HostRoot(built, offline=True)), options=CheckOptions(offline=True))
    with open_demo("healthy") as demo:
        ours = run_doctor(demo.facts, options=CheckOptions(offline=True))
    assert {r.id: r.status for r in ours.checks} == {r.id: r.status for r in suite.checks}


def test_demo_check_runs_headless_on_the_demo_host(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["--demo", "broken", "--check", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert {c["id"] for c in data["checks"] if c["status"] == "fail"} == {"toolkit.config", "runtime.docker_config"}
    assert data["host"]["offline"] is True
    assert main(["--demo", "broken", "--only", "nope"]) == 2  # the TUI is never started
    assert "unknown check id or group: nope" in capsys.readouterr().err


def test_gpudoctor_route_engine_step_verifies_on_the_demo_host() -> None:
    """The wizard's other route writes our launcher and a CDI spec into the demo copy; the spec's hooks name
    this interpreter and the engine's entry script, which the demo host carries, so the step verifies."""
    from gpudoctor.install import build_install_plan, run_step

    with open_demo("missing-toolkit") as demo:
        plan = build_install_plan(demo.facts, "gpudoctor", options=CheckOptions(offline=True))
        step = next(s for s in plan.steps if s.id == "engine")
        lines: list[str] = []
        result = run_step(step, lines.append, confirm=lambda question: True)
        assert result.state == "done", (result.detail, lines)
        assert "fresh CDI spec" in result.detail
        assert (demo.root / "etc/cdi/nvidia.yaml").is_file()
