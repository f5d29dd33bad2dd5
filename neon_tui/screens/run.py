"""RunScreen: live state of every target, then the results (masked) to copy or store.

A thin front end over a RunSession: it sends requests (run, cancel, retry, deliver, answer the breaker)
and draws the events it receives. The session outlives the screen: leaving it and coming back (`o` on
the main screen, or "Open run" in the palette) shows the same run until every password is delivered.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from neon_tui.neon.secret import Secret
from neon_tui.rotation.events import (
    DeliveryFailed,
    Halted,
    RotationResult,
    RunFinished,
    RunStarted,
    TargetChanged,
    TargetVerified,
)
from neon_tui.rotation.journal import TargetState
from neon_tui.rotation.plan import TargetKey
from neon_tui.rotation.session import RunSession
from neon_tui.rotation.sinks import ClipboardSink, EnvBlockSink, KeyringSink, SinkError
from neon_tui.screens.base import NeonScreen

S = TargetState
DONE_STATES = frozenset({S.ROTATED, S.DELIVERED, S.FAILED, S.SKIPPED, S.CANCELLED, S.UNCONFIRMED})
# Counted apart in the head line and the progress bar: a cancelled or failed target is not "done".
SUCCEEDED = frozenset({S.ROTATED, S.DELIVERED})
FAILED_VIEW = frozenset({S.FAILED, S.UNKNOWN})  # what `f` keeps: resets that did not give a password
SETTLED = DONE_STATES - {S.CANCELLED}  # what the ETA's throughput counts (a cancel is not work done)
ETA_MIN_TARGETS = 3  # an ETA from fewer finished targets (or under ETA_MIN_SECONDS) is noise
ETA_MIN_SECONDS = 2.0
NARROW = 100  # under this width: four columns (the verification joins the detail), endpoint-only strings
WIDE = 120  # from this width on, the footer has room for the long key descriptions and the palette key
STATE_STYLE = {S.ROTATED: "bold", S.DELIVERED: "bold", S.FAILED: "bold reverse", S.UNKNOWN: "reverse",
               S.UNCONFIRMED: "bold reverse", S.RESETTING: "italic", S.APPLYING: "italic", S.CANCELLED: "dim",
               S.PLANNED: "dim"}


def masked(uri: Secret) -> str:
    """postgresql://role:********@host/db?… : shows where it goes, never the password."""
    text = uri.reveal()
    scheme, _, rest = text.partition("://")
    creds, at, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:********@{hostpart}" if at else "********"


def compact_connection(uri: Secret, *, reveal: bool, database: bool = True) -> str:
    """For a narrow column: the endpoint and database (`ep-x-123/neondb`), the part that tells rows apart.

    The scheme, the role (it is in the target column) and the region suffix of the host are the same on every
    row; the full string is on the line under the table. Revealed, the password comes first."""
    text = uri.reveal()
    _, _, rest = text.partition("://")
    creds, at, hostpart = rest.rpartition("@")
    if not at:
        return "********"
    host, _, tail = hostpart.partition("/")
    where = f"{host.split('.', 1)[0]}/{tail.split('?', 1)[0]}" if database else host.split(".", 1)[0]
    if not reveal:
        return where
    from urllib.parse import unquote

    return f"{unquote(creds.partition(':')[2])} {where}"


def break_points(text: str, width: int) -> str:
    """Wrap a long connection string where a reader expects it (before `@`, `/`, `?`, `&` or a space), never
    inside a host name; only a piece longer than a whole line is cut mid-word."""
    if width <= 0 or len(text) <= width:
        return text
    tokens: list[str] = []
    current = ""
    for i, ch in enumerate(text):
        prev, nxt = text[i - 1] if i else "", text[i + 1] if i + 1 < len(text) else ""
        breaks = ch in "@?& " or (ch == "/" and "/" not in (prev, nxt) and prev != ":")
        if breaks and current:
            tokens.append(current)
            current = ""
        current += ch
    tokens.append(current)
    lines: list[str] = []
    line = ""
    for token in tokens:
        if line and len(line) + len(token) > width:
            lines.append(line.rstrip())
            line = token.lstrip(" ")
        else:
            line += token
        while len(line) > width:  # one piece wider than the line: the only mid-word cut
            lines.append(line[:width])
            line = line[width:]
    lines.append(line)
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# A session's run time so far, kept when its screen closes: reopened (o), the clock goes on from there.
_ELAPSED: WeakKeyDictionary[RunSession, float] = WeakKeyDictionary()


