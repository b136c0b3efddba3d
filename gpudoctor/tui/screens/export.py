"""The export dialog: pick JSON or Markdown, edit the file name, write."""

from __future__ import annotations

import os
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import HorizontalGroup, VerticalGroup
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from gpudoctor.report.model import Report
from gpudoctor.tui.export import EXTENSIONS, ExportError, format_for, write_report

DEFAULT_NAME = "gpudoctor-report"


class ExportScreen(ModalScreen[str | None]):
    """Writes the report; dismisses with the path written (None: cancelled)."""

    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > VerticalGroup { width: 70; max-width: 95%; border: round $primary; background: $surface;
                                   padding: 1 2; }
    ExportScreen HorizontalGroup { margin-top: 1; }
    ExportScreen Button { margin-right: 1; }
    ExportScreen #export-error { color: $text-error; height: auto; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="export-cancel"),
    ]

    def __init__(self, *, report: Report, directory: str | None = None) -> None:
        super().__init__()
        self._report = report
        self._directory = directory or os.getcwd()

    def compose(self) -> ComposeResult:
        with VerticalGroup():
            yield Label("Export the report. The name's extension picks the format: .json or .md.\n"
                        "Enter writes it; Tab reaches the buttons.")
            yield Input(value=os.path.join(self._directory, DEFAULT_NAME + EXTENSIONS["json"]), id="export-path")
            with HorizontalGroup():
                yield Button("JSON", id="json")
                yield Button("Markdown", id="markdown")
                yield Button("Write", id="write", variant="primary")
                yield Button("Cancel", id="cancel")
            yield Static("", id="export-error", markup=False)

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    def action_format(self, fmt: str) -> None:
        """Switch the file name's extension to `fmt`'s."""
        box = self.query_one("#export-path", Input)
        stem, ext = os.path.splitext(box.value)
        if ext.lower() not in (".json", ".md", ".markdown"):
            stem = box.value
        box.value = stem + EXTENSIONS[fmt]

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id in ("json", "markdown"):
            self.action_format(event.button.id)
        elif event.button.id == "write":
            self._write()
        else:
            self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._write()

    def _write(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        if not path:
            self.query_one("#export-error", Static).update("give a file name")
            return
        try:
            written = write_report(self._report, path, format_for(path))
        except ExportError as exc:
            self.query_one("#export-error", Static).update(str(exc))
            return
        self.app.notify(f"report written to {written}", title="Export", timeout=6)
        self.dismiss(str(written))

    def action_cancel(self) -> None:
        self.dismiss(None)
