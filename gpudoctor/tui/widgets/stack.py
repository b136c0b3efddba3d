"""The stack view: the seven layers drawn top to bottom, each coloured by its worst status.

This is where the eye lands first, so every bar says its state in words and marks as well as colour
(NO_COLOR turns the colours into greys), and the first broken layer carries an arrow.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import Click
from textual.message import Message
from textual.widgets import Static

from gpudoctor.checks.base import LAYERS, Status
from gpudoctor.tui.layers import LayerState
from gpudoctor.tui.style import LAYER_TITLES, MARKS, PENDING_MARK, WORDS, status_class


def bar_text(state: LayerState, *, first: bool, width: int = 34) -> Text:
    """``▶ ✗ Container toolkit   BROKEN``: arrow, mark, title, state word."""
    if state.total == 0:
        mark, word = MARKS[Status.SKIP], "no checks"
    elif state.pending and not state.broken:
        mark, word = PENDING_MARK, "checking…"
    else:
        assert state.status is not None
        mark, word = MARKS[state.status], WORDS[state.status]
        if state.skipped and state.status in (Status.PASS, Status.WARN):
            word += f", {state.skipped} skipped"
    left = f"{'▶' if first else ' '} {mark} {LAYER_TITLES[state.layer]}"
    pad = max(1, width - len(left) - len(word))
    return Text(left + " " * pad + word)


class LayerBar(Static):
    """One layer of the stack; a click selects the layer's checks in the tree."""

    def __init__(self, layer: str) -> None:
        super().__init__(id=f"layer-{layer}", classes="-pending")
        self.layer_name = layer
        self.state = LayerState(layer=layer, status=None, total=0, pending=0)
        self.first = False
        self._painted = False

    def show(self, state: LayerState, *, first: bool) -> None:
        if (state, first) == (self.state, self.first) and self._painted:
            return  # nothing changed: restyling costs a CSS pass, and events arrive per check
        self.state, self.first = state, first
        if state.total == 0:
            wanted = {"-empty"}
        elif state.pending and not state.broken:
            wanted = {"-pending"}
        else:
            wanted = {status_class(state.status)}
        if first:
            wanted.add("-first")
        if set(self.classes) != wanted:
            self.set_classes(wanted)
        self._painted = True
        self._paint()

    def _paint(self) -> None:
        width = max(20, self.content_size.width or 34)
        self.update(bar_text(self.state, first=self.first, width=width))

    def on_resize(self) -> None:
        self._paint()

    def on_click(self, event: Click) -> None:
        self.post_message(StackView.LayerSelected(self.layer_name))


class StackView(Vertical):
    """The layers of the GPU container stack, top to bottom."""

    DEFAULT_CSS = """
    StackView {
        height: auto;
        border: round $primary;
        border-title-align: left;
        padding: 0 0;
    }
    StackView LayerBar {
        height: 1;
        padding: 0 1;
        color: $foreground;
    }
    StackView LayerBar.-pass { background: $success-muted; }
    StackView LayerBar.-warn { background: $warning-muted; }
    StackView LayerBar.-fail { background: $error-muted; color: $text; text-style: bold; }
    StackView LayerBar.-error { background: $error-muted; text-style: bold; }
    StackView LayerBar.-skip { background: $panel; color: $text-muted; }
    StackView LayerBar.-empty { background: $surface; color: $text-muted; }
    StackView LayerBar.-pending { background: $boost; color: $text-muted; }
    StackView LayerBar.-first { background: $error; color: $text; text-style: bold; }
    """

    class LayerSelected(Message):
        """A layer bar was clicked."""

        def __init__(self, layer: str) -> None:
            super().__init__()
            self.layer_name = layer

    def compose(self) -> ComposeResult:
        for layer in LAYERS:
            yield LayerBar(layer)

    def on_mount(self) -> None:
        self.border_title = "Stack"

    def show(self, states: list[LayerState], first_broken: str | None) -> None:
        """Paint every bar from `states` (one per layer, top to bottom)."""
        for state in states:
            self.query_one(f"#layer-{state.layer}", LayerBar).show(state, first=state.layer == first_broken)