class RunScreen(NeonScreen):
    """Draws a run session's events; the keys hand passwords over by hand."""

    # Short descriptions: at 80 columns the footer keeps every key that matters, R and f included (the
    # help, `?`, lists the tooltips, the long form). q still quits; only its footer entry is left out here.
    BINDINGS = [
        Binding("v", "reveal", "Show", id="reveal", tooltip="Reveal (until cursor moves)"),
        Binding("c", "copy", "Copy", id="copy", tooltip="Copy the connection string"),
        Binding("w", "copy_password", "Pw", id="copy-password", tooltip="Copy the password"),
        Binding("d", "next_database", "Database", show=False, id="choose-database"),
        Binding("p", "toggle_pooled", "Pool", id="toggle-pooled", tooltip="Pooled/direct strings"),
        Binding("k", "keyring", "Key", id="keyring", tooltip="Store in the keyring"),
        Binding("e", "copy_env", "Env", id="copy-env", tooltip="Copy all as .env"),
        Binding("R", "retry_failed", "Retry", id="retry-failed", tooltip="Retry failed/continue"),
        Binding("x", "cancel_run", "Cancel", id="cancel-run", tooltip="Cancel run (no new resets)"),
        Binding("f", "toggle_failed", "Fails", id="failed-only", tooltip="Failed targets only/all"),
        Binding("D", "deliver_view", "Deliveries", show=False, id="deliver-view"),
        Binding("escape", "back", "Back", id="run-back"),
        Binding("q", "app.quit", "Quit", show=False, id="quit"),
        Binding("j", "cursor_down", "Down", show=False, id="run-down"),
    ]

    class EngineEvent(Message):
        def __init__(self, event) -> None:
            super().__init__()
            self.event = event

    def __init__(self, session: RunSession) -> None:
        super().__init__()
        self.session = session
        self.plan = session.plan
        self.rows: dict[TargetKey, str] = {t.key: "/".join(t.key) for t in self.plan.targets}
        self.details: dict[TargetKey, str] = {}
        self.revealed: set[TargetKey] = set()
        self.databases: dict[TargetKey, str | None] = {}
        self.pooled = False
        self.started = 0.0  # when the current pass (the run, or an R) started
        self.finished_at: float | None = None
        self.elapsed_before = 0.0  # seconds of earlier passes: R continues the run's clock
        self.settled_at_start = 0  # targets settled when this pass started: the ETA counts this pass only
        self.failed_only = False
        self.shown_keys: list[TargetKey] = [t.key for t in self.plan.targets]
        self.widths: dict[str, int] = {}
        self.narrow = False  # the 80-column layout: no verdict column, endpoint-only strings
        self._breaker_open = False
        self._pending_halts: list[Halted] = []

    @property
    def running(self) -> bool:
        return self.session.running

    @property
    def states(self) -> dict[TargetKey, TargetState]:
        """Each target's state as this screen shows it."""
        return {v.key: v.state for v in self.session.views()}

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
        self.rebuild_table()
        table.focus()
        self.started = self.app.monotonic()
        self.set_interval(1.0, self.tick)
        if self.session.finished or self.session.running:
            # Reopened: draw what the session knows.
            for key in self.rows:
                self._detail_from_view(key)
                self.update_row(key)
            self.elapsed_before = _ELAPSED.get(self.session, 0.0)
            self.finished_at = self.app.monotonic()
            self.tick()
        else:
            self.run_session(retry=False)

    # ------------------------------------------------------------- the run

    @work(exclusive=True, group="rotation", exit_on_error=False, description="Rotating passwords")
    async def run_session(self, retry: bool) -> None:
        if self.finished_at is not None:
            self.elapsed_before += max(0.0, self.finished_at - self.started)
        self.finished_at = None
        stream = self.session.retry() if retry else self.session.run()  # the app prepared the session
        async for ev in stream:
            self.post_message(self.EngineEvent(ev))

    def on_run_screen_engine_event(self, message: EngineEvent) -> None:
        ev = message.event
        if isinstance(ev, RunStarted):
            self.started = self.app.monotonic()
            self.settled_at_start = sum(1 for v in self.session.views() if v.state in SETTLED)
        elif isinstance(ev, TargetChanged):
            if ev.state == S.APPLYING and ev.operations:
                waiting = [f"{o.action} {o.status}" for o in ev.operations if not o.done]
                self.details[ev.key] = "waiting: " + ", ".join(waiting) if waiting else "operations done"
            else:
                self._detail_from_view(ev.key)
            self.update_row(ev.key)
            if ev.state in (S.ROTATED, S.FAILED, S.UNCONFIRMED, S.DELIVERED):
                self.refresh_bindings()
        elif isinstance(ev, TargetVerified):
            self.update_row(ev.key)
            if ev.alarm:
                self.notify(f"{ev.target.label}: the OLD PASSWORD STILL LOGS IN after its reset's operations "
                            "finished. Treat the leak as open: find who still holds it.",
                            title="Old password still works", severity="error", timeout=20, markup=False)
        elif isinstance(ev, DeliveryFailed):
            self.notify(f"Delivery to {ev.sink} failed: {ev.reason}", severity="error", markup=False)
        elif isinstance(ev, Halted):
            self.ask_breaker(ev)
        elif isinstance(ev, RunFinished):
            self.refresh_bindings()
            self.finished_at = self.app.monotonic()
            if self.failed_only or self.column_widths(self.size.width) != self.widths:
                self.rebuild_table()  # what R fixed leaves the failed view; the strings are known now
            counts = ev.counts
            alarms = self.session.alarms()
            if alarms:
                self.notify(f"The old password still logs in on {len(alarms)} target(s) (OLD STILL WORKS rows).",
                            title="Verification alarm", severity="error", timeout=20)
            elif self.session.stopped:
                self.notify("Run stopped: no new resets. Passwords in hand stay here to copy or store; "
                            "R continues.", severity="warning", timeout=8)
            elif counts.get("cancelled", 0):
                self.notify(f"Run cancelled: {counts['cancelled']} target(s) not started. R continues with them.",
                            severity="warning", timeout=8)
            elif counts.get("failed", 0):
                self.notify(f"{counts['failed']} target(s) failed: R retries them.", severity="error", timeout=8)
            elif counts.get("unknown", 0) or counts.get("unconfirmed", 0):
                self.notify("Some resets could not be confirmed: R checks them again.", severity="warning")
            elif self.session.undelivered():
                self.notify("Every target rotated. Copy or store the new passwords now (c, w, k, e).", timeout=8)
            else:
                self.notify("Every target rotated and delivered.", timeout=8)
            self._tell_tree()
        self.tick()

    def _detail_from_view(self, key: TargetKey) -> None:
        v = self.session.view(key)
        if v.state == S.DELIVERED or (v.delivered and v.state in (S.ROTATED, S.UNCONFIRMED)):
            where = ", ".join(sorted(v.delivered))
            self.details[key] = (f"unconfirmed; given to {where}" if v.state == S.UNCONFIRMED
                                 else f"delivered to {where}")
        elif v.reason:
            self.details[key] = v.reason
        elif v.state == S.ROTATED:
            self.details[key] = "new password live"
        else:
            self.details.pop(key, None)

    def _tell_tree(self) -> None:
        """Unmark what rotated and have the tree reload the roles it touched (their ages changed)."""
        done = [v.key for v in self.session.views() if v.state in (S.ROTATED, S.DELIVERED, S.UNCONFIRMED)]
        touched = sorted({(t.project_id, t.branch_id) for t in self.plan.targets})
        self.app.after_run(done, touched)

    # ------------------------------------------------------------- the breaker

    def ask_breaker(self, ev: Halted) -> None:
        from neon_tui.screens.modals import BreakerModal

        if self._breaker_open:
            self._pending_halts.append(ev)  # one dialog at a time; this one is asked next
            return
        self._breaker_open = True
        can_retry = ev.source != "journal"

        def answer(choice: str | None) -> None:
            self._breaker_open = False
            self.answer_breaker(ev.source, choice or "stop")
            while self._pending_halts:
                nxt = self._pending_halts.pop(0)
                if nxt.source in self.session.halts and nxt.source != ev.source:
                    self.ask_breaker(nxt)
                    break

        self.app.push_screen(BreakerModal(ev.reason, ev.held, can_retry=can_retry), answer)

    @work(group="breaker", exit_on_error=False, description="Answering the breaker")
    async def answer_breaker(self, source: str, choice: str) -> None:
        try:
            if choice == "retry":
                await self.session.retry_sink(source)
                self.notify(f"{source} works again: resets continue.")
            elif choice == "hand":
                await self.session.replace_sink(source, None)
                self.notify("From now on passwords wait here for you to copy or store them (c, w, k, e); "
                            "resets continue.")
            elif choice == "keyring":
                await self.session.replace_sink(source, KeyringSink(self.app.settings.keyring_allow))
                self.notify("Delivering to the keyring instead; resets continue.")
            else:
                self.session.stop()
        except SinkError as e:
            self.notify(f"{e}", title="Still failing", severity="error", markup=False, timeout=10)
            self.ask_breaker(Halted(source, f"{source} still fails: {e}", len(self.session.undelivered())))
        for key in self.rows:
            self._detail_from_view(key)
            self.update_row(key)

    # ------------------------------------------------------------- drawing

    def leave_question(self) -> str | None:
        """What leaving would cost, as a question, or None when nothing would be lost."""
        return self.app.run_question(self.session)

    def result(self, key: TargetKey) -> RotationResult | None:
        return self.session.result(key)

    def column_widths(self, width: int) -> dict[str, int]:
        """Share the screen's width between the columns: nothing scrolls sideways, a wide terminal shows whole
        target names and strings, and an 80-column one keeps every column readable: there the verification
        joins the detail column and the connection column names the endpoint (the full string of the row
        under the cursor is on the line below the table)."""
        labels = rows = max((len(self.label(t.key)) for t in self.plan.targets), default=10)
        projects = {t.project_name for t in self.plan.targets}
        if len(projects) == 1:  # the title names the project: room for it if there is some
            labels = max(labels, len(f"target in {next(iter(projects))}"))
        details = max((len(d) for d in self.details.values()), default=0)
        narrow = width < NARROW
        verifying = self.session.verify  # without verification there is no verdict column
        ncols = 4 if narrow or not verifying else 5
        # One cell of padding either side of each column; 2 for the scrollbar when the rows overflow.
        scrollbar = 2 if len(self.plan.targets) > (self.size.height or self.app.size.height) - 10 else 0
        room = max(40, width - scrollbar - 2 * ncols)
        state = 11
        if narrow:
            if rows > 22:
                # Long target names (several projects): their names come first. The endpoint column gives way (the
                # whole string of the row under the cursor is on the line below the table).
                target = min(labels, max(22, room - state - 18))
                return {"state": state, "target": target, "detail": max(8, room - state - target)}
            target = labels
            conn = min(max(12, self.widest_connection(database=False)[1]), max(12, room - state - target - 17))
            return {"state": state, "target": target, "detail": max(8, room - state - target - conn), "conn": conn}
        verified = 16 if verifying else 0
        rest = room - state - verified
        target = min(labels, max(24, rest * 2 // 5))
        rest -= target
        full, compact = self.widest_connection()
        want_detail = max(details, 18)
        conn = full if rest - want_detail >= full else min(compact, max(12, rest - want_detail))
        widths = {"state": state, "target": target, "detail": rest - conn, "verified": verified, "conn": conn}
        if not verifying:
            del widths["verified"]
        return widths

    def widest_connection(self, *, database: bool = True) -> tuple[int, int]:
        """The widest masked string, whole and compact (before results: a typical Neon string)."""
        keys = [k for k in self.rows if self.result(k) is not None]
        if not keys:
            return (len("postgresql://role:********@ep-x-12345678.c-1.region.aws.neon.tech/db?sslmode=require"),
                    29 if database else 23)
        return (max(len(self.shown_value(k)) for k in keys),
                max(len(self.shown_value(k, compact=True, database=database)) for k in keys))

    def rebuild_table(self, width: int | None = None) -> None:
        """(Re)draw the table: the columns for this width, the rows of the current view (all, or failed only)."""
        table = self.query_one(DataTable)
        width = width or self.size.width or self.app.size.width
        keep = self.selected_key() if table.row_count else None
        self.narrow = width < NARROW
        self.widths = self.column_widths(width)
        if self.failed_only:
            self.shown_keys = [t.key for t in self.plan.targets if self.session.view(t.key).state in FAILED_VIEW]
        else:
            self.shown_keys = [t.key for t in self.plan.targets]
        table.clear(columns=True)
        projects = {t.project_name for t in self.plan.targets}
        target = "target"
        if len(projects) == 1:
            project = projects.pop()
            target = next((t for t in (f"target in {project}", f"{project}/…") if len(t) <= self.widths["target"]),
                          "target")
        titles = {"state": "state", "target": target,
                  "detail": "detail", "verified": "verified",
                  "conn": "connection string" if self.widths.get("conn", 0) >= self.widest_connection()[0]
                  else "endpoint" if self.narrow else "endpoint/database"}
        for key in self.widths:
            table.add_column(titles[key], key=key, width=self.widths[key])
        for key in self.shown_keys:
            table.add_row(*self.cells(key), key=self.rows[key])
        if keep in self.shown_keys:
            table.move_cursor(row=self.shown_keys.index(keep))
        self.show_selected()

    def on_resize(self) -> None:
        if self.is_mounted and self.widths and self.column_widths(self.size.width) != self.widths:
            self.rebuild_table(self.size.width)
        footer = self.query_one(Footer)
        footer.compact = self.size.width < WIDE
        footer.show_command_palette = self.size.width >= WIDE
        self.show_selected()

    def connection(self, key: TargetKey) -> Secret | None:
        res = self.result(key)
        c = res.connection(self.databases.get(key)) if res else None
        if c is None:
            return None
        return (c.pooled or c.direct) if self.pooled else c.direct

    def shown_value(self, key: TargetKey, *, compact: bool = False, database: bool | None = None) -> str:
        """The connection string as shown (masked unless revealed); `compact`: what fits a narrow column."""
        res = self.result(key)
        if res is None:
            return ""
        conn = self.connection(key)
        if conn is None:
            pw = res.password.reveal() if key in self.revealed else "********"
            if compact:
                return f"no endpoint: {pw}" if key in self.revealed else "no endpoint"
            return f"no endpoint yet: password {pw}"
        if compact:
            if database is None:  # wide layout: endpoint/database; narrow: the endpoint
                database = not self.narrow
            return compact_connection(conn, reveal=key in self.revealed, database=database)
        return conn.reveal() if key in self.revealed else masked(conn)

    def conn_cell(self, key: TargetKey) -> Text:
        full = self.shown_value(key)
        room = self.widths.get("conn", 0)
        text = full if len(full) <= room else self.shown_value(key, compact=True)
        return Text(text, no_wrap=True, overflow="ellipsis")

    def cells(self, key: TargetKey) -> list[Text]:
        """The row's cells for the columns on screen."""
        state = self.session.view(key).state
        detail = Text(self.details.get(key, ""), overflow="ellipsis", no_wrap=True)
        out = {"state": Text(str(state), style=STATE_STYLE.get(state, "")),
               "target": Text(self.label(key), overflow="ellipsis", no_wrap=True), "detail": detail,
               "conn": self.conn_cell(key) if "conn" in self.widths else Text("")}
        if "verified" in self.widths:
            out["verified"] = self.verified_cell(key)
        else:
            # Narrow: the verdict joins the detail (an alarm first); both are whole on the line below.
            verdict = self.verified_cell(key)
            if self.session.view(key).verification is not None and verdict.plain != "not verified":
                if detail.plain in ("", "new password live"):  # a verdict says that and more
                    parts: tuple = (verdict,)
                elif "reverse" in str(verdict.style):
                    parts = (verdict, " · ", detail)
                else:
                    parts = (detail, " · ", verdict)
                out["detail"] = Text.assemble(*parts, overflow="ellipsis", no_wrap=True)
        return [out[k] for k in self.widths]

    def label(self, key: TargetKey) -> str:
        """The target's name in the table: without the project's when the run has only one (it is in the
        column's title)."""
        t = self.session.view(key).target
        if len({x.project_id for x in self.plan.targets}) == 1:
            return t.label.removeprefix(f"{t.project_name}/")
        return t.label

    def verified_cell(self, key: TargetKey) -> Text:
        """`✓ new · old dead`, `new ✗ · …`, `OLD STILL WORKS` (error colour), `not verified`, `–` pending."""
        v = self.session.view(key)
        if not self.session.verify:
            return Text("")
        if v.verification is None:
            pending = v.verifying or v.state in (S.ROTATED, S.DELIVERED, S.APPLYING, S.RESETTING, S.PLANNED)
            return Text("–" if pending else "", style="dim")
        verdict = v.verification
        if verdict.alarm:
            error = self.app.theme_variables.get("error", "")
            return Text(verdict.short(), style=f"bold reverse {error}".strip())
        style = "bold" if verdict.verified else ("dim" if verdict.short() == "not verified" else "")
        return Text(verdict.short(), style=style, overflow="ellipsis", no_wrap=True)

    def update_row(self, key: TargetKey) -> None:
        if key not in self.shown_keys:
            return  # filtered out (f): drawn when it is shown again
        table = self.query_one(DataTable)
        row = self.rows[key]
        for column, cell in zip(self.widths, self.cells(key)):
            if column != "target":
                table.update_cell(row, column, cell)
        if key == self.selected_key():
            self.show_selected()

    def on_data_table_row_highlighted(self) -> None:
        # A revealed password stays on screen only while the cursor is on its row.
        here = self.selected_key()
        for key in [k for k in self.revealed if k != here]:
            self.revealed.discard(key)
            self.update_row(key)
        self.show_selected()

    def conceal_secrets(self):
        """Mask every revealed password now (a screenshot is about to be taken); returns the undo."""
        hidden = set(self.revealed)
        self.revealed.clear()
        for key in hidden:
            self.update_row(key)
        self.show_selected()

        def restore() -> None:
            self.revealed |= hidden
            for key in hidden:
                self.update_row(key)
            self.show_selected()

        return restore

    def show_selected(self) -> None:
        """The whole string of the row under the cursor (masked unless revealed): the table cuts it."""
        key = self.selected_key()
        text = ""
        if key is not None:
            res = self.result(key)
            detail = self.details.get(key, "")
            if res is not None:
                c = res.connection(self.databases.get(key))
                dbs = res.databases
                choice = f" · database {c.database} ({dbs.index(c.database) + 1}/{len(dbs)}, d: next)" \
                    if c is not None and len(dbs) > 1 else ""
                text = self.shown_value(key) + choice
            elif detail:
                text = f"{self.session.view(key).target.label}: {detail}"
            verdict = self.session.view(key).verification
            if verdict is not None:
                text = f"{text} · {verdict.describe()}" if text else verdict.describe()
            label = self.label(key)
            if res is not None and len(label) > self.widths.get("target", 0):  # cut in the table: named here
                text = f"{label}: {text}"
        line = self.query_one("#run-selected", Static)
        # Wrapped at the string's own seams, never inside a host name (padding: one cell either side).
        line.update(break_points(text, (self.size.width or self.app.size.width) - 2))

    def on_unmount(self) -> None:
        _ELAPSED[self.session] = self.elapsed()

    def elapsed(self) -> float:
        """The run's total time: every pass (the run, each R), not counting the pauses between them."""
        end = self.finished_at if self.finished_at is not None else self.app.monotonic()
        return self.elapsed_before + max(0.0, end - self.started)

    def eta(self, views: list | None = None) -> float | None:
        """Seconds left at this pass's observed throughput; None until that figure means something."""
        if not self.running or self.session.halts:
            return None
        views = views if views is not None else self.session.views()
        settled = sum(1 for v in views if v.state in SETTLED) - self.settled_at_start
        left = sum(1 for v in views if v.state not in DONE_STATES)
        spent = self.app.monotonic() - self.started
        if settled < ETA_MIN_TARGETS or spent < ETA_MIN_SECONDS or not left:
            return None
        return left * spent / settled

    def progress_parts(self, views: list | None = None) -> list[str]:
        """`12/54 done · 2 failed · 40 cancelled`: each outcome counted apart (a cancel is not done)."""
        states = [v.state for v in (views if views is not None else self.session.views())]
        total = len(states)
        parts = [f"{sum(1 for s in states if s in SUCCEEDED)}/{total} done"]
        for label, group in (("failed", FAILED_VIEW), ("unconfirmed", {S.UNCONFIRMED}), ("cancelled", {S.CANCELLED}),
                             ("skipped", {S.SKIPPED}), ("in flight", {S.RESETTING, S.APPLYING})):
            n = sum(1 for s in states if s in group)
            if n:
                parts.append(f"{n} {label}")
        return parts

    def tick(self) -> None:
        views = self.session.views()
        self.query_one(ProgressBar).update(progress=sum(1 for v in views if v.state in SUCCEEDED))
        if self.session.halts:
            status = "HALTED"
        elif self.running:
            status = "running"
        else:
            status = "cancelled" if self.session.cancelled else "finished"
        parts = [status, *self.progress_parts(views)]
        held = len(self.session.undelivered())
        if held:
            parts.append(f"{held} to deliver")
        parts.append(f"{duration(self.elapsed())} elapsed")
        eta = self.eta(views)
        if eta is not None:
            parts.append(f"~{duration(eta)} left")
        verified = self.verify_summary()
        if verified:
            parts.append(verified)
        if self.failed_only:
            parts.insert(0, f"FAILED ONLY ({len(self.shown_keys)}; f: all)")
        # Both lines are one row high (app.tcss): updating them needs no screen layout.
        self.query_one("#run-head", Static).update(" · ".join(parts), layout=False)
        clip = self.app.clipboard_status()
        view = "pooled" if self.pooled else "direct"
        sinks = "by hand" if self.session.by_hand else ", ".join(self.session.required) or "no sink"
        # The countdown first: on an 80-column terminal the end of this line is cut off.
        self.query_one("#run-status", Static).update(" · ".join(
            part for part in (clip, f"deliver: {sinks}", f"{view} strings", f"journal {self.session.run_id}")
            if part), layout=False)

    def verify_summary(self) -> str:
        """`OLD STILL WORKS 1 · verified 3 · not verified 2`: the verification's summary for the head line."""
        if not self.session.verify:
            return ""
        counts = self.session.verification_counts()
        parts = []
        if counts.get("old still-accepted"):
            parts.append(f"OLD STILL WORKS {counts['old still-accepted']}")
        for label, key in (("verified", "verified"), ("new failed", "new failed"), ("unknown", "new unknown"),
                           ("not verified", "not verified")):
            if counts.get(key):
                parts.append(f"{label} {counts[key]}")
        return " · ".join(parts)

    # ------------------------------------------------------------- actions

    def selected_key(self) -> TargetKey | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return next((k for k, r in self.rows.items() if r == row_key.value), None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show only the keys that can do something now (the help lists them all)."""
        has_results = bool(self.session.engine.results)
        if action in ("reveal", "copy", "copy_password", "keyring", "copy_env", "toggle_pooled", "next_database"):
            return True if has_results else None
        if action == "cancel_run":
            return self.running
        if action == "retry_failed":
            return (not self.running) and bool(self.session.retryable())
        if action == "toggle_failed":
            return self.failed_only or any(v.state in FAILED_VIEW for v in self.session.views())
        return True

    def action_reveal(self) -> None:
        key = self.selected_key()
        if key is None:
            return
        self.revealed.symmetric_difference_update({key})
        self.update_row(key)

    def action_toggle_failed(self) -> None:
        """f: only the failed targets (failed, or unknown: no password came back), or all again."""
        if not self.failed_only and not any(v.state in FAILED_VIEW for v in self.session.views()):
            self.notify("No failed targets.", severity="information")
            return
        self.failed_only = not self.failed_only
        self.rebuild_table()
        self.refresh_bindings()
        self.tick()

    def action_toggle_pooled(self) -> None:
        self.pooled = not self.pooled
        for key in self.rows:
            self.update_row(key)
        self.tick()

    def action_next_database(self) -> None:
        key = self.selected_key()
        res = self.result(key) if key else None
        if res is None or not res.connections:
            self.notify("No databases to choose from here.", severity="warning")
            return
        names = [c.database for c in res.connections]
        current = res.connection(self.databases.get(key)).database  # type: ignore[union-attr]
        self.databases[key] = names[(names.index(current) + 1) % len(names)]
        self.update_row(key)

    def _copy(self, value: Secret, what: str) -> str:
        if not self.app.copy_secret(value, what):
            raise SinkError("not copied")  # the app has said why
        return "the clipboard"

    def _selected_with_result(self) -> TargetKey | None:
        key = self.selected_key()
        if key is None or self.result(key) is None:
            self.notify("No new password for this target (yet).", severity="warning")
            return None
        return key

    def action_copy(self) -> None:
        key = self._selected_with_result()
        if key is not None:
            self.deliver([key], ClipboardSink(self._copy, database=self.databases.get(key), pooled=self.pooled))

    def action_copy_password(self) -> None:
        key = self._selected_with_result()
        if key is not None:
            self.deliver([key], ClipboardSink(self._copy, password=True))

    def action_copy_env(self) -> None:
        keys = [k for k in self.rows if self.result(k) is not None]
        if not keys:
            self.notify("No results yet.", severity="warning")
            return
        self.deliver(keys, EnvBlockSink(self._copy, self.databases))

    def action_keyring(self) -> None:
        key = self._selected_with_result()
        if key is not None:
            self.deliver([key], KeyringSink(self.app.settings.keyring_allow))

    @work(group="deliver", exit_on_error=False, description="Handing passwords over")
    async def deliver(self, keys: list[TargetKey], sink) -> None:
        try:
            receipts = await self.session.deliver_by_hand(keys, sink)
        except SinkError as e:
            if str(e) != "not copied":
                self.notify(str(e), title=f"Not delivered ({sink.name})", severity="error", timeout=10,
                            markup=False)
            return
        if sink.name == "keyring" and receipts:
            self.notify(f"Stored in the keyring: {receipts[0].detail}", markup=False)
        for key in keys:
            self._detail_from_view(key)
            self.update_row(key)
        self.tick()

    def action_retry_failed(self) -> None:
        """Reset failed targets again (an explicit second reset), start cancelled ones, re-check doubtful ones."""
        if self.running:
            self.notify("Wait for the run to finish.", severity="warning")
            return
        if not self.session.retryable():
            self.notify("No failed, cancelled or unconfirmed targets.", severity="information")
            return
        self.run_session(retry=True)

    def action_deliver_view(self) -> None:
        """Targets × sinks: what reached where, with a retry per failed cell."""
        from neon_tui.screens.deliver import DeliverScreen

        self.app.push_screen(DeliverScreen(self.session), lambda _: self.redraw_all())

    def redraw_all(self) -> None:
        for key in self.rows:
            self._detail_from_view(key)
            self.update_row(key)
        self.refresh_bindings()
        self.tick()

    def action_cancel_run(self) -> None:
        if self.running:
            self.session.cancel()
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

        self.app.push_screen(YesNoModal("Leave the results?", question + " (o on the main screen comes back here.)",
                                        "Leave", "Stay"), answer)

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()
