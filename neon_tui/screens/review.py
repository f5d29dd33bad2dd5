"""ReviewScreen: the plan before anything changes (targets, consequences, skips, unselected copies)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from neon_tui.screens.base import NeonScreen
from textual.widgets import DataTable, Footer, Header, Static

from neon_tui.rotation.plan import Plan
from neon_tui.rotation.verify import WAKES_COMPUTES
from neon_tui.screens.modals import TypedConfirmModal


class ReviewScreen(NeonScreen):
    BINDINGS = [
        # priority: the table would otherwise take enter for itself
        Binding("enter,y", "start", "Start rotation", id="start", priority=True),
        # the same keys (and id, so a keymap moves both) under --read-only, where start is not offered
        Binding("enter,y", "read_only_hint", "Why nothing starts", show=False, id="start", priority=True),
        Binding("d", "delivery", "Deliver to…", id="delivery"),
        Binding("s", "stored", "Stored copies", show=False, id="stored-copies"),  # named in the head when .env is chosen
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("j", "cursor_down", "Down", show=False, id="review-down"),
        Binding("k", "cursor_up", "Up", show=False, id="review-up"),
    ]

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan
        self.delivery: tuple[str, str] = ("hand", "")  # by hand, the keyring, or a new file
        self.more = ""  # more sinks: --deliver specs, space-separated

    def _head_text(self) -> str:
        plan = self.plan
        parts = [f"{len(plan.targets)} to reset", f"{len(plan.projects)} project(s)"]
        if plan.touches_protected_branch:
            parts.insert(0, "PROTECTED branches")
        if self.app.read_only:
            parts.insert(0, "READ-ONLY: plan only")
        parts += [self.delivery_text(), f"{len(plan.skipped)} skipped", f"{len(plan.warnings)} unselected copies"]
        return " · ".join(parts)

    def delivery_text(self) -> str:
        choice, path = self.delivery
        if choice == "env":
            text = f"deliver: patch .env in {path} (d; s: stored copies)"
        else:
            text = {"hand": "deliver: by hand (d)", "keyring": "deliver: keyring (d)"}.get(choice,
                                                                                            f"deliver: {path} (d)")
        if self.more:
            text = ("deliver: " + self.more if choice == "hand" else text.replace("deliver: ", "deliver: " + self.more + " + ", 1))
        return text

    def compose(self) -> ComposeResult:
        yield Header()
        head = self._head_text()
        yield Static(head, id="review-head", markup=False)
        table = DataTable(id="plan-table", cursor_type="row", zebra_stripes=True)
        yield table
        with VerticalScroll(id="review-notes"):
            yield Static(self._notes(), markup=False, id="notes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("target", "notes", "compute", "databases")
        for t in self.plan.targets:
            eps = ", ".join(e.id for e in t.read_write_endpoints) or "no compute"
            dbs = ", ".join(d.name for d in t.connection_databases()) or "-"
            notes = [n for n, on in (("PROTECTED", t.protected_branch), ("no stored pw", not t.store_passwords)) if on]
            table.add_row(t.label, ", ".join(notes), eps, dbs)
        table.focus()
        self._show_selected()

    def on_data_table_row_highlighted(self) -> None:
        self._show_selected()

    def _show_selected(self) -> None:
        table = self.query_one(DataTable)
        if not self.plan.targets:
            return
        t = self.plan.targets[min(max(table.cursor_row, 0), len(self.plan.targets) - 1)]
        consequences = [*t.consequences(), f"after the reset, {WAKES_COMPUTES} (new password must log in, "
                                           "the old one must be refused)"]
        text = f"{t.label}:\n" + "\n".join(f"  - {c}" for c in consequences) + "\n" + self._notes()
        self.query_one("#notes", Static).update(text)

    def _notes(self) -> str:
        lines = []
        if self.plan.warnings:
            # The copies that likely still hold the leaked password matter most: list them first.
            warnings = sorted(self.plan.warnings, key=lambda w: not w.likely_same_password)
            lines.append("Not selected, but holding the same role (tab to scroll here):")
            lines += [f"  ! {w}" for w in warnings]
        if self.plan.skipped:
            lines.append("Skipped:")
            lines += [f"  - {s.label}: {s.reason}" for s in self.plan.skipped]
        return "\n".join(lines) or "Nothing skipped; every branch holding these roles is selected."

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start" and self.app.read_only:
            return False  # read-only: not even offered
        if action == "read_only_hint":
            return self.app.read_only  # enter then says why nothing starts, instead of nothing at all
        return True

    def action_read_only_hint(self) -> None:
        self.notify(self.app.read_only_hint(), title="Read-only", severity="warning", markup=False)

    def action_delivery(self) -> None:
        from neon_tui.screens.modals import DeliveryModal

        def chosen(answer: tuple[str, str, str] | None) -> None:
            if answer is not None:
                self.delivery, self.more = (answer[0], answer[1]), answer[2]
                self.query_one("#review-head", Static).update(self._head_text())
                if answer[0] == "env":
                    self.action_stored()  # what the run will patch, and what stays stale

        self.app.push_screen(DeliveryModal(*self.delivery, more=self.more), chosen)

    def action_stored(self) -> None:
        """The stored copies of connection strings under the .env path (masked diff preview)."""
        from neon_tui.screens.stored import StoredCopiesModal

        choice, path = self.delivery
        if choice != "env":
            self.notify("Choose 'Patch .env files in place' first (d, then e and a path).", severity="information")
            return
        self.app.push_screen(StoredCopiesModal(path, self.plan.targets))

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def action_start(self) -> None:
        if self.app.read_only:
            self.notify(self.app.read_only_hint(), title="Read-only", severity="warning", markup=False)
            return
        if not self.plan.targets:
            self.notify("Nothing to rotate.", severity="warning")
            return
        if self.plan.touches_protected_branch:
            names = sorted({t.branch_name for t in self.plan.targets if t.protected_branch})
            question = (f"This resets passwords on protected branch(es): {', '.join(names)}. "
                        "Production connections will drop and apps must get the new strings.")

            def go(ok: bool | None) -> None:
                if ok:
                    self.app.start_run(self.plan, delivery=self.delivery, more=self.more)

            self.app.push_screen(TypedConfirmModal(question, "rotate"), go)
            return
        self.app.start_run(self.plan, delivery=self.delivery, more=self.more)
