"""The report model, its JSON schema (gpudoctor/report/schema.json) and the text renderer."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from gpudoctor.checks.base import CheckResult, Status
from gpudoctor.report.model import EXIT_ERROR, EXIT_FAILED, EXIT_OK, Report
from gpudoctor.report.text import render_text, use_color
from tests.scenarios.hosts import schema, validate_report


def _result(cid: str, status: Status, *, summary: str = "", evidence: tuple[str, ...] = (),
            remedy: str | None = None, fixes: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(id=cid, group=cid.split(".")[0], title=cid, status=status, summary=summary or f"{cid} {status}",
                       evidence=evidence, remedy=remedy, fixes=fixes, duration_ms=1.5)


def _report(*results: CheckResult) -> Report:
    host = {"root": "/", "offline": True, "os": {"id": "debian", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
            "kernel": "6.1.0-18-amd64", "wsl": False, "driver_version": "550.54.14",
            "gpus": [{"index": 0, "uuid": "GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13", "name": "NVIDIA H100 80GB HBM3",
                      "minor": 0, "pci_bus_id": "00000000:3B:00.0"}]}
    return Report(checks=list(results), host=host, generated_at="2024-03-01T12:00:00+00:00", duration_ms=12.5)


@pytest.mark.parametrize(("statuses", "overall", "code", "strict"), [
    ((Status.PASS, Status.SKIP), Status.PASS, EXIT_OK, EXIT_OK),
    ((Status.PASS, Status.WARN), Status.WARN, EXIT_OK, EXIT_FAILED),
    ((Status.WARN, Status.ERROR), Status.ERROR, EXIT_ERROR, EXIT_ERROR),
    ((Status.ERROR, Status.FAIL, Status.WARN), Status.FAIL, EXIT_FAILED, EXIT_FAILED),
    ((Status.SKIP,), Status.PASS, EXIT_OK, EXIT_OK),
])
def test_overall_status_and_exit_code(statuses: tuple[Status, ...], overall: Status, code: int, strict: int) -> None:
    report = _report(*[_result(f"driver.c{i}", s) for i, s in enumerate(statuses)])
    assert report.status is overall
    assert report.exit_code() == code
    assert report.exit_code(fail_on="warn") == strict


def test_report_json_round_trip_validates() -> None:
    report = _report(
        _result("driver.loaded", Status.FAIL, evidence=("/proc/modules: no entry for nvidia",),
                remedy="sudo modprobe nvidia", fixes=("load-modules",)),
        _result("modules.nvidia", Status.SKIP, summary="skipped because driver.loaded is fail: ..."),
        _result("devices.control", Status.PASS),
    )
    data = report.to_dict()
    validate_report(data)
    assert data["summary"] == {"status": "fail", "counts": {"pass": 1, "warn": 0, "fail": 1, "skip": 1, "error": 0}}
    again = Report.from_dict(data)
    assert again.to_dict() == data


def _valid() -> dict[str, Any]:
    return _report(_result("driver.loaded", Status.PASS)).to_dict()


@pytest.mark.parametrize("breakage", [
    ("checks", 0, "status", "ok"),
    ("checks", 0, "id", "Driver Loaded"),
    ("checks", 0, "summary", ""),
    ("host", "gpus", 0, "index", -1),
    ("summary", "status", "skip"),
    ("schema", "gpudoctor.report/2"),
    ("generated_at", "yesterday"),
])
def test_schema_rejects_malformed_reports(breakage: tuple[Any, ...]) -> None:
    data = copy.deepcopy(_valid())
    *path, value = breakage
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate_report(data)


def test_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_text_marks_groups_and_shows_details_only_for_problems() -> None:
    report = _report(
        _result("driver.gpus", Status.PASS, evidence=("/sys/bus/pci/devices/0000:3b:00.0: NVIDIA",)),
        _result("driver.loaded", Status.FAIL, summary="the NVIDIA kernel module is not loaded",
                evidence=("/proc/modules: no entry for nvidia",), remedy="Load it: sudo modprobe nvidia",
                fixes=("load-modules",)),
        _result("modules.nvidia", Status.SKIP, summary="skipped because driver.loaded is fail"),
        _result("modules.nvidia_uvm", Status.SKIP, summary="skipped because modules.nvidia is skip"),
        _result("devices.permissions", Status.WARN, summary="only group 1001"),
    )
    text = render_text(report)
    lines = text.splitlines()
    assert lines[0] == ("gpudoctor summary (Debian GNU/Linux 12 (bookworm), kernel 6.1.0-18-amd64, driver 550.54.14, "
                        "1 GPU, offline)")
    assert "[✗] NVIDIA driver (1/2 passed)" in lines
    assert "    ✗ driver.loaded: the NVIDIA kernel module is not loaded" in lines
    assert "        /proc/modules: no entry for nvidia" in lines
    assert "        → Load it: sudo modprobe nvidia" in lines
    assert "        fix: gpudoctor fix load-modules" in lines
    assert "/sys/bus/pci/devices" not in text  # passed checks show no detail without -v
    # A group skipped wholesale shows one reason, not one per check.
    assert "    - modules.nvidia: skipped because driver.loaded is fail" in lines
    assert "modules.nvidia_uvm" not in text
    assert "[!] Device nodes (0/1 passed)" in lines
    assert lines[-1].startswith("! gpudoctor found issues in 2 categories.")
    assert "\x1b" not in text


def test_text_colour_is_opt_in() -> None:
    report = _report(_result("driver.loaded", Status.PASS))
    assert "\x1b[32m" in render_text(report, color=True)
    assert "\x1b" not in render_text(report, color=False)
    assert use_color(True, {}) is True
    assert use_color(False, {}) is False
    assert use_color(True, {"NO_COLOR": "1"}) is False
    assert use_color(True, {"TERM": "dumb"}) is False
