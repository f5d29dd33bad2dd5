"""ReviewScreen: the plan before anything changes (targets, consequences, skips, unselected copies).

Unselected copies are grouped by branch and reason; `a` adds the flagged ones (those that likely hold a
password being reset, or where the leak scan found the leaked one) to the plan and shows the review again.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from neon_tui.screens.base import NeonScreen
from textual.widgets import DataTable, Footer, Header, Static

from neon_tui.neon.errors import NeonError
from neon_tui.rotation.plan import CopyGroup, Plan, build_plan, group_copies
from neon_tui.rotation.verify import WAKES_COMPUTES
from neon_tui.screens.modals import TypedConfirmModal


class ReviewScreen(NeonScreen):
    BINDINGS = [
        # priority: the table would otherwise take enter for itself
        Binding("enter,y", "start", "Start rotation", id="start", priority=True),
        # the same keys (and id, so a keymap moves both) under --read-only, where start is not offered
        Binding("enter,y", "read_only_hint", "Why nothing starts", show=False, id="start", priority=True),
        # priority too: a key typed before enter must act before it (enter, a priority binding, would otherwise
        # overtake it and start the plan this key was meant to change or leave)
        Binding("d", "delivery", "Deliver to…", id="delivery", priority=True),
        Binding("a", "add_flagged", "Add flagged", id="add-flagged", priority=True,
                tooltip="Add flagged copies to plan"),
        Binding("s", "stored", "Stored copies", show=False, id="stored-copies", priority=True),  # named in the head when .env is chosen
        Binding("escape", "app.pop_screen", "Back", id="back", priority=True),
        Binding("j", "cursor_down", "Down", show=False, id="review-down"),
        Binding("k", "cursor_up", "Up", show=False, id="review-up"),
    ]

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan
        self.delivery: tuple[str, str] = ("hand", "")  # by hand, the keyring, or a new file
        self.more = ""  # more sinks: --deliver specs, space-separated
        self.widening = False  # `a` is building the widened plan: enter waits for its review

    def copy_groups(self) -> list[CopyGroup]:
        exposure = getattr(self.app, "exposure", None)
        return group_copies(self.plan.warnings, exposure.keys if exposure is not None else ())

    def flagged_keys(self) -> list:
        return [k for g in self.copy_groups() if g.flagged for k in g.keys]

    def _head_text(self) -> str:
        plan = self.plan
        # Most telling first: at 80 columns the end of this line is cut off; a zero is not said.
        projects = len(plan.projects)
        parts = [f"{len(plan.targets)} to reset" + (f" in {projects} projects" if projects > 1 else "")]
        if plan.touches_protected_branch:
            parts.insert(0, "PROTECTED branches")
        if self.app.read_only:
            parts.insert(0, "READ-ONLY: plan only")
        flagged = len(self.flagged_keys())
        if plan.warnings:
            parts.append(f"{len(plan.warnings)} unselected copies" + (f" ({flagged} flagged)" if flagged else ""))
        parts.append(self.delivery_text())
        if plan.skipped:
            parts.append(f"{len(plan.skipped)} skipped")
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
        self._fill_table()
        self.query_one(DataTable).focus()
        self._show_selected()

    def _rows(self) -> list[tuple[str, str, str, str]]:
        one_project = len(self.plan.projects) == 1
        rows = []
        for t in self.plan.targets:
            eps = ", ".join(e.id for e in t.read_write_endpoints) or "no compute"
            dbs = ", ".join(d.name for d in t.connection_databases()) or "-"
            notes = [n for n, on in (("PROTECTED", t.protected_branch), ("no stored pw", not t.store_passwords)) if on]
            label = t.label.removeprefix(f"{t.project_name}/") if one_project else t.label
            rows.append((label, ", ".join(notes), eps, dbs))
        return rows

    def _widths(self, width: int, rows: list[tuple[str, str, str, str]]) -> list[int]:
        """Columns as wide as their content, the databases taking what is left, so nothing scrolls sideways;
        on a narrow screen the target keeps at least 20 cells and the others share the rest."""
        titles = self._titles()
        need = [max([len(titles[i]), *(len(r[i]) for r in rows)]) for i in range(4)]
        scrollbar = 2 if len(rows) > max(1, self.app.size.height - 16) else 0
        room = max(40, width - scrollbar - 8)
        if sum(need) <= room:
            return need[:3] + [room - sum(need[:3])]
        target = min(need[0], max(20, room * 2 // 5))
        notes = min(need[1], 12)
        compute = min(need[2], max(12, (room - target - notes) * 2 // 3))
        return [target, notes, compute, max(8, room - target - notes - compute)]

    def _titles(self) -> list[str]:
        if len(self.plan.projects) == 1 and self.plan.targets:
            return [f"target in {self.plan.targets[0].project_name}", "notes", "compute", "databases"]
        return ["target", "notes", "compute", "databases"]

    def _fill_table(self) -> None:
        table = self.query_one(DataTable)
        rows = self._rows()
        widths = self._widths(self.size.width or self.app.size.width, rows)
        if getattr(self, "_shown_widths", None) == widths:
            return
        self._shown_widths = widths
        row = table.cursor_row
        table.clear(columns=True)
        for title, w in zip(self._titles(), widths):
            table.add_column(title if len(title) <= w else title.split(" in ")[0], width=w)
        for r in rows:
            table.add_row(*(Text(c, overflow="ellipsis", no_wrap=True) for c in r))
        if rows:
            table.move_cursor(row=min(max(row, 0), len(rows) - 1))

    def on_resize(self) -> None:
        if self.is_mounted:
            self._fill_table()
            footer = self.query_one(Footer)
            footer.compact = self.size.width < 120
            footer.show_command_palette = self.size.width >= 120

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
        groups = self.copy_groups()
        if groups:
            # One line per branch and reason, the copies that likely still hold a password being reset first.
            flagged = sum(len(g.keys) for g in groups if g.flagged)
            lines.append("Not selected, but holding roles of the same name"
                         + (f" ({flagged} flagged !: a adds them to the plan)" if flagged else "") + ":")
            lines += [f"  {'!' if g.flagged else '-'} {g}" for g in groups]
        if self.plan.skipped:
            lines.append("Skipped:")
            lines += [f"  - {s.label}: {s.reason}" for s in self.plan.skipped]
        return "\n".join(lines) or "Nothing skipped; every branch holding these roles is selected."

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start" and self.app.read_only:
            return False  # read-only: not even offered
        if action == "read_only_hint":
            return self.app.read_only  # enter then says why nothing starts, instead of nothing at all
        if action == "add_flagged":
            return bool(self.flagged_keys())  # offered only when there is something to add
        return True

    def action_read_only_hint(self) -> None:
        self.notify(self.app.read_only_hint(), title="Read-only", severity="warning", markup=False)

    def action_add_flagged(self) -> None:
        """a: the flagged copies join the plan; the widened plan is reviewed (and confirmed) again."""
        keys = self.flagged_keys()
        if not keys:
            self.notify("No flagged copies to add.", severity="information")
            return
        # until the widened review replaces this one, enter must not start the narrow plan the user just asked
        # to widen (keys typed ahead arrive before the worker ends)
        self.widening = True
        self.widen(keys)

    @work(exclusive=True, group="plan", exit_on_error=False, description="Adding the flagged copies")
    async def widen(self, keys: list) -> None:
        from neon_tui.screens.main import MainScreen

        main = next((s for s in self.app.screen_stack if isinstance(s, MainScreen)), None)
        try:
            if main is None:
                self.notify("The account is not loaded here: mark the copies in the tree.", severity="warning")
                return
            chosen = {t.key for t in self.plan.targets} | set(keys)
            plan = await build_plan(main.inventory, chosen)
        except (NeonError, LookupError) as e:  # said (Neon's texts hold no secret); the narrow plan stays
            self.notify(f"Could not add the flagged copies: {e}", severity="error", markup=False)
            return
        finally:
            self.widening = False  # whatever happened, enter starts this review's plan again
        if self.app.screen is not self:  # the user left this review meanwhile: nothing added behind their back
            return
        plan.skipped = [*self.plan.skipped, *(s for s in plan.skipped if s not in self.plan.skipped)]
        # the tree shows what the plan now holds, as one step U takes back
        main.tree.change_marks("add flagged copies", add=keys)
        review = ReviewScreen(plan)
        review.delivery, review.more = self.delivery, self.more
        self.notify(f"Added {len(keys)} flagged cop{'y' if len(keys) == 1 else 'ies'} to the plan: review it again.",
                    timeout=6)
        self.app.switch_screen(review)

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
        if self.widening:
            self.notify("Adding the flagged copies: review the widened plan, then start it.", severity="warning")
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
