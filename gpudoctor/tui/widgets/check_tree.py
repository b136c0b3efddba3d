"""The checks, grouped by layer, each with its live status: pending, running (spinner), then a mark."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from gpudoctor.checks.base import LAYERS, CheckResult, CheckSpec
from gpudoctor.tui.layers import LayerState
from gpudoctor.tui.style import LAYER_TITLES, MARKS, PENDING_MARK, SLOW_AFTER_S, SPINNER, STYLES

LAYER_PREFIX = "layer:"


def check_label(
    spec: CheckSpec,
    result: CheckResult | None,
    *,
    running_s: float | None,
    tick: int = 0,
    verbose: bool = False,
) -> Text:
    """The tree label of one check. A running check spins; past SLOW_AFTER_S it says so in words."""
    text = Text()
    if running_s is not None:
        text.append(SPINNER[tick % len(SPINNER)], style="bold cyan")
        text.append(f" {spec.title}")
        if running_s >= SLOW_AFTER_S:
            text.append(f"  still running {running_s:.0f}s", style="italic")
        else:
            text.append("  running", style="italic dim")
        return text
    if result is None:
        text.append(PENDING_MARK, style="dim")
        text.append(f" {spec.title}", style="dim")
        return text
    text.append(MARKS[result.status], style=STYLES[result.status])
    text.append(f" {spec.title}")
    if verbose:
        text.append(f"  {result.duration_ms:.0f} ms", style="dim")
    return text


def layer_label(state: LayerState) -> Text:
    text = Text()
    if state.status is None:
        text.append(PENDING_MARK, style="dim")
    else:
        text.append(MARKS[state.status], style=STYLES[state.status])
    text.append(f" {LAYER_TITLES[state.layer]}", style="bold")
    done = state.total - state.pending
    text.append(f"  {done}/{state.total}" if state.pending else f"  {state.total}", style="dim")
    return text


class CheckTree(Tree[str]):
    """Layer nodes (data ``layer:<name>``) holding one leaf per check (data = the check id)."""

    DEFAULT_CSS = """
    CheckTree {
        border: round $primary-muted;
        border-title-align: left;
        padding: 0;
        height: 1fr;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    CheckTree:focus { border: round $primary; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("checks", id=id)
        self.show_root = False
        self.guide_depth = 2
        self._specs: dict[str, CheckSpec] = {}
        self._check_nodes: dict[str, TreeNode[str]] = {}
        self._layer_nodes: dict[str, TreeNode[str]] = {}
        # Cursor moves still waiting for the tree to lay its lines out (a busy machine can take several
        # refreshes); tests and callers that need the cursor in place wait for this to reach 0.
        self.pending_moves = 0

    def on_mount(self) -> None:
        self.border_title = "Checks"

    def populate(self, specs: Sequence[CheckSpec]) -> None:
        """One node per layer that has checks, with a pending leaf per check, all expanded."""
        self.clear()
        self._specs = {s.id: s for s in specs}
        self._check_nodes.clear()
        self._layer_nodes.clear()
        for layer in LAYERS:
            in_layer = [s for s in specs if s.layer == layer]
            if not in_layer:
                continue
            state = LayerState(layer=layer, status=None, total=len(in_layer), pending=len(in_layer))
            node = self.root.add(layer_label(state), data=f"{LAYER_PREFIX}{layer}", expand=True)
            self._layer_nodes[layer] = node
            for spec in in_layer:
                self._check_nodes[spec.id] = node.add_leaf(check_label(spec, None, running_s=None), data=spec.id)

    def show_check(
        self, check_id: str, result: CheckResult | None, *, running_s: float | None, tick: int, verbose: bool
    ) -> None:
        node = self._check_nodes.get(check_id)
        if node is not None:
            node.set_label(
                check_label(self._specs[check_id], result, running_s=running_s, tick=tick, verbose=verbose)
            )

    def show_layers(self, states: Sequence[LayerState]) -> None:
        for state in states:
            node = self._layer_nodes.get(state.layer)
            if node is not None:
                node.set_label(layer_label(state))

    def select_check(self, check_id: str) -> None:
        node = self._check_nodes.get(check_id)
        if node is not None:
            self._move_to(node)

    def select_layer(self, layer: str) -> None:
        node = self._layer_nodes.get(layer)
        if node is not None:
            self._move_to(node)

    def _move_to(self, node: TreeNode[str], attempts: int = 50) -> None:
        if node.parent is not None and not node.parent.is_expanded:
            node.parent.expand()
        if node.line < 0:  # the tree lays out its lines lazily: try again once it has
            if attempts > 0:
                self.pending_moves += 1
                self.call_after_refresh(self._deferred_move, node, attempts - 1)
            return
        self.move_cursor(node)
        # The screen may still be settling its layout (the header's height): scroll once it has.
        self.call_after_refresh(self.scroll_to_node, node, False)

    def _deferred_move(self, node: TreeNode[str], attempts: int) -> None:
        self.pending_moves -= 1
        self._move_to(node, attempts)

    @property
    def selected_id(self) -> str | None:
        """The check id under the cursor (None on a layer node)."""
        node = self.cursor_node
        if node is None or node.data is None or node.data.startswith(LAYER_PREFIX):
            return None
        return node.data

    @property
    def selected_layer(self) -> str | None:
        node = self.cursor_node
        if node is None or node.data is None:
            return None
        if node.data.startswith(LAYER_PREFIX):
            return node.data[len(LAYER_PREFIX):]
        spec = self._specs.get(node.data)
        return spec.layer if spec else None

    def check_ids(self) -> list[str]:
        return list(self._check_nodes)

    def check_ids_in(self, layer: str) -> list[str]:
        return [cid for cid, spec in self._specs.items() if spec.layer == layer]

    def layer_of(self) -> Mapping[str, str]:
        return {cid: spec.layer for cid, spec in self._specs.items()}
