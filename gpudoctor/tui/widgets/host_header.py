"""The header: which host this is (OS, kernel, driver, GPUs, WSL/rootless) and the run's tally."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.widgets import Static

from gpudoctor.checks.base import Status
from gpudoctor.tui.style import LAYER_TITLES, MARKS, STYLES


def host_line(host: Mapping[str, Any], *, demo: str | None = None) -> Text:
    """One line naming the host, the way the text report's header does."""
    os_info = host.get("os") or {}
    short = " ".join(str(os_info[k]) for k in ("name", "version_id") if os_info.get(k))
    parts: list[str] = [short or os_info.get("pretty_name") or os_info.get("id") or "unknown OS"]
    if host.get("kernel"):
        parts.append(f"kernel {host['kernel']}")
    driver = host.get("driver_version")
    parts.append(f"driver {driver}" if driver else "no driver")
    gpus = host.get("gpus") or []
    parts.append(f"{len(gpus)} GPU" + ("" if len(gpus) == 1 else "s"))
    if host.get("wsl"):
        parts.append("WSL2")
    if host.get("rootless"):
        parts.append("rootless")
    if host.get("offline") and not demo:
        parts.append("offline")
    if not demo and host.get("root") not in (None, "/"):
        parts.append(f"root {host['root']}")
    text = Text()
    if demo:
        text.append(f"DEMO {demo}", style="bold reverse")
        text.append(" ")
    text.append(" · ".join(parts))
    return text


def tally_line(
    counts: Mapping[str, int], *, total: int, running: int, first_broken: str | None
) -> Text:
    """``✗ 2 failed  ! 1 warning ...`` plus the first broken layer, or the progress while running."""
    text = Text()
    done = sum(counts.values())
    if running or done < total:
        text.append(f"checking… {done}/{total} done", style="bold")
        if running:
            text.append(f" ({running} running)")
        text.append("   ")
    for status, word in (
        (Status.FAIL, "failed"),
        (Status.ERROR, "errors"),
        (Status.WARN, "warnings"),
        (Status.PASS, "passed"),
        (Status.SKIP, "skipped"),
    ):
        n = counts.get(status.value, 0)
        if n:
            text.append(f"{MARKS[status]} {n} {word}", style=STYLES[status])
            text.append("  ")
    if first_broken is not None:
        text.append(f"first broken layer: {LAYER_TITLES.get(first_broken, first_broken)}", style="bold")
    elif done == total and total:
        text.append("no broken layer", style="bold")
    return text


class HostHeader(Static):
    """Two lines at the top of the main screen: the host, and the tally of the current run."""

    DEFAULT_CSS = """
    HostHeader {
        height: auto;
        max-height: 3;
        padding: 0 1;
        background: $panel;
        color: $foreground;
    }
    """

    def __init__(self, *, demo: str | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self._demo = demo
        self._host: Mapping[str, Any] = {}
        self._tally = Text("starting…")

    def set_host(self, host: Mapping[str, Any]) -> None:
        self._host = dict(host)
        self._render_now()

    def set_tally(self, tally: Text) -> None:
        self._tally = tally
        self._render_now()

    def _render_now(self) -> None:
        line = host_line(self._host, demo=self._demo) if self._host else Text("reading the host…")
        self.update(Text("\n").join([line, self._tally]))
