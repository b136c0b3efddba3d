"""The stack view's arithmetic: each layer's state from the checks' results (no Textual here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gpudoctor.checks.base import LAYERS, CheckResult, Status
from gpudoctor.report.model import worst
from gpudoctor.tui.style import BROKEN


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerState:
    """One layer of the stack.

    `status` is the worst status among the finished checks that ran (pass/warn/fail/error); a layer whose
    finished checks all skipped is skip; None while nothing has finished. `skipped` counts the skips, so a
    layer that passed with one check left out (a live probe under --offline) reads "ok, 1 skipped", not
    "skipped".
    """

    layer: str
    status: Status | None
    total: int
    pending: int
    skipped: int = 0

    @property
    def broken(self) -> bool:
        return self.status in BROKEN


def layer_states(layer_of: Mapping[str, str], results: Mapping[str, CheckResult]) -> list[LayerState]:
    """The state of every layer, top to bottom. `layer_of` maps each shown check id to its layer."""
    states: list[LayerState] = []
    for layer in LAYERS:
        ids = [cid for cid, lay in layer_of.items() if lay == layer]
        finished = [results[cid].status for cid in ids if cid in results]
        ran = [st for st in finished if st is not Status.SKIP]
        status = worst(ran) if ran else (Status.SKIP if finished else None)
        states.append(
            LayerState(
                layer=layer,
                status=status,
                total=len(ids),
                pending=len(ids) - len(finished),
                skipped=len(finished) - len(ran),
            )
        )
    return states


def first_broken(states: list[LayerState]) -> str | None:
    """The first layer from the top whose worst status is fail or error."""
    for state in states:
        if state.broken:
            return state.layer
    return None
