"""Export the report from the TUI: JSON (schema ``gpudoctor.report/1``) or Markdown for a bug report."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from gpudoctor.checks.base import LAYERS, Status
from gpudoctor.report.model import Report, worst
from gpudoctor.tui.layers import first_broken, layer_states
from gpudoctor.tui.style import LAYER_TITLES, MARKS, WORDS

FORMATS = ("json", "markdown")
EXTENSIONS = {"json": ".json", "markdown": ".md"}


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    """The report as Markdown: a host line, the stack as a table, then every check by layer."""
    host = report.host
    os_info = host.get("os") or {}
    gpus = host.get("gpus") or []
    lines = ["# gpudoctor report", ""]
    lines.append(f"- gpudoctor {report.tool_version}, generated {report.generated_at}")
    lines.append(f"- OS: {os_info.get('pretty_name') or os_info.get('id') or 'unknown'}; "
                 f"kernel: {host.get('kernel') or 'unknown'}; driver: {host.get('driver_version') or 'none'}; "
                 f"GPUs: {len(gpus)}" + ("; WSL2" if host.get("wsl") else "")
                 + ("; offline" if host.get("offline") else ""))
    c = report.counts
    lines.append(f"- Result: **{report.status.value}** ({c['pass']} passed, {c['warn']} warnings, "
                 f"{c['fail']} failed, {c['skip']} skipped, {c['error']} errors)")
    states = layer_states({r.id: r.layer for r in report.checks}, report.by_id())
    broken = first_broken(states)
    if broken:
        lines.append(f"- First broken layer: **{LAYER_TITLES[broken]}**")
    lines += ["", "## Stack", "", "| Layer | Status | Checks |", "| --- | --- | --- |"]
    for state in states:
        if state.total == 0:
            lines.append(f"| {LAYER_TITLES[state.layer]} | – no checks | 0 |")
            continue
        st = state.status or Status.SKIP
        arrow = " ◀ first broken" if state.layer == broken else ""
        lines.append(f"| {LAYER_TITLES[state.layer]} | {MARKS[st]} {WORDS[st]}{arrow} | {state.total} |")
    for layer in LAYERS:
        results = [r for r in report.checks if r.layer == layer]
        if not results:
            continue
        st = worst([r.status for r in results])
        lines += ["", f"## {MARKS[st]} {LAYER_TITLES[layer]}"]
        for res in results:
            lines += ["", f"### {MARKS[res.status]} {_cell(res.title)} (`{res.id}`): {res.status.value}", ""]
            lines.append(res.summary)
            if res.evidence:
                lines += ["", "```", *res.evidence, "```"]
            if res.remedy and res.status is not Status.PASS:
                lines += ["", "**What to do:**", "", *res.remedy.splitlines()]
            if res.fixes and res.status in (Status.FAIL, Status.WARN, Status.ERROR):
                lines += ["", "**Fix:** `gpudoctor fix " + " ".join(res.fixes) + "`"]
    return "\n".join(lines) + "\n"


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    raise ValueError(f"unknown export format {fmt!r} (choose {', '.join(FORMATS)})")


def format_for(path: str) -> str:
    """The format a file name asks for: ``.md``/``.markdown`` is Markdown, anything else JSON."""
    return "markdown" if path.lower().endswith((".md", ".markdown")) else "json"


class ExportError(Exception):
    """The report could not be written; the message says where and why."""


def write_report(report: Report, path: str, fmt: str) -> Path:
    """Write the report atomically (temp file + rename) and return the absolute path written."""
    target = Path(os.path.expanduser(path)).absolute()
    data = render(report, fmt)
    if target.is_dir():
        raise ExportError(f"{target} is a directory; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
