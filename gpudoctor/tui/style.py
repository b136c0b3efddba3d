"""Marks, colours and titles shared by the TUI's widgets. Meaning never rests on colour alone (NO_COLOR)."""

from __future__ import annotations

from gpudoctor.checks.base import LAYERS, Status

MARKS: dict[Status, str] = {
    Status.PASS: "✓",
    Status.WARN: "!",
    Status.FAIL: "✗",
    Status.SKIP: "–",
    Status.ERROR: "E",
}

WORDS: dict[Status, str] = {
    Status.PASS: "ok",
    Status.WARN: "warning",
    Status.FAIL: "BROKEN",
    Status.SKIP: "skipped",
    Status.ERROR: "error",
}

# Rich styles for inline text (labels, detail pane).
COLOR_STYLES: dict[Status, str] = {
    Status.PASS: "green",
    Status.WARN: "yellow",
    Status.FAIL: "bold red",
    Status.SKIP: "dim",
    Status.ERROR: "bold magenta",
}
# Under NO_COLOR Textual greys every colour out, and a grey red is hard to read on a dark background:
# problems are bold instead, so they still stand out (the marks and words carry the meaning).
MONO_STYLES: dict[Status, str] = {
    Status.PASS: "",
    Status.WARN: "bold",
    Status.FAIL: "bold underline",
    Status.SKIP: "dim",
    Status.ERROR: "bold underline",
}


class _Styles(dict[Status, str]):
    """STYLES follows NO_COLOR: the app calls :func:`set_monochrome` when it starts."""

    def __missing__(self, key: Status) -> str:
        return ""


STYLES: _Styles = _Styles(COLOR_STYLES)


def set_monochrome(mono: bool) -> None:
    """Switch the inline styles for NO_COLOR (True) or colour (False)."""
    STYLES.clear()
    STYLES.update(MONO_STYLES if mono else COLOR_STYLES)

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
PENDING_MARK = "·"

# After this many seconds a running check says so in words, not just with a spinner.
SLOW_AFTER_S = 2.0

LAYER_TITLES: dict[str, str] = {
    "hardware": "Hardware",
    "kernel": "Kernel module",
    "devices": "Device nodes",
    "libraries": "Driver libraries",
    "toolkit": "Container toolkit",
    "runtime": "Daemon runtime",
    "container": "Container",
}

assert tuple(LAYER_TITLES) == LAYERS, "every layer needs a title"

BROKEN = (Status.FAIL, Status.ERROR)


def status_class(status: Status | None) -> str:
    """The CSS class for a status (``-pass`` ...), ``-pending`` for a check that has not finished."""
    return f"-{status.value}" if status is not None else "-pending"
