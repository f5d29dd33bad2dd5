"""DeliverScreen: delivery state per target per sink (targets × sinks), with a per-cell retry.

Cells: ✓ delivered (the receipt on the detail line), ✗ reason (failed), … pending, – not applicable (the
target was skipped, failed or cancelled). It redraws from the session every half second, so it follows a
run in progress. `r` on a failed cell retries that sink for that target (on the target column: every
failed sink of the row), through RunSession.retry_delivery. Never shows a password.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Label, Static

from neon_tui.rotation.journal import TargetState
from neon_tui.rotation.plan import TargetKey
from neon_tui.rotation.session import RunSession, TargetView
from neon_tui.rotation.sinks import SinkError
from neon_tui.screens.run import break_points

S = TargetState
NOT_APPLICABLE = frozenset({S.SKIPPED, S.FAILED, S.CANCELLED})


def cell(view: TargetView, sink: str) -> str:
    """✓ | ✗ reason | … | – for one target and one sink."""
    if sink in view.delivered:
        return "✓"
    if sink in view.delivery_failed:
        return "✗ " + view.delivery_failed[sink]
    if view.state in NOT_APPLICABLE:
        return "–"
    return "…"


class DeliverScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("r", "retry", "Retry delivery", id="deliver-retry"),
        Binding("escape,D", "close", "Back", id="deliver-back"),
    ]

    def __init__(self, session: RunSession) -> None:
        super().__init__()
        self.session = session
        self.keys: list[TargetKey] = [t.key for t in session.plan.targets]
        self.columns: list[str] = []
        self.laid_out_for = 0
        self.message = ""

    def one_project(self) -> str | None:
        names = {t.project_name for t in self.session.plan.targets}
        return names.pop() if len(names) == 1 else None

    def label(self, key: TargetKey) -> str:
        """branch/role when the run has one project (named in the column's title), else the whole label."""
        t = self.session.view(key).target
        project = self.one_project()
        return t.label.removeprefix(f"{project}/") if project else t.label

    def target_title(self) -> str:
        project = self.one_project()
        return f"target in {project}" if project else "target"

    def sink_names(self) -> list[str]:
        """The run's sinks, then any other name a delivery went to (by hand, a replaced sink)."""
        names = [s.name for s in self.session.sinks]
        for v in self.session.views():
            for n in [*v.delivered, *v.delivery_failed]:
                if n not in names:
                    names.append(n)
        return names

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -deliver", id="deliver-dialog"):
            yield Label("Delivery: targets × sinks", classes="dialog-title")
            yield DataTable(id="deliver-table", cursor_type="cell", zebra_stripes=True)
            yield Static("", id="deliver-detail", markup=False)
            yield Static("✓ delivered  ✗ failed  … pending  – not applicable.  r retries the failed cell "
                         "(on the target: its failed sinks).  esc back", markup=False, classes="dialog-body")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()
        self.query_one(DataTable).focus()
        self.set_interval(0.5, self.redraw)

    def redraw(self) -> None:
        table = self.query_one(DataTable)
        names = self.sink_names()
        width = table.size.width or (self.app.size.width - 8)
        if names != self.columns or width != self.laid_out_for:
            row, col = table.cursor_coordinate
            table.clear(columns=True)
            sink_widths = [max(14, min(30, len(n) + 2)) for n in names]
            # The target column takes what the sinks leave (each column has a cell of padding either side).
            room = width - 2 - 2 * (1 + len(names)) - sum(sink_widths)
            labels = max((len(self.label(k)) for k in self.keys), default=10)
            table.add_column(self.target_title(), key="target", width=max(16, min(labels, room)))
            for n, w in zip(names, sink_widths):
                table.add_column(n, key="sink:" + n, width=w)
            for k in self.keys:
                table.add_row(*([""] * (1 + len(names))), key="/".join(k))
            self.columns = names
            self.laid_out_for = width
            table.move_cursor(row=row, column=col)
        for k in self.keys:
            table.update_cell("/".join(k), "target", Text(self.label(k), overflow="ellipsis", no_wrap=True))
            v = self.session.view(k)
            for n in names:
                text = cell(v, n)
                style = "bold" if text == "✓" else "bold reverse" if text.startswith("✗") else "dim"
                table.update_cell("/".join(k), "sink:" + n, Text(text, style=style, overflow="ellipsis", no_wrap=True))
        self.show_detail()

    def selected(self) -> tuple[TargetKey | None, str | None]:
        table = self.query_one(DataTable)
        if not self.keys:
            return None, None
        row, col = table.cursor_coordinate
        key = self.keys[min(row, len(self.keys) - 1)]
        sink = self.columns[col - 1] if 1 <= col <= len(self.columns) else None
        return key, sink

    def show_detail(self) -> None:
        key, _ = self.selected()
        if key is None:
            return
        v = self.session.view(key)
        parts = [f"{n}: {d}" for n, d in v.delivered.items()]
        parts += [f"{n} failed: {r}" for n, r in v.delivery_failed.items()]
        line = f"{v.target.label} ({v.state}): " + ("; ".join(parts) if parts else "nothing delivered yet")
        if self.message:
            line += "\n" + self.message
        detail = self.query_one("#deliver-detail", Static)
        # Receipts name hosts, paths and URLs: wrapped at their seams, never inside a host name.
        width = detail.content_region.width or (self.app.size.width - 10)
        detail.update("\n".join(break_points(part, width) for part in line.split("\n")))

    def on_resize(self) -> None:
        if self.is_mounted:
            self.redraw()

    def on_data_table_cell_highlighted(self) -> None:
        self.show_detail()

    def action_retry(self) -> None:
        key, sink = self.selected()
        if key is None:
            return
        failed = self.session.view(key).delivery_failed
        sinks = [sink] if sink is not None else list(failed)
        sinks = [n for n in sinks if n in failed]
        if not sinks:
            self.notify("Nothing failed here to retry: pick a ✗ cell.", severity="warning")
            return
        self.retry(key, sinks)

    @work(group="deliver-retry", exit_on_error=False, description="Retrying a delivery")
    async def retry(self, key: TargetKey, sinks: list[str]) -> None:
        label = self.session.view(key).target.label
        for name in sinks:
            self.message = f"retrying {name} for {label}…"
            self.show_detail()
            try:
                await self.session.retry_delivery(key, name)
            except SinkError as e:
                self.message = f"{name} still fails for {label}: {e}"
                self.notify(self.message, title="Still failing", severity="error", markup=False)
            else:
                self.message = f"delivered to {name} for {label}"
                self.notify(self.message, markup=False)
        self.redraw()
        # The run screen below redraws its rows from the session.
        refresh = getattr(self.app.screen_stack[-2] if len(self.app.screen_stack) > 1 else None, "redraw_all", None)
        if refresh is not None:
            refresh()

    def action_close(self) -> None:
        self.dismiss(None)
