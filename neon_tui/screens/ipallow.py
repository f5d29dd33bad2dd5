"""IpAllowScreen (`I`): each project's IP Allow list with its findings; edit after a review, apply, wait."""

from __future__ import annotations

import asyncio

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static, Switch

from neon_tui.incident.ipallow import (
    AllowList,
    Change,
    IpAllowError,
    MyAddress,
    ProjectReview,
    apply,
    find_my_address,
    journal_reviewed,
    latest_exposure,
    open_journal,
    parse_entries,
    plan_change,
    review,
    review_project,
)
from neon_tui.screens.base import NeonScreen

SHORT = {"open": "open to all", "protected_only_gap": "exposed unprotected branch",
         "protected_only_none": "no protected branch", "bad_entry": "bad entry", "covers_all": "covers all"}


def _flags(r: ProjectReview) -> str:
    kinds = [SHORT.get(f.kind, f.kind) for f in r.findings if f.flag]
    notes = sum(1 for f in r.findings if not f.flag)
    text = ", ".join(dict.fromkeys(kinds)) or "-"
    return text + (f" (+{notes} note{'s' if notes > 1 else ''})" if notes else "")


def _entries(r: ProjectReview) -> str:
    text = ", ".join(r.current.ips) if r.current.ips else "(empty: every address)"
    return text if len(text) <= 44 else text[:43] + "…"


