"""The help screen: the keys, what the marks and the stack's colours mean, and where fixes come from."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gpudoctor.checks.base import Status
from gpudoctor.tui.style import MARKS, PENDING_MARK, SPINNER, STYLES

KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓  ←  →", "move in the checks; Enter folds a layer"),
    ("Tab", "switch between the checks and the details (scroll them with ↑ ↓)"),
    ("n", "jump to the next problem"),
    ("f", "fix the selected problem: preview → confirm → apply → re-check"),
    ("i", "install wizard: the missing parts, step by step"),
    ("p", "pull the image parity.nvidia_smi is missing (asks first; shown only then)"),
    ("r", "run every check again"),
    ("e", "export the report (JSON or Markdown)"),
    ("v", "verbose: evidence and timing for every check"),
    ("ctrl+p", "command palette: every action by name"),
    ("?", "this help"),
    ("q", "quit (the exit code is the report's: 0 ok, 1 failed, 3 error)"),
)

LEGEND: tuple[tuple[Status | None, str], ...] = (
    (Status.PASS, "passed"),
    (Status.WARN, "warning: works, but something is off"),
    (Status.FAIL, "failed: this layer is broken"),
    (Status.SKIP, "skipped: does not apply here, or a layer below is broken"),
    (Status.ERROR, "the check itself crashed (a gpudoctor bug)"),
    (None, "waiting / running"),
)


def help_renderable() -> Group:
    keys = Table.grid(padding=(0, 2))
    keys.add_column(style="bold", no_wrap=True)
    keys.add_column()
    for key, what in KEYS:
        keys.add_row(key, what)
    legend = Table.grid(padding=(0, 2))
    legend.add_column(no_wrap=True)
    legend.add_column()
    for status, what in LEGEND:
        mark = Text(MARKS[status], style=STYLES[status]) if status else Text(f"{PENDING_MARK} {SPINNER[0]}")
        legend.add_row(mark, what)
    return Group(
        Text("Keys", style="bold underline"), keys, Text(""),
        Text("Marks", style="bold underline"), legend, Text(""),
        Text("The stack", style="bold underline"),
        Text("The layers a GPU container needs, from the GPU up to the container. Each bar shows its worst "
             "check; ▶ marks the first broken layer, which is usually the one to fix first: the layers "
             "above it are skipped until it works."),
    )


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 84; max-width: 100%; height: auto; max-height: 100%;
                                  border: round $primary; background: $surface; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="help-close"),
        Binding("question_mark", "close", "Close", id="help-close-2", show=False),
        Binding("q", "close", "Close", id="help-close-3", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_renderable())

    def on_mount(self) -> None:
        scroll = self.query_one(VerticalScroll)
        scroll.border_title = "gpudoctor help"
        scroll.border_subtitle = "Esc closes"
        scroll.focus()

    def action_close(self) -> None:
        self.dismiss(None)
