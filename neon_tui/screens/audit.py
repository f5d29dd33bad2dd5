"""AuditScreen (`A`): roles, branches, members and project access changed since the leak.

Findings are grouped by kind with counts in the head; what could not be checked is listed with why. On a
role finding, `d` drops the role (review, then type the role's name; refused for protected roles, the
project owner role and roles that own a database, naming the databases) and `k` keeps it with a reason.
Both are journaled (kind "roles"). `r` audits again. Never shows a secret.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from neon_tui.incident.audit import (
    KINDS,
    AuditReport,
    DropTarget,
    Finding,
    drop_roles,
    journal_kept,
    journal_review,
    open_roles_journal,
    review_drops,
)
from neon_tui.neon.errors import NeonError
from neon_tui.rotation.inventory import Inventory
from neon_tui.screens.base import NeonScreen
from neon_tui.screens.modals import ErrorModal, TypedConfirmModal

SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "", "info": "dim"}


class ReasonModal(ModalScreen["str | None"]):
    """Why a role is kept (journaled as role_kept)."""

    BINDINGS = [Binding("escape", "cancel", "Back", id="reason-cancel")]

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Keep role", classes="dialog-title")
            yield Static(f"Keep {self.label}. Why? (journaled; e.g. 'created by Priya for the billing job')",
                         markup=False, classes="dialog-body")
            yield Input(placeholder="reason", id="reason")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        reason = " ".join(event.value.split())
        if not reason:
            self.notify("Give a reason, or esc to go back.", severity="warning", markup=False)
            return
        self.dismiss(reason[:300])

    def action_cancel(self) -> None:
        self.dismiss(None)


class AuditScreen(NeonScreen):
    DEFAULT_CSS = """
    #audit-head { height: 2; }
    #audit-table { height: 1fr; }
    #audit-detail { height: 2; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape,A", "app.pop_screen", "Back", id="audit-back"),
        Binding("d", "drop", "Drop role", id="audit-drop"),
        Binding("k", "keep", "Keep role", id="audit-keep"),
        Binding("r", "rerun", "Audit again", id="audit-rerun"),
    ]

    def __init__(self, since: datetime, since_from: str) -> None:
        super().__init__()
        self.since = since
        self.since_from = since_from
        self.report: AuditReport | None = None
        self.rows: list[Finding | None] = []  # per table row: the finding, or None (a heading or not-checked line)
        self.kept: set[tuple[str, str, str]] = set()
        self.dropped: set[tuple[str, str, str]] = set()
        self.journal = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Auditing…", id="audit-head", markup=False)
        yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=False)
        yield Static("", id="audit-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._columns(where=24)
        self.query_one(DataTable).focus()
        self.run_audit()

    # ------------------------------------------------------------------ audit

    @work(exclusive=True, group="audit")
    async def run_audit(self) -> None:
        from neon_tui.incident.audit import audit

        client = self.app.client
        self.query_one("#audit-head", Static).update(f"Auditing since {self._since()}…")
        try:
            report = await audit(client, since=self.since, inventory=Inventory(client))
        except (NeonError, LookupError) as e:
            self.query_one("#audit-head", Static).update(f"The audit could not read the account: {e}")
            return
        self.report = report
        try:
            journal_review(self._journal(), report)
        except Exception as e:  # a full disk must not hide the findings
            self.notify(f"The review was not journaled: {e}", severity="warning", markup=False)
        self.redraw()

    def _since(self) -> str:
        return self.since.strftime("%Y-%m-%d %H:%M UTC")

    def _journal(self):
        if self.journal is None:
            account = getattr(self.app, "_account", None)
            self.journal = open_roles_journal(self.app.client, account=account)
        return self.journal

    def _columns(self, where: int) -> None:
        """Severity is one word and "where" is at most 46 cells: "what" (the reason) gets the rest of the width."""
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_column("severity", width=11)
        table.add_column("where", width=where)
        table.add_column("what")

    def redraw(self) -> None:
        report = self.report
        if report is None:
            return
        table = self.query_one(DataTable)
        row = table.cursor_row
        labels = [len(f.label) + 10 for f in report.findings] + [len(n.scope) for n in report.not_checked]
        labels += [len(t) + 5 for t in KINDS.values()]
        self._columns(where=min(46, max([24, *labels])))
        self.rows = []
        sev = report.severities()
        self.query_one("#audit-head", Static).update(
            f"Since {self._since()} ({self.since_from}): {len(report.findings)} findings, {sev['high']} high, "
            f"{sev['medium']} medium, {sev['low']} low, {sev['info']} info; {len(report.not_checked)} not checked. "
            f"{report.projects} projects, {report.branches} branches, {report.roles} roles, "
            f"{report.requests} API requests.")
        groups = report.by_kind()
        for kind, title in KINDS.items():
            if kind == "role_not_on_parent":
                self._not_checked(table, report)  # above the long review lists, where it is seen
            found = groups.get(kind, [])
            if not found:
                continue
            table.add_row("", Text(f"{title} ({len(found)})", style="bold"), "")
            self.rows.append(None)
            for f in found:
                key = (f.project_id or "", f.branch_id or "", f.role or "")
                mark = " (dropped)" if key in self.dropped else " (kept)" if key in self.kept else ""
                table.add_row(Text(f.severity, style=SEVERITY_STYLE[f.severity]), f.label + mark, f.reason)
                self.rows.append(f)
        if self.rows:
            table.move_cursor(row=min(max(row, 0), len(self.rows) - 1))

    def _not_checked(self, table: DataTable, report: AuditReport) -> None:
        if not report.not_checked:
            return
        table.add_row("", Text(f"Not checked ({len(report.not_checked)})", style="bold"), "")
        self.rows.append(None)
        for n in report.not_checked:
            table.add_row(Text("not checked", style="dim"), n.scope, n.reason)
            self.rows.append(None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        f = self.selected()
        detail = self.query_one("#audit-detail", Static)
        if f is None:
            detail.update("")
        else:
            hint = "  d drop · k keep" if f.is_role and f.kind != "pg_privilege" else ""
            detail.update(f"{f.reason}{hint}")

    def selected(self) -> Finding | None:
        row = self.query_one(DataTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def _role_finding(self) -> Finding | None:
        f = self.selected()
        if f is None or not f.is_role:
            self.notify("Select a role finding first.", severity="information", markup=False)
            return None
        if f.kind == "pg_privilege" and "not in Neon's role list" in f.reason:
            self.notify("Neon's API does not know this role: drop it in SQL.", severity="warning", markup=False)
            return None
        return f

    def action_rerun(self) -> None:
        self.run_audit()

    # ------------------------------------------------------------------ drop and keep

    def action_drop(self) -> None:
        if getattr(self.app, "read_only", False):
            self.notify("Read-only session: roles cannot be dropped.", severity="warning", markup=False)
            return
        f = self._role_finding()
        if f is not None:
            self.review_and_drop(f)

    @work(exclusive=True, group="audit-drop", exit_on_error=False)
    async def review_and_drop(self, f: Finding) -> None:
        try:
            await self._review_and_drop(f)
        except Exception as e:  # a journal the disk refuses, an API error: shown, never the end of the app
            self.app.push_screen(ErrorModal("Drop not completed", f"{f.label}: {e}"))
            self.redraw()

    async def _review_and_drop(self, f: Finding) -> None:
        client = self.app.client
        target = DropTarget(f.project_id or "", f.branch_id or "", f.role or "")
        (review,) = await review_drops(client, [target])
        if not review.ok:
            self.app.push_screen(ErrorModal("Not dropped", f"{review.label}: {review.refusal}"))
            try:
                self._journal().write("role_drop_refused", project_id=target.project_id, branch_id=target.branch_id,
                                      role=target.role, reason=review.refusal)
            except Exception:
                pass
            return
        question = (f"Drop role {target.role} from branch {review.branch} of project {review.project}?\n"
                    f"Why it is listed: {f.reason}\nNeon deletes it on this branch only (other branches keep "
                    "their copy); sessions using it lose access.")
        if not await self.app.push_screen_wait(TypedConfirmModal(question, target.role)):
            self.notify("Not dropped.", markup=False)
            return
        journal = self._journal()  # opened before the drop: nothing is dropped that cannot be journaled
        (out,) = await drop_roles(client, [target], journal, reviews=[review])
        if out.status in ("dropped", "gone"):
            self.dropped.add(target.key)
            self.notify(out.message, markup=False)
        else:
            self.app.push_screen(ErrorModal("Drop failed", f"{review.label}: {out.message}"))
        self.redraw()

    def action_keep(self) -> None:
        f = self._role_finding()
        if f is None:
            return

        def kept(reason: str | None) -> None:
            if not reason:
                return
            try:
                journal_kept(self._journal(), f, reason)
            except Exception as e:
                self.notify(f"Not journaled: {e}", severity="error", markup=False)
                return
            self.kept.add((f.project_id or "", f.branch_id or "", f.role or ""))
            self.notify(f"Kept {f.label}: {reason}", markup=False)
            self.redraw()

        self.app.push_screen(ReasonModal(f.label), kept)

    def on_unmount(self) -> None:
        if self.journal is not None:
            self.journal.close()