class IpAllowEditModal(ModalScreen[tuple[str, bool] | None]):
    """The comma list and the protected-only switch; enter goes on to the review."""

    BINDINGS = [Binding("escape", "cancel", "Back", id="ipallow-edit-cancel")]

    def __init__(self, r: ProjectReview) -> None:
        super().__init__()
        self.r = r

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"IP allow: {self.r.name}", classes="dialog-title", markup=False)
            yield Static("Addresses, CIDR ranges (203.0.113.0/24) or ranges (192.0.2.1-192.0.2.20), comma-"
                         "separated. Empty: every address may connect.", markup=False, classes="dialog-body")
            yield Input(value=", ".join(self.r.current.ips), placeholder="203.0.113.0/24, 198.51.100.7",
                        id="ipa-ips")
            with Horizontal(classes="ipa-switch-row"):
                yield Switch(value=self.r.current.protected_branches_only, id="ipa-protected")
                yield Label("protected branches only")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Review (enter)", id="review", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def _result(self) -> tuple[str, bool]:
        return self.query_one("#ipa-ips", Input).value, self.query_one("#ipa-protected", Switch).value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(self._result())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._result() if event.button.id == "review" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class IpAllowReviewModal(ModalScreen[bool]):
    """The change as it will be sent; when your own address would be excluded, the project name is typed."""

    AUTO_FOCUS = "#cancel"
    BINDINGS = [Binding("escape,n", "cancel", "Cancel", id="ipallow-review-cancel"),
                Binding("a", "apply", "Apply", id="ipallow-review-apply")]

    def __init__(self, change: Change) -> None:
        super().__init__()
        self.change = change

    def compose(self) -> ComposeResult:
        c = self.change
        with Vertical(classes="dialog -error" if c.excludes_me else "dialog -warning"):
            yield Label("Review the IP allow change", classes="dialog-title")
            yield Static("\n".join(c.lines()), markup=False, classes="dialog-body", id="ipa-review-text")
            if c.needs_typed:
                why = "Your own address would be excluded" if c.excludes_me else \
                    f"This opens the project to every address ({c.opens})"
                yield Static(f"{why}. Type {c.name!r} to apply anyway.", markup=False, classes="dialog-problem")
                yield Input(placeholder=c.name, id="ipa-typed")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply (a)", id="apply", variant="warning", disabled=c.needs_typed)
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        if self.change.needs_typed:
            self.query_one("#ipa-typed", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#apply", Button).disabled = event.value.strip() != self.change.name

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.change.name:
            self.dismiss(True)
        else:
            self.notify(f"Type {self.change.name!r} exactly, or esc to go back.", severity="warning", markup=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "apply")

    def action_apply(self) -> None:
        if not self.change.needs_typed:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class IpAllowScreen(NeonScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="ipallow-back"),
        Binding("e", "edit", "Edit", id="ipallow-edit"),
        Binding("r", "mark_reviewed", "Mark reviewed", id="ipallow-reviewed"),
        Binding("j", "cursor_down", "Down", show=False, id="ipallow-down"),
        Binding("k", "cursor_up", "Up", show=False, id="ipallow-up"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.reviews: dict[str, ProjectReview] = {}
        self.states: dict[str, str] = {}
        self.exposed: set[tuple[str, str, str]] | None = None
        self.exposure_source = ""
        self.my_addr: MyAddress | None = None
        self.reviewed = False
        self.loaded = False
        self._journal = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading IP allow lists…", id="ipa-head", markup=False)
        yield DataTable(id="ipa-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="ipa-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # what needs attention first; the entries (the longest) last, where a narrow terminal cuts them
        table.add_column("project", key="project")
        table.add_column("flags", key="flags")
        table.add_column("state", key="state")
        table.add_column("scope", key="scope")
        table.add_column("plan", key="plan")
        table.add_column("entries", key="entries")
        table.focus()
        self.load()

    def on_unmount(self) -> None:
        if self._journal is not None:
            self._journal.close()

    # ------------------------------------------------------------------ loading

    def _exposure(self) -> tuple[set[tuple[str, str, str]] | None, str]:
        report = getattr(self.app, "exposure", None)
        if report is not None:
            return {tuple(e.key) for e in report.exposed}, f"the leak scan of this session ({len(report.exposed)} exposed)"
        client = getattr(self.app, "client", None)
        found = latest_exposure(host=str(client.base_url) if client is not None else None,
                                account=getattr(self.app, "_account", None))
        if found is not None:
            return set(found.exposed), f"exposure journal {found.source} ({len(found.exposed)} exposed)"
        return None, "no exposure scan yet (L on the main screen): exposed branches cannot be named"

    @work(exclusive=True, group="ipallow", exit_on_error=False, description="IP allow: read every project")
    async def load(self) -> None:
        from neon_tui.rotation.inventory import Inventory

        client = self.app.client
        inv = getattr(self.app, "inventory", None) or Inventory(client)
        orgs = list(await inv.load_organizations())
        projects = []
        for o in orgs or [None]:
            projects.extend(i.project for i in await inv.load_projects(o.id if o else None))
        try:
            await self.app.account_id()  # the exposure journal of this account only (None if /auth fails)
        except Exception:
            pass
        self.exposed, self.exposure_source = self._exposure()
        result = await review(client, projects, exposed=self.exposed, plans={o.id: o.plan for o in orgs})
        self.reviews = {r.project_id: r for r in result.projects}
        table = self.query_one(DataTable)
        table.clear()
        for r in result.projects:
            table.add_row(*self._cells(r), key=r.project_id)
        self.loaded = True
        problems = "; ".join(result.problems)
        self._head(extra=problems)
        self._detail()

    def _cells(self, r: ProjectReview) -> tuple[str, ...]:
        scope = "-" if r.current.open else ("protected only" if r.current.protected_branches_only else "all branches")
        plan = r.plan or "?"
        if r.plan_allows is False:
            plan += " (no IP allow)"
        return (r.name, _flags(r), self.states.get(r.project_id, ""), scope, plan, _entries(r))

    def _head(self, extra: str = "") -> None:
        flagged = sum(1 for r in self.reviews.values() if r.flagged)
        text = (f"{len(self.reviews)} projects, {flagged} flagged. Exposure: {self.exposure_source}. "
                + ("Reviewed (journaled). " if self.reviewed else "r marks reviewed. ") + "e edits the highlighted one.")
        self.query_one("#ipa-head", Static).update(text + (f"\n{extra}" if extra else ""))

    def _current(self) -> ProjectReview | None:
        table = self.query_one(DataTable)
        if not self.reviews or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.reviews.get(str(key))

    def _detail(self) -> None:
        r = self._current()
        if r is None:
            return
        lines = [f"{r.name} ({r.project_id}): {r.current.describe()}"]
        lines += [f"  {'!' if f.flag else '-'} {f.message}" for f in r.findings]
        if r.problem:
            lines.append(f"  ? {r.problem}")
        if r.project_id in self.states:
            lines.append(f"  state: {self.states[r.project_id]}")
        self.query_one("#ipa-detail", Static).update("\n".join(lines))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def _set_state(self, project_id: str, text: str) -> None:
        self.states[project_id] = text
        table = self.query_one(DataTable)
        try:
            table.update_cell(project_id, "state", text)
        except Exception:  # the row went away (a reload)
            pass
        self._detail()

    # ------------------------------------------------------------------ actions

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def action_edit(self) -> None:
        if getattr(self.app, "read_only", False):
            self.notify("Read-only session: IP allow lists cannot be changed.", severity="warning")
            return
        r = self._current()
        if r is None:
            return
        if self.states.get(r.project_id, "").startswith(("sending", "waiting", "project busy", "checking")):
            self.notify("A change to this project is still being applied.", severity="warning")
            return

        def edited(result: tuple[str, bool] | None) -> None:
            if result is not None:
                self.review_change(r, *result)

        self.app.push_screen(IpAllowEditModal(r), edited)

    @work(group="ipallow-edit", exit_on_error=False, description="IP allow: review a change")
    async def review_change(self, r: ProjectReview, text: str, protected_only: bool) -> None:
        if self.my_addr is None:
            self.my_addr = await find_my_address(self.app.client, org_ids=[r.org_id] if r.org_id else [])
        # Plan from the project as it is now, not as the view last read it: someone may have changed it since.
        current = AllowList.of(await self.app.client.get_project(r.project_id))
        change = plan_change(current, AllowList(tuple(parse_entries(text)), protected_only), self.my_addr,
                             project_id=r.project_id, name=r.name, plan=r.plan)
        if current != r.current:
            change.warnings.insert(0, f"the list changed since this view read it (it was {r.current.describe()}): "
                                      "'now' is the list as it is")
        if not change.ok:
            from neon_tui.screens.modals import ErrorModal

            self.app.push_screen(ErrorModal("Invalid entries", "\n".join(str(p) for p in change.problems)
                                            + "\n\nNothing was sent."))
            return
        if not change.changed:
            self.notify("Nothing to change.")
            return

        def answered(ok: bool | None) -> None:
            if ok:
                self.apply_change(change)

        self.app.push_screen(IpAllowReviewModal(change), answered)

    async def _open_journal(self):
        if self._journal is None:
            client = self.app.client
            from neon_tui.incident.actions import key_kind_of

            auth = await client.get_auth()
            self._journal = await asyncio.to_thread(open_journal, client, account=auth.account_id,
                                                    key_kind=key_kind_of(auth.auth_method))
        return self._journal

    @work(group="ipallow-apply", exit_on_error=False, description="IP allow: apply a change")
    async def apply_change(self, change: Change) -> None:
        pid = change.project_id
        self._set_state(pid, "checking")
        fresh = AllowList.of(await self.app.client.get_project(pid))
        if fresh != change.before:  # changed while the review was open: never overwrite it unseen
            from neon_tui.screens.modals import ErrorModal

            self._set_state(pid, "changed elsewhere")
            self.app.push_screen(ErrorModal(
                "IP allow changed meanwhile",
                f"{change.name}'s list changed while you reviewed the change:\nwas:  {change.before.describe()}"
                f"\nnow:  {fresh.describe()}\n\nNothing was sent. Edit again (e) to change the list as it is now."))
            return
        self._set_state(pid, "sending")
        journal = await self._open_journal()
        try:
            done = await apply(self.app.client, change, journal, on_state=lambda s: self._set_state(pid, s))
        except IpAllowError as e:
            from neon_tui.screens.modals import ErrorModal

            self._set_state(pid, "failed")
            self.app.push_screen(ErrorModal("IP allow not applied", e.message))
            return
        old = self.reviews[pid]
        new = await review_project(self.app.client, done.project, plan=old.plan, exposed=self.exposed or ())
        self.reviews[pid] = new
        self._set_state(pid, f"applied ({len(done.operations)} ops, {done.seconds:.1f}s)")
        table = self.query_one(DataTable)
        for col, value in zip(("project", "flags", "state", "scope", "plan", "entries"), self._cells(new)):
            table.update_cell(pid, col, value)
        self._head()
        self._detail()
        self.notify(f"{change.name}: {new.current.describe()}", title="IP allow applied", markup=False)

    def action_mark_reviewed(self) -> None:
        if not self.loaded:
            self.notify("Still loading.", severity="warning")
            return
        self.mark_reviewed()

    @work(group="ipallow-journal", exit_on_error=False, description="IP allow: journal the review")
    async def mark_reviewed(self) -> None:
        journal = await self._open_journal()
        await journal_reviewed(journal, list(self.reviews.values()))
        self.reviewed = True
        self._head()
        self.notify(f"Reviewed {len(self.reviews)} projects; journaled.", title="IP allow")
