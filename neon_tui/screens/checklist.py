"""ChecklistScreen (`C`): Neon's breach checklist, one line per step with its live state; enter opens the step."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from neon_tui.incident.checklist import GLYPHS, Step
from neon_tui.screens.base import NeonScreen

# The app action of each step's view that other parts of the app provide (looked up safely: a view this
# build does not have is said, never a crash).
APP_ACTIONS = {"keys": "open_keys", "ipallow": "open_ipallow", "audit": "open_audit"}


class ChecklistScreen(NeonScreen):
    BINDINGS = [
        Binding("enter", "open_step", "Open step", id="checklist-open"),
        Binding("w", "write_report", "Write report", id="checklist-report"),
        Binding("ctrl+r", "refresh_steps", "Refresh", id="checklist-refresh"),
        Binding("escape", "back", "Tree", id="checklist-back"),
        Binding("j", "cursor_down", "Down", show=False, id="checklist-down"),
        Binding("k", "cursor_up", "Up", show=False, id="checklist-up"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Step] = []
        self.loaded = 0  # how many times the steps were derived (tests wait on it)
        self.scope = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Incident checklist (Neon's breach FAQ): each step's state from the journals and the account",
                     id="checklist-head", markup=False)
        yield DataTable(id="checklist-table", cursor_type="row", zebra_stripes=False)
        yield Static("", id="checklist-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(" ", "step", "state", "now")
        table.focus()
        self.refresh_steps()

    def on_screen_resume(self) -> None:
        if self.loaded:
            self.refresh_steps()

    def action_refresh_steps(self) -> None:
        self.refresh_steps()

    def scope_args(self) -> dict:
        """Journals of this account's API host only; in the demo, only those of this session (an earlier drill's
        journals are about another simulated account, even though it has the same ids)."""
        client = getattr(self.app, "client", None)
        args: dict = {"host": str(client.base_url)} if client is not None else {}
        if getattr(self.app, "demo", False):
            args["not_before"] = getattr(self.app, "started_at", None)
        account = getattr(self.app, "_account", None)  # the key's account (app.account_id()), once known
        if account:
            args["account"] = account
        return args

    async def _know_account(self) -> None:
        try:
            await self.app.account_id()
        except Exception:  # no account known: the host (and in the demo the session) still scope the journals
            pass

    @work(exclusive=True, group="checklist", exit_on_error=False, description="Reading the incident's journals")
    async def refresh_steps(self) -> None:
        from neon_tui.incident.checklist import checklist, confirm
        from neon_tui.incident.journals import load

        await self._know_account()
        scope = self.scope_args()
        inputs = await asyncio.to_thread(lambda: load(None, **scope))
        account = None
        client = getattr(self.app, "client", None)
        if client is not None:
            try:
                account = await confirm(client, inputs.runs, inputs.actions)
            except Exception:  # the account could not be asked: the journals still say where things stand
                account = None
        self.steps = checklist(inputs.runs, inputs.actions, account)
        if inputs.since is not None:
            when = inputs.since.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            why = "the leak time of the newest scan" if inputs.since_source.startswith("leaked_at") else \
                inputs.since_source
            self.scope = f"journals since {when} ({why})"
        else:
            self.scope = "every journal" + (" of this demo session" if getattr(self.app, "demo", False) else
                                            " of this API host") + " (no leak time known: give one when loading the leak)"
        self._draw()
        self.loaded += 1

    def _draw(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for n, s in enumerate(self.steps, 1):
            table.add_row(GLYPHS[s.state], f"{n}. {s.short}", s.state, s.figure, key=s.id)
        if self.steps:
            table.move_cursor(row=min(max(row, 0), len(self.steps) - 1))
        self._show_detail()

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _current(self) -> Step | None:
        table = self.query_one(DataTable)
        if not self.steps or table.cursor_row is None or not 0 <= table.cursor_row < len(self.steps):
            return None
        return self.steps[table.cursor_row]

    def _show_detail(self) -> None:
        s = self._current()
        text = "" if s is None else "\n".join([f"{s.title} — {s.figure}", *s.details[:6],
                                                f"enter: {self.describe_view(s.view)} · scope: {self.scope}"])
        self.query_one("#checklist-detail", Static).update(text)

    def describe_view(self, view: str) -> str:
        return {"leak": "load the leak (L)", "run": "review or open the run", "deliver": "the deliveries view",
                "keys": "API keys", "ipallow": "IP allow", "audit": "the role audit",
                "report": "write the report (w)"}.get(view, view)

    # ------------------------------------------------------------------ opening a step

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # The table has the focus and takes enter itself: a selected row opens its step.
        event.stop()
        self.action_open_step()

    def action_open_step(self) -> None:
        s = self._current()
        if s is not None:
            self.open_view(s.view)

    def open_view(self, view: str) -> bool:
        """Open the view that does a step; False (and a notice) when this session cannot."""
        from neon_tui.screens.main import MainScreen

        app = self.app
        main = next((x for x in app.screen_stack if isinstance(x, MainScreen)), None)
        if view == "report":
            self.action_write_report()
            return True
        if view == "leak":
            if main is None:
                return self._cannot("the account is not loaded yet")
            self._back_to(main)
            main.action_load_leak()
            return True
        if view == "run":
            if getattr(app, "session", None) is not None:
                app.action_open_run()
                return True
            if main is None:
                return self._cannot("the account is not loaded yet")
            self._back_to(main)
            if main.tree.marks:
                main.action_review()
            else:
                self.notify("Mark the exposed roles (L finds them, space marks), then r reviews the rotation.",
                            markup=False)
            return True
        if view == "deliver":
            session = getattr(app, "session", None)
            if session is None:
                return self._cannot("no run in this session: the deliveries view follows a run")
            from neon_tui.screens.deliver import DeliverScreen

            app.push_screen(DeliverScreen(session))
            return True
        action = APP_ACTIONS.get(view)
        if action is not None and callable(getattr(app, f"action_{action}", None)):
            app.call_later(app.run_action, action)
            return True
        return self._cannot(f"the {self.describe_view(view)} view is not in this build")

    def _back_to(self, screen) -> None:
        while self.app.screen is not screen and len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def _cannot(self, why: str) -> bool:
        self.notify(why[:1].upper() + why[1:] + ".", severity="warning", markup=False)
        return False

    # ------------------------------------------------------------------ the report

    def action_write_report(self) -> None:
        self.write_report()

    @work(exclusive=True, group="checklist-report", exit_on_error=False, description="Writing the incident report")
    async def write_report(self) -> None:
        from neon_tui.incident.journals import load
        from neon_tui.incident.report import ReportError, build_report
        from neon_tui.paths import state_dir
        from neon_tui.report_cli import write_report_file
        from neon_tui.rotation.journal import JournalError

        await self._know_account()
        scope = self.scope_args()

        def write():
            inputs = load(None, **scope)
            report = build_report(inputs.runs, inputs.actions, inputs.since, since_source=inputs.since_source,
                                  problems=inputs.problems)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            return write_report_file(report, state_dir() / "reports" / f"incident-{stamp}.md", "markdown"), report

        try:
            path, report = await asyncio.to_thread(write)
        except (ReportError, JournalError, OSError) as e:
            self.notify(f"The report was not written: {e}", title="Report", severity="error", markup=False)
            return
        self.last_report = path
        self.notify(f"Report written to {path} ({len(report.open_actions)} open action(s)).", title="Report",
                    markup=False, timeout=15)
        self.refresh_steps()

    # ------------------------------------------------------------------ navigation

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()
