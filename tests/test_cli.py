"""The headless CLI: imports, exit codes, text and JSON output, crash handling.

Runs are real processes (``python -m gpudoctor``) against fake hosts from tests/scenarios, except where a
test must register a temporary check, which only an in-process run can see.
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

import gpudoctor
from gpudoctor.checks import load_checks
from gpudoctor.checks.base import REGISTRY, CheckContext, Finding, check
from gpudoctor.cli import main
from gpudoctor.report.model import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from tests.scenarios.builder import ALL_HW_CHECKS, fake_dev_env
from tests.scenarios.catalog import by_name
from tests.scenarios.hosts import REPO_ROOT, BuiltHosts, built_hosts, run_gpudoctor, validate_report


@pytest.fixture(scope="session")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> BuiltHosts:
    return built_hosts(tmp_path_factory)


@pytest.fixture(scope="session")
def healthy(hosts: BuiltHosts) -> Path:
    return hosts.get(by_name()["healthy_2gpu"])


def _in_process(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# -- imports ---------------------------------------------------------------------------------------------------

_PROBE = textwrap.dedent(
    """
    import io, json, sys
    from contextlib import redirect_stdout
    from gpudoctor.cli import main
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(sys.argv[1:])
    report = json.loads(out.getvalue())
    loaded = sorted({name.split(".")[0] for name in sys.modules} & {"textual", "docker"})
    print(json.dumps({"code": code, "checks": len(report["checks"]), "heavy": loaded}))
    """
)


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "live"])
def test_headless_json_path_imports_neither_textual_nor_docker(offline: bool, healthy: Path) -> None:
    argv = ["--check", "--json", "--root", str(healthy)] + (["--offline"] if offline else [])
    env = {**os.environ, **fake_dev_env(healthy)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["checks"] >= len(ALL_HW_CHECKS)
    assert result["code"] == EXIT_OK


# -- exit codes ------------------------------------------------------------------------------------------------


def test_exit_0_on_a_healthy_host(healthy: Path) -> None:
    run = run_gpudoctor(["--check", "--json", "--offline"], root=healthy)
    assert run.returncode == EXIT_OK
    assert run.stderr == ""
    assert run.report["summary"]["status"] == "pass"


def test_exit_1_when_a_check_fails(hosts: BuiltHosts) -> None:
    run = run_gpudoctor(["--check", "--json", "--offline"], root=hosts.get(by_name()["nvidiactl_missing"]))
    assert run.returncode == EXIT_FAILED
    assert run.report["summary"]["status"] == "fail"


def test_warnings_pass_unless_fail_on_warn(hosts: BuiltHosts) -> None:
    root = hosts.get(by_name()["modeset_not_loaded"])
    plain = run_gpudoctor(["--check", "--json", "--offline"], root=root)
    assert plain.report["summary"]["status"] == "warn"
    assert plain.returncode == EXIT_OK
    strict = run_gpudoctor(["--check", "--json", "--offline", "--fail-on", "warn"], root=root)
    assert strict.returncode == EXIT_FAILED


@pytest.mark.parametrize("option", ["--only", "--skip"])
def test_unknown_check_id_is_a_usage_error(option: str, healthy: Path) -> None:
    run = run_gpudoctor(["--check", "--json", "--offline", option, "devices.nosuch"], root=healthy)
    assert run.returncode == EXIT_USAGE
    assert run.stdout == ""
    assert "unknown check id or group: devices.nosuch" in run.stderr
    assert "--list-checks" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_root_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-host"
    run = run_gpudoctor(["--check", "--json", "--offline", "--root", str(missing)])
    assert run.returncode == EXIT_USAGE
    assert run.stdout == ""
    assert f"--root {missing}: not a directory" in run.stderr


def test_bad_option_is_a_usage_error() -> None:
    run = run_gpudoctor(["--check", "--no-such-flag"])
    assert run.returncode == EXIT_USAGE
    assert "unrecognized arguments: --no-such-flag" in run.stderr


@pytest.fixture
def crashing_check() -> Iterator[str]:
    """A temporary check that raises; removed from the registry afterwards."""
    load_checks()

    @check("zz.crash", title="Always crashes", layer="hardware")
    def _boom(ctx: CheckContext) -> Finding:
        raise RuntimeError("boom from a test check")

    try:
        yield "zz.crash"
    finally:
        REGISTRY.pop("zz.crash", None)


def test_a_crashing_check_is_an_error_result_and_exit_3(crashing_check: str, healthy: Path) -> None:
    code, out, err = _in_process(["--check", "--json", "--offline", "--root", str(healthy)])
    assert code == EXIT_ERROR
    report = json.loads(out)
    validate_report(report)
    checks = {c["id"]: c for c in report["checks"]}
    crash = checks[crashing_check]
    assert crash["status"] == "error"
    assert crash["summary"] == "the check itself crashed: RuntimeError: boom from a test check"
    assert any("RuntimeError: boom from a test check" in line for line in crash["evidence"])
    # The rest of the run went on as usual.
    assert {checks[cid]["status"] for cid in ALL_HW_CHECKS} == {"pass"}
    assert "Traceback" not in err


def test_a_crashing_check_in_text_mode(crashing_check: str, healthy: Path) -> None:
    code, out, _ = _in_process(["--check", "--offline", "--root", str(healthy), "--only", crashing_check])
    assert code == EXIT_ERROR
    assert "E Always crashes (zz.crash): the check itself crashed: RuntimeError: boom from a test check" in out


def test_crashing_check_is_gone_after_the_fixture() -> None:
    assert "zz.crash" not in load_checks()


# -- output ----------------------------------------------------------------------------------------------------


def test_json_is_the_only_output(healthy: Path) -> None:
    run = run_gpudoctor(["--check", "--json", "--offline"], root=healthy)
    report = json.loads(run.stdout)  # the whole of stdout is one JSON document
    assert run.stderr == ""
    assert report["tool"] == {"name": "gpudoctor", "version": gpudoctor.__version__}
    assert report["schema"] == "gpudoctor.report/1"


def test_text_report_groups_and_marks(hosts: BuiltHosts) -> None:
    healthy = run_gpudoctor(["--check", "--offline"], root=hosts.get(by_name()["healthy_2gpu"]))
    assert "[✓] NVIDIA driver (5/5 passed)" in healthy.stdout
    assert "[✓] Kernel modules (4/4 passed)" in healthy.stdout
    assert "[✓] Device nodes (4/4 passed)" in healthy.stdout
    assert "• No issues found!" in healthy.stdout
    assert "\x1b" not in healthy.stdout  # stdout is a pipe: no colour

    broken = run_gpudoctor(["--check", "--offline"], root=hosts.get(by_name()["nvidiactl_missing"]))
    lines = broken.stdout.splitlines()
    assert "[✗] Device nodes (2/4 passed)" in lines
    assert "    ✗ /dev/nvidiactl (devices.control): /dev/nvidiactl is missing" in lines
    assert "        /dev/nvidiactl: missing" in lines
    assert any(line.startswith("        → Create it: `sudo nvidia-modprobe -c 0`") for line in lines)
    assert "        fix: gpudoctor fix device-nodes" in lines
    assert broken.returncode == EXIT_FAILED

    warn = run_gpudoctor(["--check", "--offline"], root=hosts.get(by_name()["modeset_not_loaded"]))
    assert "[!] Kernel modules (2/4 passed)" in warn.stdout
    assert "    ! nvidia_modeset module (modules.nvidia_modeset): nvidia_modeset is not loaded" in warn.stdout


def test_verbose_shows_every_check_with_evidence_and_timing(healthy: Path) -> None:
    run = run_gpudoctor(["--check", "--offline", "-v"], root=healthy)
    lines = run.stdout.splitlines()
    modules = [line for line in lines if line.startswith("    ✓ nvidia") and "module" in line]
    assert len(modules) == 4
    assert all(line.endswith(" ms)") for line in modules)
    assert "        /proc/modules: nvidia_uvm 1527808 0 - Live (POE)" in lines
    assert "        /dev/nvidiactl: crw-rw-rw- 0:0 c 195:255" in lines
    quiet = run_gpudoctor(["--check", "--offline"], root=healthy)
    assert "/proc/modules" not in quiet.stdout


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run gpudoctor with stdout on a pseudo-terminal and return what it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "gpudoctor", *argv], stdout=follower, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, cwd=REPO_ROOT)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    proc.wait(timeout=300)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_only_on_a_terminal_and_never_with_no_color(healthy: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    argv = ["--check", "--offline", "--root", str(healthy)]
    coloured = _on_a_terminal(argv, env)
    assert "\x1b[32m✓\x1b[0m" in coloured
    plain = _on_a_terminal(argv, {**env, "NO_COLOR": "1"})
    assert "\x1b[" not in plain
    assert "[✓] NVIDIA driver (5/5 passed)" in plain


def test_list_checks_names_every_hardware_check_and_its_dependencies() -> None:
    run = run_gpudoctor(["--list-checks"])
    assert run.returncode == EXIT_OK
    listed = {line.split()[0]: line for line in run.stdout.splitlines() if line.strip()}
    assert set(ALL_HW_CHECKS) <= set(listed)
    assert listed["modules.nvidia"].endswith("(after driver.loaded)")
    assert listed["devices.permissions"].endswith("(after devices.control, devices.gpus)")
    assert listed["driver.version_match"].endswith("(after driver.installed, driver.loaded)")


def test_no_arguments_off_a_terminal_runs_the_check(healthy: Path) -> None:
    run = run_gpudoctor(["--offline"], root=healthy)
    assert "stdout is not a terminal; running `gpudoctor --check`" in run.stderr
    assert "[✓] NVIDIA driver (5/5 passed)" in run.stdout
    assert run.returncode == EXIT_OK
