"""The main screen: host header, stack view, checks by layer, and the detail pane.

It only paints. The app owns the state (results, running checks, verbose) and calls :meth:`MainScreen.paint`
and :meth:`MainScreen.paint_check` as worker messages arrive.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Tree

from gpudoctor.checks.base import CheckSpec, Status
from gpudoctor.tui.layers import LayerState, first_broken, layer_states
from gpudoctor.tui.widgets.check_tree import CheckTree
from gpudoctor.tui.widgets.detail import DetailPane, check_detail, layer_detail
from gpudoctor.tui.widgets.host_header import HostHeader, tally_line
from gpudoctor.tui.widgets.stack import StackView

if TYPE_CHECKING:
    from gpudoctor.tui.app import GpuDoctorApp

PROBLEMS = (Status.FAIL, Status.ERROR, Status.WARN)


class MainScreen(Screen[None]):
    """Where a session starts and returns to."""

    BINDING_GROUP_TITLE = "gpudoctor"

    DEFAULT_CSS = """
    MainScreen { layout: vertical; }
    MainScreen #body { height: 1fr; }
    MainScreen #left { width: 38; height: 1fr; }
    MainScreen #right { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, specs: Sequence[CheckSpec], demo: str | None) -> None:
        super().__init__(id="main")
        self._specs = list(specs)
        self._by_id = {s.id: s for s in specs}
        self._demo = demo
        self._states: list[LayerState] = []
        self._dirty: set[str] = set()
        self._flush_scheduled = False

    @property
    def gd_app(self) -> GpuDoctorApp:
        from gpudoctor.tui.app import GpuDoctorApp

        assert isinstance(self.app, GpuDoctorApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield HostHeader(demo=self._demo, id="host-header")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield StackView(id="stack")
                yield CheckTree(id="checks")
            with Vertical(id="right"):
                yield DetailPane(id="detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        tree = self.query_one(CheckTree)
        tree.populate(self._specs)
        tree.focus()
        self.paint()

    # -- painting -----------------------------------------------------------------------------------------

    def set_host(self, host: Mapping[str, Any]) -> None:
        self.query_one(HostHeader).set_host(host)

    def paint(self) -> None:
        """Repaint everything from the app's state."""
        self._dirty.clear()
        for spec in self._specs:
            self._paint_label(spec.id)
        self._paint_summary()

    def paint_check(self, check_id: str) -> None:
        """Repaint what one check's event changes: its label, the layers, the tally, maybe the details.

        Events come in bursts (two per check), so they are coalesced into one paint per 50 ms.
        """
        self._dirty.add(check_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(0.05, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        for check_id in dirty:
            self._paint_label(check_id)
        self._paint_summary()

    def tick(self) -> None:
        """Advance the spinners of running checks (called a few times a second while a run is going)."""
        for check_id in list(self.gd_app.running):
            self._paint_label(check_id)
        selected = self.query_one(CheckTree).selected_id
        if selected in self.gd_app.running:
            self.paint_detail()

    def _paint_label(self, check_id: str) -> None:
        app = self.gd_app
        started = app.running.get(check_id)
        self.query_one(CheckTree).show_check(
            check_id,
            app.results.get(check_id),
            running_s=None if started is None else time.monotonic() - started,
            tick=app.tick_count,
            verbose=app.verbose,
        )

    def _paint_summary(self) -> None:
        app = self.gd_app
        shown = {cid: r for cid, r in app.results.items() if cid in self._by_id}
        self._states = layer_states({s.id: s.layer for s in self._specs}, shown)
        broken = first_broken(self._states)
        self.query_one(StackView).show(self._states, broken)
        self.query_one(CheckTree).show_layers(self._states)
        counts = {s.value: 0 for s in Status}
        for res in shown.values():
            counts[res.status.value] += 1
        self.query_one(HostHeader).set_tally(
            tally_line(counts, total=len(self._specs), running=len(app.running), first_broken=broken)
        )
        self.paint_detail()

    def paint_detail(self) -> None:
        app = self.gd_app
        tree = self.query_one(CheckTree)
        pane = self.query_one(DetailPane)
        check_id = tree.selected_id
        if check_id is not None:
            spec = self._by_id[check_id]
            result = app.results.get(check_id)
            fixes = [(f.id, f.title) for f in app.fixes_for(result)] if result is not None else []
            pane.show(check_detail(spec, result, fixes=fixes, running=check_id in app.running, verbose=app.verbose))
            return
        layer = tree.selected_layer
        if layer is not None and self._states:
            state = next(s for s in self._states if s.layer == layer)
            checks = [(self._by_id[cid], app.results.get(cid)) for cid in tree.check_ids_in(layer)]
            pane.show(layer_detail(state, checks))

    # -- navigation ---------------------------------------------------------------------------------------

    @property
    def selected_id(self) -> str | None:
        return self.query_one(CheckTree).selected_id

    def select_check(self, check_id: str) -> None:
        self.query_one(CheckTree).select_check(check_id)

    def first_problem(self) -> str | None:
        """The first check that failed or errored, top to bottom; else the first warning."""
        results = self.gd_app.results
        for wanted in ((Status.FAIL, Status.ERROR), (Status.WARN,)):
            for spec in self._specs:
                res = results.get(spec.id)
                if res is not None and res.status in wanted:
                    return spec.id
        return None

    def next_problem(self) -> str | None:
        """The next check after the cursor (wrapping) that did not pass or skip."""
        results = self.gd_app.results
        ids = [s.id for s in self._specs]
        problems = [cid for cid in ids if cid in results and results[cid].status in PROBLEMS]
        if not problems:
            return None
        current = self.selected_id
        if current is None:
            layer = self.query_one(CheckTree).selected_layer
            start = next((i for i, cid in enumerate(ids) if self._by_id[cid].layer == layer), -1) - 1
        else:
            start = ids.index(current)
        for offset in range(1, len(ids) + 1):
            cid = ids[(start + offset) % len(ids)]
            if cid in problems:
                return cid
        return None

    @on(Tree.NodeHighlighted)
    def _highlighted(self) -> None:
        self.paint_detail()

    @on(StackView.LayerSelected)
    def _layer_clicked(self, event: StackView.LayerSelected) -> None:
        tree = self.query_one(CheckTree)
        tree.select_layer(event.layer_name)
        tree.focus()
