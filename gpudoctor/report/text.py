"""Plain-text rendering in the flutter-doctor style: one line per group, details for what did not pass."""

from __future__ import annotations

import os
from collections.abc import Iterable

from gpudoctor.checks.base import GROUP_TITLES, CheckResult, Status
from gpudoctor.report.model import Report, group_results, worst

MARKS = {
    Status.PASS: "✓",
    Status.WARN: "!",
    Status.FAIL: "✗",
    Status.SKIP: "-",
    Status.ERROR: "E",
}

_COLORS = {
    Status.PASS: "32",
    Status.WARN: "33",
    Status.FAIL: "31",
    Status.SKIP: "2",
    Status.ERROR: "35",
}


def use_color(stream_isatty: bool, env: dict[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    env = dict(os.environ) if env is None else env
    if "NO_COLOR" in env and env["NO_COLOR"] != "":
        return False
    if env.get("TERM") == "dumb":
        return False
    return stream_isatty


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def status(self, status: Status, text: str) -> str:
        if not self.color:
            return text
        return f"\x1b[{_COLORS[status]}m{text}\x1b[0m"

    def bold(self, text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m" if self.color else text

    def dim(self, text: str) -> str:
        return f"\x1b[2m{text}\x1b[0m" if self.color else text


def _host_line(report: Report) -> str:
    host = report.host
    os_info = host.get("os") or {}
    parts = [os_info.get("pretty_name") or os_info.get("id") or "unknown OS"]
    if host.get("kernel"):
        parts.append(f"kernel {host['kernel']}")
    if host.get("wsl"):
        parts.append("WSL2")
    if host.get("driver_version"):
        parts.append(f"driver {host['driver_version']}")
    gpus = host.get("gpus") or []
    parts.append(f"{len(gpus)} GPU" + ("" if len(gpus) == 1 else "s"))
    if host.get("root") not in (None, "/"):
        parts.append(f"root {host['root']}")
    if host.get("offline"):
        parts.append("offline")
    return ", ".join(parts)


def _detail_lines(res: CheckResult, style: _Style, *, evidence: bool, timing: bool) -> Iterable[str]:
    mark = style.status(res.status, MARKS[res.status])
    tail = style.dim(f"  ({res.duration_ms:.1f} ms)") if timing else ""
    # The id is what --only/--skip and CI filters take, so it stands beside the human title.
    name = res.title if res.title == res.id else f"{res.title} ({res.id})"
    yield f"    {mark} {name}: {res.summary}{tail}"
    if evidence:
        for line in res.evidence:
            yield f"        {style.dim(line)}"
    if res.remedy and res.status in (Status.FAIL, Status.WARN, Status.ERROR):
        first, *rest = res.remedy.splitlines() or [""]
        yield f"        → {first}"
        for line in rest:
            yield f"          {line}"
    if res.fixes and res.status in (Status.FAIL, Status.WARN):
        yield f"        fix: gpudoctor fix {' '.join(res.fixes)}"


def render_text(report: Report, *, verbose: bool = False, color: bool = False) -> str:
    """The human report. Non-verbose shows details only for checks that did not pass or skip."""
    style = _Style(color)
    out: list[str] = [style.bold("gpudoctor summary") + f" ({_host_line(report)})"]
    if not verbose:
        out.append(style.dim("  (run `gpudoctor --check -v` for every check with its evidence)"))
    out.append("")
    for group, results in group_results(report.checks).items():
        g_status = worst([r.status for r in results])
        title = GROUP_TITLES.get(group, group)
        mark = style.status(g_status, MARKS[g_status])
        counts = f"{sum(r.status is Status.PASS for r in results)}/{len(results)} passed"
        out.append(f"[{mark}] {title} ({counts})")
        for res in results:
            show = verbose or res.status in (Status.FAIL, Status.WARN, Status.ERROR)
            if not show and res.status is Status.SKIP and g_status is Status.SKIP:
                show = res is results[0]  # one reason is enough for a group skipped wholesale
            if show:
                out.extend(_detail_lines(res, style, evidence=verbose or res.status is not Status.SKIP,
                                         timing=verbose))
    out.append("")
    c = report.counts
    issue_groups = sum(
        1 for rs in group_results(report.checks).values()
        if worst([r.status for r in rs]) in (Status.FAIL, Status.ERROR, Status.WARN)
    )
    tally = f"{c['pass']} passed, {c['warn']} warnings, {c['fail']} failed, {c['skip']} skipped, {c['error']} errors"
    if issue_groups:
        out.append(style.status(report.status, f"! gpudoctor found issues in {issue_groups} "
                                f"{'category' if issue_groups == 1 else 'categories'}.") + f" ({tally})")
    else:
        out.append(style.status(Status.PASS, "• No issues found!") + f" ({tally})")
    return "\n".join(out) + "\n"
