"""No input, however broken, produces a traceback: garbage in each file the hardware-layer checks read.

A healthy host is built once for this module; each example overwrites one to three of its files with
random bytes, random text, or the real content with a few bytes changed or cut short, runs the whole
headless doctor (`gpudoctor --check --json --offline --root T`, in-process through cli.main), and puts
the files back. The run must end with a valid report and exit 0, 1 or 3, and no hardware-layer check
may be `error` (the parsers' ParseErrors must all turn into findings).
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudoctor.cli import main
from gpudoctor.host.root import HostRoot
from tests.scenarios.builder import ALL_HW_CHECKS, SECURE_BOOT_EFIVAR, build_host, healthy_host
from tests.scenarios.hosts import require_root, run_gpudoctor, validate_report

BUS = "0000:3b:00.0"
FILES = (
    "/proc/version",
    "/proc/sys/kernel/osrelease",
    "/proc/driver/nvidia/version",
    "/proc/driver/nvidia/params",
    f"/proc/driver/nvidia/gpus/{BUS}/information",
    "/proc/modules",
    "/proc/devices",
    "/proc/cmdline",
    "/sys/module/nvidia/initstate",
    "/sys/module/nvidia/version",
    "/sys/module/nvidia/refcnt",
    "/sys/module/nvidia_uvm/initstate",
    f"/sys/bus/pci/devices/{BUS}/vendor",
    f"/sys/bus/pci/devices/{BUS}/device",
    f"/sys/bus/pci/devices/{BUS}/class",
    "/etc/os-release",
    "/etc/ld.so.cache",
    "/etc/modprobe.d/blacklist-nvidia-nouveau.conf",
    SECURE_BOOT_EFIVAR,
    "/sys/kernel/security/lockdown",
)

pytestmark = pytest.mark.root  # fake hosts have device nodes (mknod)


@pytest.fixture(scope="module")
def garbage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    return build_host(tmp_path_factory.mktemp("garbage"), healthy_host(2, name="garbage_host"))


@pytest.fixture(scope="module")
def originals(garbage_root: Path) -> dict[str, bytes]:
    hr = HostRoot(garbage_root)
    out = {path: hr.path(path).read_bytes() for path in FILES}
    assert all(out.values()), "every fuzzed file exists in the healthy host"
    return out


def _doctor(root: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["--check", "--json", "--offline", "--root", str(root)])
    return code, out.getvalue(), err.getvalue()


@st.composite
def payloads(draw: st.DrawFn, original: bytes) -> bytes:
    kind = draw(st.sampled_from(("bytes", "text", "mutate", "truncate")))
    if kind == "bytes":
        return draw(st.binary(max_size=4096))
    if kind == "text":
        return draw(st.text(max_size=600)).encode("utf-8", "surrogatepass")
    if kind == "truncate":
        return original[: draw(st.integers(0, max(0, len(original) - 1)))]
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        data[pos:pos + 1] = draw(st.binary(min_size=0, max_size=4))
    return bytes(data)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_garbage_never_crashes(data: st.DataObject, garbage_root: Path, originals: dict[str, bytes]) -> None:
    hr = HostRoot(garbage_root)
    paths = data.draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=3, unique=True), label="files")
    try:
        for path in paths:
            hr.path(path).write_bytes(data.draw(payloads(originals[path]), label=path))
        code, out, err = _doctor(garbage_root)
    finally:
        for path in paths:
            hr.path(path).write_bytes(originals[path])
    assert code in (0, 1, 3), err
    assert "Traceback" not in err
    report = json.loads(out)
    validate_report(report)
    errors = {c["id"]: c["summary"] for c in report["checks"] if c["id"] in ALL_HW_CHECKS and c["status"] == "error"}
    assert errors == {}


def test_everything_garbage_at_once_in_a_real_process(garbage_root: Path, originals: dict[str, bytes]) -> None:
    hr = HostRoot(garbage_root)
    junk = b"\x00\xff\xfeNVRM version: \x1b[31m" + bytes(range(256)) + b"\n" * 3 + "Model: ??\u2028".encode()
    try:
        for path in FILES:
            hr.path(path).write_bytes(junk)
        run = run_gpudoctor(["--check", "--json", "--offline"], root=garbage_root)
    finally:
        for path in FILES:
            hr.path(path).write_bytes(originals[path])
    assert run.returncode in (0, 1, 3), run.stderr
    assert "Traceback" not in run.stderr
    validate_report(run.report)
    checks = run.checks()
    assert not [cid for cid in ALL_HW_CHECKS if checks[cid]["status"] == "error"]
    # The parse errors are reported with the file they came from.
    assert any("/proc/driver/nvidia/version" in line for line in checks["driver.loaded"]["evidence"])
