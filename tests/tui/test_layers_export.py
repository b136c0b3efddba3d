"""The stack view's arithmetic and the export formats (no Textual app needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.checks.base import LAYERS, CheckResult, Status
from gpudoctor.report.model import Report
from gpudoctor.tui.export import ExportError, format_for, render_markdown, write_report
from gpudoctor.tui.layers import first_broken, layer_states
from gpudoctor.tui.widgets.stack import bar_text


def _result(cid: str, layer: str, status: Status, *, evidence: tuple[str, ...] = (), remedy: str | None = None,
            fixes: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(id=cid, group=cid.split(".")[0], title=cid.replace(".", " "), status=status,
                       summary=f"{cid} is {status.value}", layer=layer, evidence=evidence, remedy=remedy,
                       fixes=fixes)


LAYER_OF = {"driver.gpus": "hardware", "modules.nvidia": "kernel", "toolkit.installed": "toolkit",
            "toolkit.config": "toolkit", "runtime.docker_config": "runtime", "runtime.docker_daemon": "runtime"}


def test_layer_states_while_running_and_when_done() -> None:
    results = {"driver.gpus": _result("driver.gpus", "hardware", Status.PASS)}
    states = {s.layer: s for s in layer_states(LAYER_OF, results)}
    assert [s for s in states] == list(LAYERS)
    assert states["hardware"].status is Status.PASS and states["hardware"].pending == 0
    assert states["toolkit"].status is None and states["toolkit"].pending == 2
    assert states["devices"].total == 0
    assert "checking…" in str(bar_text(states["toolkit"], first=False))
    assert "no checks" in str(bar_text(states["devices"], first=False))


def test_skips_do_not_hide_a_passing_layer_and_the_first_broken_is_the_lowest() -> None:
    results = {
        "driver.gpus": _result("driver.gpus", "hardware", Status.PASS),
        "modules.nvidia": _result("modules.nvidia", "kernel", Status.PASS),
        "toolkit.installed": _result("toolkit.installed", "toolkit", Status.PASS),
        "toolkit.config": _result("toolkit.config", "toolkit", Status.FAIL),
        "runtime.docker_config": _result("runtime.docker_config", "runtime", Status.ERROR),
        "runtime.docker_daemon": _result("runtime.docker_daemon", "runtime", Status.SKIP),
    }
    states = layer_states(LAYER_OF, results)
    by = {s.layer: s for s in states}
    assert by["toolkit"].status is Status.FAIL and by["runtime"].status is Status.ERROR
    assert first_broken(states) == "toolkit"
    text = str(bar_text(by["toolkit"], first=True))
    assert text.startswith("▶ ✗ Container toolkit") and text.endswith("BROKEN")
    results["toolkit.config"] = _result("toolkit.config", "toolkit", Status.PASS)
    results["runtime.docker_config"] = _result("runtime.docker_config", "runtime", Status.PASS)
    by = {s.layer: s for s in layer_states(LAYER_OF, results)}
    assert by["runtime"].status is Status.PASS and by["runtime"].skipped == 1
    assert str(bar_text(by["runtime"], first=False)).endswith("ok, 1 skipped")
    assert first_broken(list(by.values())) is None
    only_skips = {"runtime.docker_daemon": results["runtime.docker_daemon"]}
    assert {s.layer: s for s in layer_states(LAYER_OF, only_skips)}["runtime"].status is Status.SKIP


def _report() -> Report:
    checks = [
        _result("driver.gpus", "hardware", Status.PASS, evidence=("/sys/bus/pci/devices/0000:3b:00.0: 10de:2330",)),
        _result("toolkit.config", "toolkit", Status.FAIL, evidence=("config.toml: ldconfig = x | y",),
                remedy="Fix the ldconfig path.", fixes=("toolkit-config",)),
    ]
    return Report(checks=checks, host={"os": {"pretty_name": "Ubuntu 22.04.4 LTS"}, "kernel": "6.5.0",
                                       "driver_version": "550.54.14", "gpus": [{}], "wsl": False},
                  generated_at="2026-01-01T00:00:00+00:00", duration_ms=1.0)


def test_markdown_names_the_stack_the_problems_and_the_fix() -> None:
    md = render_markdown(_report())
    assert md.startswith("# gpudoctor report\n")
    assert "- Result: **fail** (1 passed, 0 warnings, 1 failed, 0 skipped, 0 errors)" in md
    assert "- First broken layer: **Container toolkit**" in md
    assert "| Container toolkit | ✗ BROKEN ◀ first broken | 1 |" in md
    assert "| Device nodes | – no checks | 0 |" in md
    assert "### ✗ toolkit config (`toolkit.config`): fail" in md
    assert "```\nconfig.toml: ldconfig = x | y\n```" in md
    assert "**What to do:**\n\nFix the ldconfig path." in md and "**Fix:** `gpudoctor fix toolkit-config`" in md


def test_write_report_is_atomic_and_explains_failures(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "r.json"
    written = write_report(_report(), str(target), format_for(str(target)))
    assert written == target and json.loads(target.read_text())["schema"] == "gpudoctor.report/1"
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]  # no temp file left behind
    assert format_for("x.md") == "markdown" and format_for("x.MARKDOWN") == "markdown" and format_for("x") == "json"
    with pytest.raises(ExportError, match="is a directory"):
        write_report(_report(), str(tmp_path), "json")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="cannot write"):
        write_report(_report(), str(blocker / "r.md"), "markdown")
