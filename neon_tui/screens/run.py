"""RunScreen: live state of every target, then the results (masked) to copy or store."""

from __future__ import annotations


from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from neon_tui.screens.base import NeonScreen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from neon_tui.neon.secret import Secret
from neon_tui.rotation.engine import RotationEngine
from neon_tui.rotation.events import RotationResult, RunFinished, RunStarted, TargetChanged
from neon_tui.rotation.journal import FAILED, JournalState
from neon_tui.rotation.plan import Plan, Target, TargetKey

DONE_STATES = frozenset({"rotated", "delivered", "failed", "skipped", "cancelled"})
STATE_STYLE = {"rotated": "bold", "delivered": "bold", "failed": "bold reverse", "unknown": "reverse",
               "resetting": "italic", "applying": "italic", "cancelled": "dim", "planned": "dim"}


def masked(uri: Secret) -> str:
    """postgresql://role:********@host/db?… : shows where it goes, never the password."""
    text = uri.reveal()
    scheme, _, rest = text.partition("://")
    creds, at, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:********@{hostpart}" if at else "********"


class RunScreen(NeonScreen):
    """Runs the engine in a worker; one message per engine event."""

    BINDINGS = [
        Binding("v", "reveal", "Reveal", id="reveal"),
        Binding("c", "copy", "Copy", id="copy"),
        Binding("p", "toggle_pooled", "Pooled/direct", show=False, id="toggle-pooled"),
        Binding("k", "keyring", "Keyring", id="keyring"),
        Binding("e", "copy_env", "Copy all as .env", id="copy-env"),
        Binding("R", "retry_failed", "Retry/continue", id="retry-failed"),
        Binding("x", "cancel_run", "Cancel run", id="cancel-run"),
        Binding("escape", "back", "Back", id="run-back"),
        Binding("j", "cursor_down", "Down", show=False, id="run-down"),
    ]

    class EngineEvent(Message):
        def __init__(self, event) -> None:
            super().__init__()
            self.event = event

    def __init__(self, plan: Plan, engine: RotationEngine, resume: JournalState | None = None) -> None:
        super().__init__()
        self.plan = plan
        self.engine = engine
        self.resume = resume
        self.rows: dict[TargetKey, Target] = {t.key: t for t in plan.targets}
        self.states: dict[TargetKey, str] = {}
        self.details: dict[TargetKey, str] = {}
        self.revealed: set[TargetKey] = set()
        self.pooled = False
        self.started = 0.0
        self.finished_at: float | None = None
        self.running = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-head", markup=False)
        yield ProgressBar(total=len(self.plan.targets), show_eta=False, id="run-progress")
        yield DataTable(id="run-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="run-selected", markup=False)
        yield Static("", id="run-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # Fixed widths: live details come and go, and a column that grew for one would push the
        # connection strings off an 80-column screen.
        label_width = min(30, max((len(t.label) for t in self.plan.targets), default=10))
        table.add_column("state", key="state", width=9)
        table.add_column("target", key="target", width=label_width)
        table.add_column("detail", key="detail", width=24)
        table.add_column("connection string", key="conn", width=120)
        for t in self.plan.targets:
            table.add_row("planned", Text(t.label, overflow="ellipsis", no_wrap=True), "", "", key="/".join(t.key))
        table.focus()
        self.started = self.app.monotonic()
        self.set_interval(1.0, self.tick)
        self.run_engine(self.plan, self.resume, False)

    @work(exclusive=True, group="rotation", exit_on_error=False, description="Rotating passwords")
    async def run_engine(self, plan: Plan, resume: JournalState | None, retry_failed: bool) -> None:
        self.running = True
        self.finished_at = None
        try:
            async for ev in self.engine.run(plan, resume=resume, retry_failed=retry_failed):
                self.post_message(self.EngineEvent(ev))
        finally:
            self.running = False

    def on_run_screen_engine_event(self, message: EngineEvent) -> None:
        ev = message.event
        if isinstance(ev, RunStarted):
            self.started = self.app.monotonic()
        elif isinstance(ev, TargetChanged):
            self.states[ev.key] = ev.state
            if ev.state == "applying" and ev.operations:
                waiting = [f"{o.action} {o.status}" for o in ev.operations if not o.done]
                self.details[ev.key] = "waiting: " + ", ".join(waiting) if waiting else "operations done"
            elif ev.reason:
                self.details[ev.key] = ev.reason
            elif ev.state in ("rotated", "delivered"):
                self.details[ev.key] = "new password live"
            self.update_row(ev.key)
            if ev.state in ("rotated", "failed"):
                self.refresh_bindings()
        elif isinstance(ev, RunFinished):
            self.refresh_bindings()
            self.finished_at = self.app.monotonic()
            failed = ev.counts.get("failed", 0)
            cancelled = ev.counts.get("cancelled", 0)
            if cancelled:
                self.notify(f"Run cancelled: {cancelled} target(s) not started. R continues with them.",
                            severity="warning", timeout=8)
            elif failed:
                self.notify(f"{failed} target(s) failed: R retries them.", severity="error", timeout=8)
            elif ev.counts.get("unknown", 0):
                self.notify("Some targets are unknown: quit and resume to reconcile them.", severity="warning")
            else:
                self.notify("Every target rotated. Copy or store the new connection strings now.", timeout=8)
            self._tell_tree()
        self.tick()

    def _tell_tree(self) -> None:
        """Unmark what rotated and have the tree reload the roles it touched (their ages changed)."""
        done = [k for k, state in self.states.items() if state in ("rotated", "delivered")]
        touched = sorted({(t.project_id, t.branch_id) for t in self.plan.targets})
        main = next((s for s in self.app.screen_stack if s.__class__.__name__ == "MainScreen"), None)
        if main is not None:
            main.after_run(done, touched)

    def undelivered(self) -> list[TargetKey]:
        return [k for k in self.engine.results if self.states.get(k) == "rotated"]

    def leave_question(self) -> str | None:
        """What leaving would cost, as a question, or None when nothing would be lost."""
        if self.running:
            return ("A run is in progress. If you leave, resets in flight finish and the run is offered for "
                    "resuming next time (reconciled, never repeated). Leave anyway?")
        waiting = self.undelivered()
        if waiting:
            lost = sum(1 for k in waiting if not self.rows[k].store_passwords)
            extra = (f" {lost} of them are in projects that do not store passwords: those are lost for good."
                     if lost else " Neon stores them, so resuming can read them back.")
            return (f"{len(waiting)} new password(s) have not been copied or stored yet.{extra} Leave anyway?")
        return None

    def result(self, key: TargetKey) -> RotationResult | None:
        return self.engine.results.get(key)

    def connection(self, key: TargetKey) -> Secret | None:
        res = self.result(key)
        c = res.primary if res else None
        if c is None:
            return None
        return (c.pooled or c.direct) if self.pooled else c.direct

    def update_row(self, key: TargetKey) -> None:
        table = self.query_one(DataTable)
        state = self.states.get(key, "planned")
        row = "/".join(key)
        table.update_cell(row, "state", Text(state, style=STATE_STYLE.get(state, "")))
        table.update_cell(row, "detail", Text(self.details.get(key, ""), overflow="ellipsis", no_wrap=True))
        conn = self.connection(key)
        shown = "" if conn is None else (conn.reveal() if key in self.revealed else masked(conn))
        res = self.result(key)
        if res is not None and not res.connections:
            shown = "no compute: no connection string"
        table.update_cell(row, "conn", Text(shown, no_wrap=True, overflow="ellipsis"))
        if key == self.selected_key():
            self.show_selected()

    def on_data_table_row_highlighted(self) -> None:
        self.show_selected()

    def show_selected(self) -> None:
        """The whole string of the row under the cursor (masked unless revealed): the table cuts it."""
        key = self.selected_key()
        text = ""
        if key is not None:
            conn = self.connection(key)
            detail = self.details.get(key, "")
            if conn is not None:
                text = conn.reveal() if key in self.revealed else masked(conn)
            elif detail:
                text = f"{self.rows[key].label}: {detail}"
        self.query_one("#run-selected", Static).update(text)

    def tick(self) -> None:
        done = sum(1 for s in self.states.values() if s in DONE_STATES)
        self.query_one(ProgressBar).update(progress=done)
        end = self.finished_at or self.app.monotonic()
        counts: dict[str, int] = {}
        for s in self.states.values():
            counts[s] = counts.get(s, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        status = "running" if self.running else ("cancelled" if self.engine.cancelled else "finished")
        self.query_one("#run-head", Static).update(
            f"{status} · {done}/{len(self.plan.targets)} · {end - self.started:.0f}s elapsed · {summary}")
        clip = self.app.clipboard_status()
        view = "pooled" if self.pooled else "direct"
        journal = self.engine.journal.run_id if self.engine.journal else "-"
        # The countdown first: on an 80-column terminal the end of this line is cut off.
        self.query_one("#run-status", Static).update(" · ".join(
            part for part in (clip, f"{view} strings", f"journal {journal}") if part))

    # ------------------------------------------------------------- actions

    def selected_key(self) -> TargetKey | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return next((k for k in self.rows if "/".join(k) == row_key.value), None)

    def _selected_result(self) -> tuple[TargetKey, Secret] | None:
        key = self.selected_key()
        if key is None:
            return None
        conn = self.connection(key)
        if conn is None:
            self.notify("No new connection string for this target (yet).", severity="warning")
            return None
        return key, conn

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show only the keys that can do something now (the help lists them all)."""
        has_results = bool(self.engine.results)
        if action in ("reveal", "copy", "keyring", "copy_env", "toggle_pooled"):
            return True if has_results else None
        if action == "cancel_run":
            return self.running
        if action == "retry_failed":
            return (not self.running) and any(s in (FAILED, "cancelled") for s in self.states.values())
        return True

    def action_reveal(self) -> None:
        key = self.selected_key()
        if key is None:
            return
        self.revealed.symmetric_difference_update({key})
        self.update_row(key)

    def action_toggle_pooled(self) -> None:
        self.pooled = not self.pooled
        for key in self.rows:
            self.update_row(key)
        self.tick()

    def action_copy(self) -> None:
        picked = self._selected_result()
        if picked is None:
            return
        key, conn = picked
        if self.app.copy_secret(conn, f"{self.rows[key].label} ({'pooled' if self.pooled else 'direct'})"):
            self._delivered(key, "clipboard")

    def _delivered(self, key: TargetKey, sink: str) -> None:
        self.engine.mark_delivered(key, sink)
        self.engine.finish_journal()  # every password out: the run is complete
        self.states[key] = "delivered"
        self.details[key] = f"delivered to {sink}"
        self.update_row(key)

    def action_copy_env(self) -> None:
        from neon_tui.rotation.delivery import dotenv_block

        results = [self.engine.results[k] for k in self.rows if k in self.engine.results]
        if not results:
            self.notify("No results yet.", severity="warning")
            return
        if self.app.copy_secret(Secret(dotenv_block(results)), f".env block for {len(results)} target(s)"):
            for r in results:
                self._delivered(r.target.key, "clipboard")

    def action_keyring(self) -> None:
        key = self.selected_key()
        if key is None or key not in self.engine.results:
            self.notify("No new connection string for this target (yet).", severity="warning")
            return
        self.store_in_keyring(key)

    @work(group="keyring", exit_on_error=False, description="Storing in the keyring")
    async def store_in_keyring(self, key: TargetKey) -> None:
        from neon_tui.rotation.delivery import KeyringSink
        from neon_tui.secrets import KeyringUnavailable

        try:
            sink = await self.app.run_in_thread(KeyringSink)
            await sink.deliver(self.engine.results[key])
        except KeyringUnavailable as e:
            self.notify(str(e), title="Keyring unavailable", severity="error", timeout=10, markup=False)
            return
        self._delivered(key, "keyring")
        self.notify(f"Stored in the keyring ({sink.backend}): service neon-tui/{key[0]}/{key[1]}", markup=False)

    def action_retry_failed(self) -> None:
        """Reset failed targets again (an explicit second reset) and start cancelled ones."""
        if self.running:
            self.notify("Wait for the run to finish.", severity="warning")
            return
        again = [t for t in self.plan.targets if self.states.get(t.key) in (FAILED, "cancelled")]
        if not again:
            self.notify("No failed or cancelled targets.", severity="information")
            return
        sub = Plan(targets=again, org_id=self.plan.org_id)
        snapshot = JournalState(self.engine.journal.path if self.engine.journal else None,  # type: ignore[arg-type]
                                {}, {t.key: self.engine._jt[t.key] for t in again}, False)
        self.run_engine(sub, snapshot, True)

    def action_cancel_run(self) -> None:
        if self.running:
            self.engine.cancel()
            self.notify("Cancelling: no new resets; those in flight finish.", severity="warning")

    def action_back(self) -> None:
        if self.running:
            self.notify("A run is in progress: x cancels it.", severity="warning")
            return
        question = self.leave_question()
        if question is None:
            self.app.pop_screen()
            return
        from neon_tui.screens.modals import YesNoModal

        def answer(yes: bool | None) -> None:
            if yes:
                self.app.pop_screen()

        self.app.push_screen(YesNoModal("Leave the results?", question, "Leave", "Stay"), answer)

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()
