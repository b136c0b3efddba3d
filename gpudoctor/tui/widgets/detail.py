"""The detail pane: the selected check's summary, evidence, remedy and fixes (or a layer's overview)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from gpudoctor.checks.base import CheckResult, CheckSpec, Status
from gpudoctor.tui.layers import LayerState
from gpudoctor.tui.style import LAYER_TITLES, MARKS, PENDING_MARK, STYLES, WORDS

# Evidence of passed and skipped checks is shown in verbose mode; problems always show theirs.
_ALWAYS_EVIDENCE = (Status.FAIL, Status.WARN, Status.ERROR)


def _heading(text: str) -> Text:
    return Text(text, style="bold underline")


def check_detail(
    spec: CheckSpec,
    result: CheckResult | None,
    *,
    fixes: Sequence[tuple[str, str]],
    running: bool,
    verbose: bool,
) -> RenderableType:
    """What the pane shows for one check. `fixes` are (fix id, title) pairs."""
    parts: list[RenderableType] = []
    head = Text()
    if result is None:
        head.append(PENDING_MARK + " ", style="dim")
    else:
        head.append(MARKS[result.status] + " ", style=STYLES[result.status])
    head.append(spec.title, style="bold")
    parts.append(head)
    sub = Text()
    if result is not None:
        sub.append(WORDS[result.status], style=STYLES[result.status])
        sub.append(" · ")
    sub.append(f"{spec.id} · {LAYER_TITLES.get(spec.layer, spec.layer)}", style="dim")
    parts.append(sub)
    parts.append(Text(""))
    if result is None:
        parts.append(Text("running…" if running else "waiting for the checks it depends on…", style="italic"))
        return Group(*parts)
    parts.append(Text(result.summary))
    if result.evidence and (verbose or result.status in _ALWAYS_EVIDENCE):
        parts += [Text(""), _heading("Evidence")]
        parts += [Text("  " + line, style="cyan") for line in result.evidence]
    elif result.evidence:
        parts.append(Text(f"({len(result.evidence)} lines of evidence: press v)", style="dim"))
    if result.remedy and result.status is not Status.PASS:
        parts += [Text(""), _heading("What to do")]
        parts += [Text("  " + line) for line in result.remedy.splitlines()]
    if fixes and result.status in _ALWAYS_EVIDENCE:
        parts += [Text(""), _heading("Fix (press f)")]
        for fix_id, title in fixes:
            line = Text("  ")
            line.append(fix_id, style="bold")
            line.append(f"  {title}")
            parts.append(line)
    if verbose:
        parts += [Text("")]
        if result.depends_on:
            parts.append(Text(f"depends on: {', '.join(result.depends_on)}", style="dim"))
        parts.append(Text(f"took {result.duration_ms:.1f} ms", style="dim"))
    return Group(*parts)


def layer_detail(state: LayerState, checks: Sequence[tuple[CheckSpec, CheckResult | None]]) -> RenderableType:
    """A layer's overview: one line per check with its summary."""
    head = Text()
    if state.status is not None:
        head.append(MARKS[state.status] + " ", style=STYLES[state.status])
    head.append(LAYER_TITLES[state.layer], style="bold")
    if state.pending:
        head.append(f"  checking… {state.total - state.pending}/{state.total}", style="italic")
    elif state.status is not None:
        head.append(f"  {WORDS[state.status]}", style=STYLES[state.status])
    parts: list[RenderableType] = [head, Text("")]
    if not checks:
        parts.append(Text("No checks look at this layer in this run.", style="dim"))
    for spec, result in checks:
        line = Text()
        if result is None:
            line.append(f"{PENDING_MARK} {spec.title}", style="dim")
        else:
            line.append(MARKS[result.status], style=STYLES[result.status])
            line.append(f" {spec.title}: ", style="bold")
            line.append(result.summary)
        parts.append(line)
    return Group(*parts)


class DetailPane(VerticalScroll, can_focus=True):
    """Scrollable details of what the tree's cursor is on."""

    DEFAULT_CSS = """
    DetailPane {
        border: round $primary-muted;
        border-title-align: left;
        padding: 0 1;
        height: 1fr;
        scrollbar-size-vertical: 1;
    }
    DetailPane:focus { border: round $primary; }
    DetailPane > Static { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text("Select a check to see its evidence.", style="dim"), id="detail-body")

    def on_mount(self) -> None:
        self.border_title = "Details"

    def show(self, renderable: RenderableType) -> None:
        self.query_one("#detail-body", Static).update(renderable)
