"""MainScreen: the account tree, a details pane, the filter and the count of marked targets."""

from __future__ import annotations

import asyncio
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from neon_tui.screens.base import NeonScreen
from textual.widgets import Footer, Header, Input, Static, Tree

from neon_tui.rotation.inventory import Inventory, ProjectInfo, shares_parent_password
from neon_tui.rotation.plan import build_plan, skip_reason
from neon_tui.widgets.wrapping import wrap_text
from neon_tui.widgets.org_tree import NodeRef, OrgTree, stamp


class MainScreen(NeonScreen):
    """Browse, filter and mark; `r` reviews the plan for the marked roles."""

    BINDINGS = [
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("r", "review", "Review", id="review"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear-filter"),
        Binding("u", "unmark_all", "Unmark all", show=False, id="unmark-all"),
        Binding("ctrl+r", "reload", "Reload", show=False, id="reload"),
        Binding("o", "open_run", "Open run", id="open-run"),
        Binding("L", "load_leak", "Load leak", show=False, id="load-leak"),
        Binding("M", "mark_matches", "Mark all matches", show=False, id="mark-matches"),
        Binding("U,ctrl+z", "undo_marks", "Undo mark/unmark", show=False, id="undo-marks"),
        Binding("c", "copy_command", "Copy rotate command", show=False, id="copy-command"),
    ]

    # Marking more than this many targets with one key (M) asks first.
    CONFIRM_MARKS_ABOVE = 20

    def __init__(self, inventory: Inventory) -> None:
        super().__init__()
        self.inventory = inventory
        self.exposure_progress: str | None = None
        self.loading_total = 0
        self.loading_done = 0
        self._last_rebuild = 0.0
        self._rebuild_pending = False
        self._filter_timer = None
        self.filter_problem: str | None = None
        self.match_text: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield OrgTree(self.inventory, now=self.app.now, id="tree")
            with VerticalScroll(id="details-pane"):
                yield Static("", id="details", markup=False)
        yield Input(placeholder="filter: name or id, or role:NAME project:P branch:B (enter keeps it, esc clears)",
                    id="filter")
        yield Static("", id="status", markup=False)
        yield Footer()

    @property
    def tree(self) -> OrgTree:
        return self.query_one(OrgTree)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.tree.focus()
        self.update_status()
        self.load_account()

    # ------------------------------------------------------------- loading

    @work(exclusive=True, group="load-account", exit_on_error=False, description="Loading organizations and projects")
    async def load_account(self) -> None:
        inv = self.inventory
        tree = self.tree
        orgs = await inv.load_organizations()
        tree.orgs = list(orgs) or [None]
        for org in tree.orgs:
            oid = org.id if org else None
            tree.org_projects[oid] = []

            def on_page(infos: list[ProjectInfo], oid=oid) -> None:
                tree.org_projects[oid].extend(i.project.id for i in infos)
                self.loading_total += len(infos)
                tree.rebuild()
                self.update_status()

            await inv.load_projects(oid, on_page=on_page)
        tree.rebuild()
        if tree.cursor_node is None and tree.root.children:
            tree.move_cursor(tree.root.children[0])
        self.app.post_message(self.app.AccountLoaded())
        self.load_everything()

    @work(exclusive=True, group="load-tree", exit_on_error=False, description="Loading branches and roles")
    async def load_everything(self) -> None:
        """Fill in every project in the background (the client's limiter keeps it polite)."""
        tree = self.tree
        pending = [self.inventory.projects[pid] for oid in tree.org_projects for pid in tree.org_projects[oid]]

        async def one(p: ProjectInfo) -> None:
            try:
                await self.inventory.load_project_tree(p)
            finally:
                self.loading_done += 1
                self.schedule_rebuild()

        await asyncio.gather(*(one(p) for p in pending))
        self.schedule_rebuild(force=True)

    def schedule_rebuild(self, force: bool = False) -> None:
        # Rebuilding for each of hundreds of projects would make the tree stutter: at most ~4 a second.
        now = time.monotonic()
        if force or now - self._last_rebuild > 0.25:
            self._last_rebuild = now
            self._rebuild_pending = False
            self.tree.rebuild()
            self.update_details()
        elif not self._rebuild_pending:
            self._rebuild_pending = True
            self.set_timer(0.3, lambda: self.schedule_rebuild(force=True))
        self.update_status()

    def _missing(self, ref: NodeRef) -> bool:
        """Does marking this node need data that is not loaded yet?"""
        inv = self.inventory
        pids = (self.tree.org_projects.get(ref.org_id, []) if ref.kind == "org"
                else [ref.project_id] if ref.project_id else [])
        for pid in pids:
            p = inv.projects.get(pid)
            if p is None:
                continue
            if p.branches is None:
                return True
            branches = [p.branches[ref.branch_id]] if ref.kind == "branch" and ref.branch_id in p.branches \
                else p.branches.values()
            if any(b.roles is None for b in branches):
                return True
        return False

    async def ensure_loaded(self, ref: NodeRef) -> None:
        inv = self.inventory
        if ref.kind == "org":
            await asyncio.gather(*(inv.load_project_tree(inv.projects[p])
                                   for p in self.tree.org_projects.get(ref.org_id, [])))
        elif ref.kind in ("project", "branch") and ref.project_id in inv.projects:
            p = inv.projects[ref.project_id]
            if ref.kind == "project":
                await inv.load_project_tree(p)
            else:
                branches = await inv.load_branches(p)
                if ref.branch_id in branches:
                    await inv.load_roles(p, branches[ref.branch_id])

    @on(Tree.NodeExpanded)
    async def _expanded(self, event: Tree.NodeExpanded) -> None:
        ref = event.node.data
        if ref is not None and (self.tree.children_missing(ref) or self.tree.holding == ref):
            self.expand_node(ref)

    @work(group="expand", exit_on_error=False, description="Loading a project")
    async def expand_node(self, ref: NodeRef) -> None:
        """Load what an opened project or branch shows; keys typed after opening it wait for this."""
        tree = self.tree
        try:
            p = self.inventory.projects[ref.project_id]
            if ref.kind == "project":
                # Its branches are what the opened node shows: show them after one round trip, roles follow.
                await self.inventory.load_branches(p)
                self.schedule_rebuild(force=True)
            await self.ensure_loaded(ref)
        except BaseException:
            tree.load_failed(ref)
            raise
        self.schedule_rebuild(force=True)
        node = tree.node_for(ref)
        if node is not None:
            node.expand()
        if tree.holding == ref:
            # Loaded, yet still shown as loading (its roles were being read again meanwhile): nothing more
            # will come for these keys, so they do not wait any longer.
            tree.load_failed(ref, "{} changed while it was loading")

    @on(OrgTree.HoldChanged)
    def _hold_changed(self) -> None:
        self.update_status()

    # ------------------------------------------------------------- marking

    @on(OrgTree.MarkRequested)
    def _mark(self, event: OrgTree.MarkRequested) -> None:
        self.mark(event.ref)

    @work(group="mark", exit_on_error=False, description="Marking")
    async def mark(self, ref: NodeRef) -> None:
        if ref.kind != "role" and self._missing(ref):
            await self.ensure_loaded(ref)
            self.schedule_rebuild(force=True)
        if not self.tree.toggle(ref):
            if ref.kind == "role":
                self.notify("This role cannot be rotated: " + self._skip_text(ref), severity="warning", markup=False)
            else:
                self.notify("Nothing here to rotate.", severity="warning")
        self.update_status()

    def _skip_text(self, ref: NodeRef) -> str:
        p = self.inventory.projects.get(ref.project_id or "")
        b = (p.branches or {}).get(ref.branch_id or "") if p else None
        role = next((r for r in (b.roles or []) if r.name == ref.role_name), None) if b else None
        return (skip_reason(role) or "") if role else "unknown role"

    def action_unmark_all(self) -> None:
        n = self.tree.unmark_all()
        self.update_status()
        if n:
            self.notify(f"Unmarked {n} target{'s' if n != 1 else ''}; U (or ctrl+z) marks them again.",
                        title="Unmark all", markup=False)

    def action_undo_marks(self) -> None:
        undone = self.tree.undo()
        self.update_status()
        if undone is None:
            self.notify("Nothing to undo.", severity="information")
            return
        what, taken_back, restored = undone
        parts = ([f"{restored} marked again"] if restored else []) + ([f"{taken_back} unmarked"] if taken_back else [])
        left = self.tree.undo_depth
        self.notify(f"Undid {what}: {', '.join(parts)}"
                    + (f" ({left} more step{'s' if left != 1 else ''} to undo)" if left else ""),
                    title="Undo", markup=False)

    @work(exclusive=True, group="mark-matches", exit_on_error=False, description="Marking every match")
    async def action_mark_matches(self) -> None:
        """M: mark every login role the filter shows, in every organization; asks above CONFIRM_MARKS_ABOVE."""
        tree = self.tree
        if not tree.filter_text:
            self.notify("Filter first (/, e.g. role:app), then M marks every match.", severity="warning")
            return
        # Every project that may hold a match is read in full first: "all" must not mean "all loaded so far".
        missing = [p for p in tree.projects_for_matches() if p.branches is None
                   or any(b.roles is None for b in p.branches.values())]
        if missing:
            self.notify(f"Reading {len(missing)} project(s) to find every match…", markup=False)
            await asyncio.gather(*(self.inventory.load_project_tree(p) for p in missing))
            self.schedule_rebuild(force=True)
        keys = tree.match_targets()
        new = [k for k in keys if k not in tree.marks]
        if not keys:
            self.notify("Nothing to mark: no login role matches the filter.", severity="warning")
            return
        if not new:
            self.notify(f"All {len(keys)} matching target(s) are already marked.", markup=False)
            return
        orgs = len({(self.inventory.projects[k[0]].project.org_id) for k in new})
        projects = len({k[0] for k in new})
        where = (f"{projects} project{'s' if projects != 1 else ''}"
                 + (f" in {orgs} organizations" if orgs > 1 else ""))
        what = f"mark all matches of {tree.filter_text!r}"
        if len(new) > self.CONFIRM_MARKS_ABOVE:
            from neon_tui.screens.modals import YesNoModal

            question = (f"Mark {len(new)} targets matching {tree.filter_text!r} across {where}?"
                        + (f" ({len(keys) - len(new)} more are marked already.)" if len(keys) > len(new) else "")
                        + "\nU undoes it.")
            if not await self.app.push_screen_wait(YesNoModal("Mark all matches?", question, "Mark", "Cancel")):
                self.notify("Nothing marked.", markup=False)
                return
        added, _ = tree.change_marks(what, add=new)
        self.update_status()
        self.notify(f"Marked {len(added)} target{'s' if len(added) != 1 else ''} in {where}; "
                    f"{len(tree.marks)} marked in all. U undoes it.", title="Mark all matches", markup=False)

    # ------------------------------------------------------------- hand-off

    def action_copy_command(self) -> None:
        """c: the marked targets as `neon-tui rotate` command(s), one per organization, copied and shown."""
        from neon_tui.neon.secret import Secret
        from neon_tui.rotate_command import rotate_commands

        tree = self.tree
        if not tree.marks:
            self.notify("Mark roles with space first; c copies them as a neon-tui rotate command.",
                        severity="warning")
            return
        # The organization each project is listed under (None: the key's own, so no --org).
        org_of = {pid: oid for oid, pids in tree.org_projects.items() for pid in pids}
        if any(k[0] not in org_of for k in tree.marks):
            self.notify("Some marked projects are no longer listed; reload (ctrl+r) and mark again.",
                        severity="error")
            return
        commands = rotate_commands(tree.marks, org_of.__getitem__, demo=bool(self.app.demo))
        text = "\n".join(commands)
        # The command names roles, never a password; it goes the app's one copy way (and is cleared as any copy).
        copied = self.app.copy_secret(Secret(text), f"the rotate command for {len(tree.marks)} target(s)")
        self.notify(text, title=("Copied: " if copied else "Not copied: ")
                    + (f"{len(commands)} commands (one per organization)" if len(commands) > 1 else "rotate command"),
                    markup=False, timeout=30)

    # ------------------------------------------------------------- filter

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        # Focus now, not on the next tick (Widget.focus defers): keys typed right after "/" are the filter.
        self.set_focus(box)

    FILTER_DEBOUNCE = 0.12

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        # The keystroke shows at once; the tree (thousands of nodes) follows when typing pauses.
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(self.FILTER_DEBOUNCE, self._apply_filter)

    def _apply_filter(self) -> None:
        from neon_tui.tree_filter import FilterError

        self._filter_timer = None
        value = self.query_one("#filter", Input).value.strip()
        if value == self.tree.filter_text and self.filter_problem is None:
            return
        try:
            self.tree.filter_text = value
        except FilterError as e:
            self.filter_problem = str(e)  # said on the status line while typing; the tree keeps the last filter
            self.update_status()
            return
        self.filter_problem = None
        self.match_text = None
        self.tree.rebuild()
        if value:
            self.tree.first_match()
        self.update_details()
        self.update_status()

    @on(OrgTree.MatchMoved)
    def _match_moved(self, event: OrgTree.MatchMoved) -> None:
        if not self.tree.filter_text:
            self.notify("No filter: / filters, then n and N go from match to match.", severity="information")
            return
        if not event.total:
            self.match_text = "no match"
        else:
            self.match_text = f"match {event.position}/{event.total}" + (" (wrapped)" if event.wrapped else "")
        self.update_status()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_filter()
        self.tree.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.value or box.display:
            box.value = ""
            box.display = False
            self.tree.filter_text = ""
            self.filter_problem = self.match_text = None
            self.tree.rebuild()
            self.tree.focus()
            self.update_status()

    # ------------------------------------------------------------- details and status

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        self.update_details()
        ref = event.node.data
        if ref is not None and ref.kind in ("branch", "role"):
            p = self.inventory.projects.get(ref.project_id or "")
            b = (p.branches or {}).get(ref.branch_id or "") if p else None
            if p is not None and b is not None and b.databases is None:
                self.load_databases(p, b)

    @work(group="details", exit_on_error=False, description="Loading databases")
    async def load_databases(self, p, b) -> None:
        await self.inventory.load_databases(p, b)
        self.update_details()

    def update_details(self) -> None:
        node = self.tree.cursor_node
        text = self.describe(node.data) if node is not None and node.data is not None else ""
        details = self.query_one("#details", Static)
        # wrapped here, at a host's dots and an id's seams, not by the terminal in the middle of a name
        # (the pane's width less its scrollbar's, which appears once the text is taller than the pane)
        pane = self.query_one("#details-pane")
        width = pane.content_size.width - pane.styles.scrollbar_size_vertical
        self._details_width = width
        details.update(wrap_text(text, width) if width > 8 else text)

    def on_resize(self) -> None:
        if self.is_mounted:
            self.call_after_refresh(self._rewrap_details)

    def _rewrap_details(self) -> None:
        pane = self.query_one("#details-pane")
        if pane.content_size.width - pane.styles.scrollbar_size_vertical != getattr(self, "_details_width", None):
            self.update_details()

    def describe(self, ref: NodeRef) -> str:
        inv = self.inventory
        now = self.app.now()

        def when(dt) -> str:
            return stamp(dt, now)

        if ref.kind == "org":
            org = next((o for o in self.tree.orgs if o and o.id == ref.org_id), None)
            if org is None:
                return "The organization of this API key"
            return (f"Organization {org.name}\nid       {org.id}\nhandle   {org.handle}\nplan     {org.plan}\n"
                    f"managed  {org.managed_by}\nprojects {len(self.tree.org_projects.get(org.id, []))}")
        p = inv.projects.get(ref.project_id or "")
        if p is None:
            return ""
        pr = p.project
        if ref.kind == "project":
            branches = "…" if p.branches is None else str(len(p.branches))
            return (f"Project {pr.name}\nid        {pr.id}\nregion    {pr.region_id}\npostgres  {pr.pg_version}\n"
                    f"branches  {branches}\npasswords {'stored' if pr.store_passwords else 'NOT stored (no recovery)'}\n"
                    f"created   {when(pr.created_at)}\nupdated   {when(pr.updated_at)}")
        b = (p.branches or {}).get(ref.branch_id or "")
        if b is None:
            return ""
        eps = "\n".join(f"  {e.type:<10} {e.host} ({e.current_state})" for e in b.endpoints) or "  none (no compute)"
        dbs = ", ".join(d.name for d in b.databases) if b.databases is not None else "…"
        parent = p.branches.get(b.branch.parent_id or "") if p.branches else None
        if ref.kind == "branch":
            flags = ", ".join(f for f, on in (("default", b.branch.default), ("protected", b.branch.protected)) if on)
            return (f"Branch {b.branch.name}\nid       {b.branch.id}\nparent   {parent.branch.name if parent else '-'}\n"
                    f"flags    {flags or '-'}\nstate    {b.branch.current_state}\nendpoints\n{eps}\n"
                    f"databases {dbs}\ncreated  {when(b.branch.created_at)}\nupdated  {when(b.branch.updated_at)}")
        role = next((r for r in (b.roles or []) if r.name == ref.role_name), None)
        if role is None:
            return ""
        owns = ", ".join(d.name for d in (b.databases or []) if d.owner_name == role.name) or "-"
        why = skip_reason(role)
        shared = shares_parent_password(p, b, role) and why is None
        key = (pr.id, b.branch.id, role.name)
        exposed = self.tree.exposed.get(key)
        unchecked = self.tree.unchecked.get(key)
        leak_text = ""
        if exposed is not None:
            leak_text = f"EXPOSED  ({exposed.how}): " + "; ".join(s.describe() for s in exposed.leaked) + "\n"
        elif unchecked is not None:
            leak_text = f"exposure not checked: {unchecked.reason}\n"
        return leak_text + (f"Role {role.name}\nbranch   {b.branch.name} ({b.branch.id})\nproject  {pr.name}\n"
                f"login    {'no: ' + why if why else 'password'}\nowns     {owns}\n"
                f"password changed {when(role.updated_at)}\ncreated  {when(role.created_at)}\n"
                + ("inherited: same password as on the parent branch\n" if shared else "")
                + f"endpoints\n{eps}")

    def update_status(self) -> None:
        tree = self.tree
        parts = [f"{len(tree.marks)} marked"]
        if tree.holding is not None:
            waiting = tree.waiting_keys
            parts.append(f"opening {tree.node_name(tree.holding)}…"
                         + (f" {waiting} key{'s' if waiting != 1 else ''} waiting" if waiting else ""))
        if self.loading_total and self.loading_done < self.loading_total:
            parts.append(f"loading {self.loading_done}/{self.loading_total} projects")
        if self.exposure_progress:
            parts.append(self.exposure_progress)
        elif tree.exposed or tree.unchecked:
            parts.append(f"{len(tree.exposed)} exposed, {len(tree.unchecked)} not checked")
        if self.filter_problem:
            parts.append(f"filter: {self.filter_problem}")
        elif self.tree.filter_text:
            parts.append(f"filter: {self.tree.filter_text}" + (f" ({self.match_text})" if self.match_text else ""))
        if self.app.read_only:
            parts.append("READ-ONLY")
        if self.app.demo:
            parts.append("SIMULATED ACCOUNT")
        clip = self.app.clipboard_status()
        if clip:
            parts.insert(1, clip)
        session = self.app.session
        if session is not None and session.undelivered():
            parts.insert(1, f"{len(session.undelivered())} new password(s) to deliver: o")
        # One line, docked, fixed height (app.tcss): its size never changes, so no screen layout per key.
        self.query_one("#status", Static).update("  ·  ".join(parts), layout=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_run":
            return self.app.session is not None  # hidden until there is a run to open
        return True

    def action_open_run(self) -> None:
        self.app.action_open_run()

    # ------------------------------------------------------------- exposure

    def action_load_leak(self) -> None:
        from neon_tui.screens.modals import LeakModal

        def got(answer) -> None:
            if answer is not None:
                self.scan_leak(*answer)

        # The demo offers its sample leak (simulated passwords, kept in memory: no file to leave behind), and
        # probes logins when real PostgreSQL is behind it.
        sim = getattr(self.app, "simulator", None)
        self.app.push_screen(LeakModal(sample=sim is not None,
                                       probe=getattr(self.app, "demo_postgres", None) is not None), got)

    @work(exclusive=True, group="exposure", exit_on_error=False, description="Scanning for exposed roles")
    async def scan_leak(self, kind: str, value, probe: bool, leaked_at=None) -> None:
        from neon_tui.rotation.exposure import scan
        from neon_tui.rotation.leak import LeakError, parse_leak, read_leak

        try:
            if kind == "paste":
                leak = parse_leak(value.reveal(), "pasted value")
            elif kind == "sample":
                from neon_tui.simulator.leak import demo_leaked_at, sample_leak

                leak = parse_leak(sample_leak(self.app.simulator), "the demo's sample leak (.env)")
                if leaked_at is None:  # the drill's story: the sample leaked at the demo's leak time
                    leaked_at = demo_leaked_at(self.app.simulator)
            else:
                leak = await asyncio.to_thread(read_leak, value)
        except LeakError as e:
            self.notify(str(e), title="Load leak", severity="error", markup=False)
            return
        finally:
            value_name = value if kind == "path" else kind
            value = None

        def progress(p) -> None:
            self.exposure_progress = f"exposure scan: {p.roles_done}/{p.roles_total} roles, " \
                                     f"{p.projects_done}/{p.projects_total} projects"
            self.update_status()

        self.exposure_progress = "exposure scan: starting"
        self.update_status()
        try:
            from neon_tui.rotation.exposure import probe_route

            route, login = probe_route(self.app.client.base_url, getattr(self.app, "simulator", None),
                                       dict(self.app.env))
            report = await scan(self.app.client, leak, probe_logins=probe, route=route, login=login,
                                progress=progress, inventory=self.inventory)
        finally:
            self.exposure_progress = None
        self.app.exposure = report
        await self._journal_exposure(report, {"paste": "paste", "sample": "demo sample"}.get(kind, str(value_name)),
                                     leaked_at)
        tree = self.tree
        replaced = len(tree.marks)
        tree.exposed = {e.key: e for e in report.exposed}
        tree.unchecked = {u.key: u for u in report.unchecked if u.key is not None}
        tree.replace_marks("the exposure scan's marks", tree.exposed)
        tree.reveal(tree.exposed)  # open the way down to every exposed role
        self.schedule_rebuild(force=True)
        tree.refresh_labels()
        self.update_status()
        text = (f"{len(report.exposed)} exposed target(s) marked"
                + (f" (replacing {replaced} earlier mark(s))" if replaced else "")
                + f"; {report.clean} clean; {len(report.unchecked)} not checked")
        for reason, n in sorted(report.reasons().items()):
            text += f"\n{n}: {reason}"
        if report.exposed:
            text += "\nr reviews the rotation."
        self.notify(text, title="Exposure", severity="warning" if report.exposed or report.unchecked else "information",
                    markup=False, timeout=15)

    async def _journal_exposure(self, report, source: str, leaked_at=None) -> None:
        """The scan's action journal (for the checklist and the report); a failure is said, never fatal."""
        from neon_tui.incident.exposure_log import journal_exposure
        from neon_tui.rotation.journal import JournalError

        app = self.app
        account = await app.account_id() if hasattr(app, "account_id") else None
        try:
            await asyncio.to_thread(journal_exposure, report, source=source, leaked_at=leaked_at,
                                    host=app.client.base_url, account=account,
                                    key_kind=getattr(app, "_key_kind", None))
        except JournalError as e:
            self.notify(f"The scan was not journaled: {e}", title="Exposure", severity="warning", markup=False)

    # ------------------------------------------------------------- review

    def action_review(self) -> None:
        if not self.tree.marks:
            self.notify("Mark roles with space first.", severity="warning")
            return
        self.open_review()

    @work(exclusive=True, group="plan", exit_on_error=False, description="Building the plan")
    async def open_review(self) -> None:
        why = self.app.run_blocks_new_one()
        if why is not None:
            self.notify(why, severity="warning", markup=False)
            return
        # Fresh roles for the marked branches: the plan's baselines (updated_at) must be current, or a lost
        # answer could be reconciled against an old change.
        await self._refresh_roles({(k[0], k[1]) for k in self.tree.marks})
        plan = await build_plan(self.inventory, self.tree.marks)
        from neon_tui.screens.review import ReviewScreen

        await self.app.push_screen(ReviewScreen(plan))

    async def _refresh_roles(self, branches: set[tuple[str, str]]) -> None:
        inv = self.inventory
        jobs = []
        for pid, bid in branches:
            p = inv.projects.get(pid)
            b = (p.branches or {}).get(bid) if p else None
            if p is not None and b is not None:
                jobs.append(inv.refresh_roles(p, b))
        await asyncio.gather(*jobs)

    def after_run(self, done: list, touched: list[tuple[str, str]]) -> None:
        """A run ended: what rotated is no longer marked, and the touched roles are read again."""
        self.tree.forget_marks(done)
        self.reload_touched(set(touched))

    @work(group="after-run", exit_on_error=False, description="Reloading rotated roles")
    async def reload_touched(self, touched: set[tuple[str, str]]) -> None:
        await self._refresh_roles(touched)
        self.schedule_rebuild(force=True)

    def action_reload(self) -> None:
        self.inventory.projects.clear()
        self.inventory.organizations = None
        self.tree.orgs = []
        self.tree.org_projects = {}
        self.tree.rebuild()
        self.loading_total = self.loading_done = 0
        self.load_account()
