"""CommandLogScreen (`@`): the API calls made, like k9s's or lazygit's command log (no secrets in it)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from neon_tui.screens.base import NeonScreen
from textual.widgets import DataTable, Footer, Header, Static


class CommandLogScreen(NeonScreen):
    BINDINGS = [
        Binding("escape,at", "app.pop_screen", "Back", id="log-back"),
        Binding("j", "cursor_down", "Down", show=False, id="log-down"),
        Binding("k", "cursor_up", "Up", show=False, id="log-up"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="log-head", markup=False)
        yield DataTable(id="log-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("#", "status", "method", "ms", "try", "path", "request id")
        self._shown = 0
        self.refresh_log()
        self.set_interval(0.5, self.refresh_log)
        table.focus()

    def refresh_log(self) -> None:
        client = self.app.client
        if client is None:
            return
        table = self.query_one(DataTable)
        history = list(client.history)
        total = client.requests_sent
        # The history is a bounded deque: show only what is newer than the last refresh.
        first_new = max(0, len(history) - max(0, total - self._shown))
        for i, rec in enumerate(history[first_new:], start=self._shown + 1):
            table.add_row(str(i), str(rec.status or rec.error), rec.method, f"{rec.duration * 1000:.0f}",
                          str(rec.attempt), rec.path, rec.request_id or "")
        self._shown = total
        self.query_one("#log-head", Static).update(
            f"{total} API requests this session (method, path, status; never headers or bodies)")

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()
