"""OrgTree: organization -> project -> branch (nested) -> role, with marks, badges and a filter."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from neon_tui.neon.models import Organization, Role
from neon_tui.rotation.inventory import BranchInfo, Inventory, ProjectInfo, shares_parent_password
from neon_tui.rotation.plan import TargetKey, skip_reason
from neon_tui.tree_filter import TreeFilter


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What a tree node stands for."""

    kind: str  # "org" | "project" | "branch" | "role" | "more"
    org_id: str | None = None
    project_id: str | None = None
    branch_id: str | None = None
    role_name: str | None = None

    @property
    def key(self) -> TargetKey | None:
        if self.kind == "role" and self.project_id and self.branch_id and self.role_name is not None:
            return (self.project_id, self.branch_id, self.role_name)
        return None


def age(when: datetime | None, now: datetime) -> str:
    """A compact age like 3d, 5h, 12m."""
    if when is None:
        return "?"
    seconds = max(0.0, (now - when).total_seconds())
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return "now"


def stamp(when: datetime | None, now: datetime) -> str:
    """A UTC time with its age: "2026-11-30 03:00 UTC (5h ago)", "(just now)" under a minute."""
    if when is None:
        return "?"
    a = age(when, now)
    return f"{when:%Y-%m-%d %H:%M} UTC ({'just now' if a == 'now' else a + ' ago'})"


class OrgTree(Tree[NodeRef]):
    """The account tree. Space marks; marks live in `marks` (login roles only).

    Keys act on what they mean, however far the screen lags behind the typing (a burst from tmux, 3 a.m.
    over SSH): every key typed at the tree runs here, in the order typed; a rebuild keeps the cursor on
    the same node at once; and while a node the user just opened is loading its children, the keys typed
    after the opening key wait (the status line says how many) and run once the children are shown. Keys
    of app-wide bindings (quit, help, ...) never wait: they drop the waiting keys, which is said. Keys
    wait at most HOLD_SECONDS; then they are dropped with a notice, never run on a tree the user has
    not seen.
    """

    HOLD_SECONDS = 3.0

    BINDINGS = [
        Binding("space", "toggle_mark", "Mark", id="mark"),
        Binding("enter", "toggle_node", "Open/close", show=False, id="toggle-node"),
        Binding("l,right", "open_node", "Open", show=False, id="open-node"),
        Binding("h,left", "close_node", "Close / to parent", show=False, id="close-node"),
        Binding("j", "cursor_down", "Down", show=False, id="down"),
        Binding("k", "cursor_up", "Up", show=False, id="up"),
        Binding("g", "cursor_top", "Top", show=False, id="top"),
        Binding("G", "cursor_bottom", "Bottom", show=False, id="bottom"),
        Binding("n", "next_match", "Next match", show=False, id="next-match"),
        Binding("N", "previous_match", "Previous match", show=False, id="previous-match"),
    ]

    UNDO_LEVELS = 50

    def action_open_node(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            self._open(node)

    def action_toggle_node(self) -> None:
        node = self.cursor_node
        if node is None or not node.allow_expand:
            return
        if node.is_expanded:
            node.collapse()
        else:
            self._open(node)

    def _open(self, node: TreeNode[NodeRef]) -> None:
        """Expand and fill a node now, so the next key already sees its children; if they are still
        loading, the keys after this one wait for them."""
        node.expand()
        self._fill(node)
        if node.data is not None and self.children_missing(node.data):
            self._start_hold(node.data)

    def action_close_node(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and node.is_expanded:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)

    def __init__(self, inventory: Inventory, *, now: Callable[[], datetime] | None = None, **kw) -> None:
        super().__init__("Neon", data=NodeRef("root"), **kw)
        self.inventory = inventory
        self.marks: set[TargetKey] = set()
        # The last exposure scan: roles holding a leaked password, and roles it could not check.
        self.exposed: dict[TargetKey, object] = {}
        self.unchecked: dict[TargetKey, object] = {}
        self._filter = TreeFilter()
        # Undo for marks: each step is (what, marks added, marks removed), newest last.
        self._undo: list[tuple[str, frozenset[TargetKey], frozenset[TargetKey]]] = []
        self.now = now or (lambda: datetime.now(timezone.utc))
        self.show_root = False
        self.guide_depth = 2
        self.auto_expand = False
        self.orgs: list[Organization | None] = []
        self.org_projects: dict[str | None, list[str]] = {}
        self._node_map: dict[NodeRef, TreeNode[NodeRef]] = {}
        self._expanded: set[NodeRef] = set()
        self._reveal: set[NodeRef] = set()
        self._narrow: dict[NodeRef, bool] = {}
        # Type-ahead: the node whose children the waiting keys wait for, and the keys (key, character).
        self._hold: NodeRef | None = None
        self._held_for: NodeRef | None = None
        self._held: deque[tuple[str, str | None]] = deque()
        self._hold_timer = None

    @property
    def filter_text(self) -> str:
        return self._filter.text

    @filter_text.setter
    def filter_text(self, text: str) -> None:
        """Set the filter (plain text, or prefixed terms: see neon_tui.tree_filter); FilterError if malformed."""
        self._filter = TreeFilter.parse(text)

    # ------------------------------------------------------------- labels

    def _mark_box(self, keys: list[TargetKey]) -> str:
        if not keys:
            return "   "
        n = sum(k in self.marks for k in keys)
        return "[x]" if n == len(keys) else ("[-]" if n else "[ ]")

    def login_keys(self, ref: NodeRef) -> list[TargetKey]:
        """The login roles under a node, as far as they are loaded."""
        inv = self.inventory
        if ref.kind == "role":
            return [ref.key] if ref.key else []
        out: list[TargetKey] = []
        projects = ([inv.projects[ref.project_id]] if ref.kind in ("project", "branch") and ref.project_id in inv.projects
                    else [inv.projects[p] for p in self.org_projects.get(ref.org_id, []) if p in inv.projects]
                    if ref.kind == "org" else [])
        for p in projects:
            for b in (p.branches or {}).values():
                if ref.kind == "branch" and b.branch.id != ref.branch_id:
                    continue
                out.extend((p.project.id, b.branch.id, r.name) for r in b.roles or [] if skip_reason(r) is None)
        return out

    def label_for(self, ref: NodeRef) -> Text:
        inv = self.inventory
        t = Text(no_wrap=True, overflow="ellipsis")
        if ref.kind == "org":
            org = next((o for o in self.orgs if (o.id if o else None) == ref.org_id), None)
            t.append(self._mark_box(self.login_keys(ref)) + " ", style="bold")
            t.append(org.name if org else "(this key's organization)", style="bold")
            n = len(self.org_projects.get(ref.org_id, []))
            t.append(f"  {n} projects", style="dim")
            return t
        p = inv.projects.get(ref.project_id or "")
        if ref.kind == "project" and p:
            t.append(self._mark_box(self.login_keys(ref)) + " ")
            t.append(p.project.name, style="bold")
            if not p.project.store_passwords:
                t.append(" no-stored-pw", style="italic")
            if p.branches is None:
                t.append("  …", style="dim")
            return t
        b = p.branches.get(ref.branch_id or "") if p and p.branches else None
        if ref.kind == "branch" and b:
            t.append(self._mark_box(self.login_keys(ref)) + " ")
            t.append(b.branch.name)
            if b.branch.default:
                t.append(" default", style="bold")
            if b.branch.protected:
                t.append(" protected", style="bold reverse")
            if not b.has_compute:
                t.append(" no-compute", style="italic")
            return t
        if ref.kind == "role" and b and p:
            role = next((r for r in b.roles or [] if r.name == ref.role_name), None)
            if role is None:
                return Text(ref.role_name or "?")
            return self._role_label(p, b, role, ref)
        return Text(ref.role_name or ref.kind)

    def _role_label(self, p: ProjectInfo, b: BranchInfo, role: Role, ref: NodeRef) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        reason = skip_reason(role)
        t.append(("[x] " if ref.key in self.marks else "[ ] ") if reason is None else "    ")
        t.append(role.name, style="dim" if reason else "")
        if role.protected:
            t.append(" system", style="italic")
        elif role.authentication_method == "no_login":
            t.append(" no-login", style="italic")
        t.append(f" {age(role.updated_at, self.now())}", style="dim")
        if reason is None and shares_parent_password(p, b, role):
            t.append(" inherited-pw", style="bold")
        if ref.key in self.exposed:
            t.append(" exposed", style="bold reverse")
        elif ref.key in self.unchecked:
            t.append(" unchecked", style="italic underline")
        return t

    def refresh_labels(self, refs: set[NodeRef] | None = None) -> None:
        if refs is None:
            targets = list(self._node_map.items())
        else:
            targets = [(r, self._node_map[r]) for r in refs if r in self._node_map]
        for ref, node in targets:
            node.set_label(self.label_for(ref))

    # ------------------------------------------------------------- building

    def _matches(self, *values: str | None) -> bool:
        """Plain-text filter: is the text a substring (any case) of one of these names or ids?"""
        return self._filter.plain_match(*values)

    # Prefixed terms (role:, project:, ...) are judged on a role's whole path: org, project, branch, role.

    def _org_values(self, org_id: str | None) -> tuple[str | None, str | None]:
        org = next((o for o in self.orgs if o is not None and o.id == org_id), None)
        return (org.name, org.id) if org is not None else (None, org_id)

    def _complete(self, p: ProjectInfo | None = None, b: BranchInfo | None = None, r: Role | None = None,
                  org_id: str | None = None) -> bool:
        """Does this path (org, then project, branch, role as far as given) satisfy the whole prefixed filter?"""
        f = self._filter
        oid = p.project.org_id if p is not None else org_id
        values: list[str | None] = list(self._org_values(oid))
        if not f.term_ok("org", *values):
            return False
        level = "org"
        if p is not None:
            if not f.term_ok("project", p.project.name, p.project.id):
                return False
            values += [p.project.name, p.project.id]
            level = "project"
        if b is not None:
            if not f.term_ok("branch", b.branch.name, b.branch.id):
                return False
            values += [b.branch.name, b.branch.id]
            level = "branch"
        if r is not None:
            if not f.term_ok("role", r.name):
                return False
            values.append(r.name)
            level = "role"
        if level != "role" and f.deeper(level):
            return False
        return not f.words_left(*values)

    def _project_possible(self, p: ProjectInfo) -> bool:
        """Could anything in this project match the prefixed filter (its org and project terms hold)?"""
        f = self._filter
        return f.term_ok("org", *self._org_values(p.project.org_id)) and \
            f.term_ok("project", p.project.name, p.project.id)

    def _role_hit(self, p: ProjectInfo, b: BranchInfo, r: Role) -> bool:
        return self._complete(p, b, r) or self._complete(p, b) or self._complete(p)

    def _add(self, parent: TreeNode[NodeRef], ref: NodeRef, *, leaf: bool = False,
             expand: bool = False) -> TreeNode[NodeRef]:
        label = self.label_for(ref)
        node = parent.add_leaf(label, data=ref) if leaf else parent.add(label, data=ref, expand=expand)
        self._node_map[ref] = node
        return node

    def rebuild(self) -> None:
        """Rebuild from the inventory, keeping the cursor and what was expanded.

        Only expanded nodes get children: a collapsed project or branch is filled in when it is opened,
        so the tree's size (and every rebuild's cost) follows what is on screen, not the account's size.
        """
        self._expanded = {ref for ref, n in self._node_map.items() if n.is_expanded} | self._reveal
        self._reveal = set()  # one-shot: a node the user closes afterwards stays closed
        # The cursor's node and its ancestors, nearest first: if the node is gone (filtered out), its
        # closest surviving ancestor takes the cursor.
        cursor_path: list[NodeRef] = []
        node = self.cursor_node
        while node is not None and node is not self.root and node.data is not None:
            cursor_path.append(node.data)
            node = node.parent
        self.clear()
        self._node_map.clear()
        filtering = self._filter.active
        structured = self._filter.structured
        for org in self.orgs:
            oid = org.id if org else None
            oref = NodeRef("org", org_id=oid)
            pids = [pid for pid in self.org_projects.get(oid, []) if pid in self.inventory.projects]
            shown: list[tuple[str, bool]] = []  # (project id, narrowed to what matches)
            if structured:
                whole_org = self._complete(org_id=oid)
                for pid in pids:
                    p = self.inventory.projects[pid]
                    if whole_org or self._complete(p):
                        shown.append((pid, False))
                    elif self._project_possible(p) and self._project_hit(p):
                        shown.append((pid, True))
            else:
                org_hit = self._matches(org.name if org else None, oid)
                for pid in pids:
                    p = self.inventory.projects[pid]
                    if org_hit or self._matches(p.project.name, p.project.id):
                        shown.append((pid, False))
                    elif self._project_hit(p):
                        shown.append((pid, True))
            if filtering and not shown:
                continue
            onode = self._add(self.root, oref, expand=True)
            for pid, narrow in shown:
                self._add_project(onode, self.inventory.projects[pid], narrow)
        # Lay the lines out now (Textual would on the next refresh) and put the cursor back in this same
        # call: a key handled before the next repaint must move from, or mark, the node the user sees.
        self.get_node_at_line(0)
        target = next((self._node_map[r] for r in cursor_path if r in self._node_map), None)
        if target is not None:
            self.move_cursor(target)
        if self._hold is not None and not self.children_missing(self._hold):
            self._release()

    def reveal(self, keys) -> None:
        """Open, on the next rebuild, the project and every branch down to each of these roles."""
        for project_id, branch_id, _role in keys:
            p = self.inventory.projects.get(project_id)
            if p is None:
                continue
            self._reveal.add(NodeRef("project", org_id=p.project.org_id, project_id=project_id))
            seen = set()
            b = (p.branches or {}).get(branch_id)
            while b is not None and b.branch.id not in seen:
                seen.add(b.branch.id)
                self._reveal.add(NodeRef("branch", project_id=project_id, branch_id=b.branch.id))
                b = (p.branches or {}).get(b.branch.parent_id or "")

    def _project_hit(self, p: ProjectInfo) -> bool:
        if not self._filter.structured and self._matches(p.project.name, p.project.id):
            return True
        return any(self._branch_hit(p, b) for b in (p.branches or {}).values())

    def _branch_hit(self, p: ProjectInfo, b: BranchInfo) -> bool:
        if self._filter.structured:
            return any(self._role_hit(p, b, r) for r in b.roles or [])
        return self._matches(b.branch.name, b.branch.id) or any(self._matches(r.name) for r in b.roles or [])

    def _add_project(self, parent, p: ProjectInfo, narrow: bool) -> None:
        ref = NodeRef("project", org_id=p.project.org_id, project_id=p.project.id)
        open_ = ref in self._expanded or narrow
        node = self._add(parent, ref, expand=open_)
        self._narrow[ref] = narrow
        if open_:
            self._fill(node)

    def _fill(self, node: TreeNode[NodeRef]) -> None:
        """Add a project's or branch's children (once)."""
        ref = node.data
        if ref is None or node.children:
            return
        p = self.inventory.projects.get(ref.project_id or "")
        if p is None or p.branches is None:
            return
        narrow = self._narrow.get(ref, False)
        if ref.kind == "project":
            self._add_branches(node, p, None, narrow)
            return
        b = p.branches.get(ref.branch_id or "")
        if b is None:
            return
        structured = self._filter.structured
        # Plain text: a matching branch shows all it holds. Prefixed terms: a role shows when its path matches.
        self_hit = not structured and self._matches(b.branch.name, b.branch.id)
        for r in sorted(b.roles or [], key=lambda r: r.name):
            if narrow and not self_hit and not (self._role_hit(p, b, r) if structured else self._matches(r.name)):
                continue
            self._add(node, NodeRef("role", project_id=p.project.id, branch_id=b.branch.id, role_name=r.name),
                      leaf=True)
        self._add_branches(node, p, b.branch.id, narrow and not self_hit)

    def _add_branches(self, parent, p: ProjectInfo, parent_id: str | None, narrow: bool) -> None:
        for b in p.children(parent_id):
            if narrow and not self._subtree_hit(p, b):
                continue
            ref = NodeRef("branch", project_id=p.project.id, branch_id=b.branch.id)
            open_ = ref in self._expanded or narrow
            node = self._add(parent, ref, expand=open_)
            self._narrow[ref] = narrow
            if open_:
                self._fill(node)

    def _subtree_hit(self, p: ProjectInfo, b: BranchInfo) -> bool:
        return self._branch_hit(p, b) or any(self._subtree_hit(p, c) for c in p.children(b.branch.id))

    def _on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        # Children of a collapsed node are added when it opens (the screen loads missing data).
        self._fill(event.node)

    def node_for(self, ref: NodeRef) -> TreeNode[NodeRef] | None:
        return self._node_map.get(ref)

    def children_missing(self, ref: NodeRef) -> bool:
        """Is this node's own content still to be loaded (a project's branches, a branch's roles)?"""
        p = self.inventory.projects.get(ref.project_id or "")
        if p is None:
            return False
        if ref.kind == "project":
            return p.branches is None
        if ref.kind == "branch":
            b = (p.branches or {}).get(ref.branch_id or "")
            return b is not None and b.roles is None
        return False

    def node_name(self, ref: NodeRef) -> str:
        p = self.inventory.projects.get(ref.project_id or "")
        if p is None:
            return ref.kind
        b = (p.branches or {}).get(ref.branch_id or "") if ref.kind == "branch" else None
        return f"{p.project.name}/{b.branch.name}" if b is not None else p.project.name

    # ------------------------------------------------------------- keys, in the order typed

    class HoldChanged(Message):
        """Keys started or stopped waiting for a node, or one more is waiting (for the status line)."""

    @property
    def holding(self) -> NodeRef | None:
        """The node whose children the waiting keys wait for, if any."""
        return self._hold

    @property
    def waiting_keys(self) -> int:
        return len(self._held)

    async def _on_key(self, event: events.Key) -> None:
        # Textual would run the binding later, from the app's queue, after the key has bubbled up; an
        # opening key's effect (children added, keys held) would then come after keys already on their way.
        # Running it here keeps every key in order with what the tree shows.
        if self._hold is not None or self._held:
            if self._app_wide(event.key):
                # quit, help, the command log: never kept waiting, and what waited is not run behind them.
                self._drop_held("typed while {} was loading")
                self._stop_hold()
            else:
                event.stop()
                event.prevent_default()
                self._held.append((event.key, event.character))
                self.post_message(self.HoldChanged())
                return
        if await self._run_key(event.key, event.character):
            event.stop()
            event.prevent_default()

    def _app_wide(self, key: str) -> bool:
        active = self.screen.active_bindings.get(key) if self.screen is self.app.screen else None
        return active is not None and active.node is self.app

    async def _run_key(self, key: str, character: str | None) -> bool:
        """Run a key as the app would (the focused widget's bindings, then its ancestors'); True if handled."""
        app = self.app
        if app.focused is not self or self.screen is not app.screen:
            # An earlier key moved the focus (the filter box, a dialog): this key was typed for it.
            (app.focused or app.screen).post_message(events.Key(key, character))
            return True
        active = self.screen.active_bindings.get(key)
        if active is None or not active.enabled or active.binding.priority:
            return False
        return await app.run_action(active.binding.action, active.node)

    def _start_hold(self, ref: NodeRef) -> None:
        self._hold = self._held_for = ref
        if self._hold_timer is not None:
            self._hold_timer.stop()
        self._hold_timer = self.set_timer(self.HOLD_SECONDS, self._hold_expired)
        self.post_message(self.HoldChanged())

    def _stop_hold(self) -> None:
        self._hold = None
        if self._hold_timer is not None:
            self._hold_timer.stop()
            self._hold_timer = None
        self.post_message(self.HoldChanged())

    def _release(self) -> None:
        """The held node's children are shown: run the waiting keys (from the tree's queue, in order)."""
        self._stop_hold()
        if self._held:
            self.call_later(self._replay)

    async def _replay(self) -> None:
        if self._hold is not None or not self._held:
            return  # a key opened another loading node: the rest waits for that one
        if self.screen is not self.app.screen or self.app.focused is not self:
            # Something else came up meanwhile (an error, the resume offer): not what these keys were for.
            self._drop_held("something else came up while {} was loading")
            return
        while self._held and self._hold is None:
            key, character = self._held.popleft()
            await self._run_key(key, character)
        self.post_message(self.HoldChanged())

    def _hold_expired(self) -> None:
        if self._hold is None:
            return
        self._stop_hold()
        self._drop_held("{} is still loading")

    def load_failed(self, ref: NodeRef, why: str = "loading {} failed") -> None:
        """Loading a node the keys wait for failed: drop them (the error is reported by the app)."""
        if self._hold != ref:
            return
        self._stop_hold()
        self._drop_held(why)

    def _drop_held(self, why: str) -> None:
        """Forget the waiting keys and say so; `why` has {} for the name of the node they waited for."""
        n = len(self._held)
        self._held.clear()
        self.post_message(self.HoldChanged())
        if n:
            name = self.node_name(self._held_for) if self._held_for is not None else "a node"
            self.notify(f"{n} key{'s' if n != 1 else ''} not applied: {why.format(name)}.",
                        severity="warning", markup=False)

    # ------------------------------------------------------------- marking

    def action_toggle_mark(self) -> None:
        node = self.cursor_node
        if node is None or node.data is None:
            return
        self.post_message(self.MarkRequested(self, node.data))

    from textual.message import Message as _Message

    class MarkRequested(_Message):
        """Space on a node: the screen loads what is needed, then calls `toggle()`."""

        def __init__(self, tree: OrgTree, ref: NodeRef) -> None:
            super().__init__()
            self.tree = tree
            self.ref = ref

        @property
        def control(self) -> OrgTree:
            return self.tree

    def _shown(self, key: TargetKey) -> bool:
        """Is this role on screen under the current filter (its name, its branch or an ancestor matches)?"""
        p = self.inventory.projects.get(key[0])
        if p is None or p.branches is None:
            return False
        if self._filter.structured:
            b = p.branches.get(key[1])
            role = next((r for r in (b.roles or []) if r.name == key[2]), None) if b is not None else None
            return self._complete(org_id=p.project.org_id) or (role is not None and self._role_hit(p, b, role))
        if self._matches(key[2]) or self._matches(p.project.name, p.project.id):
            return True
        b = p.branches.get(key[1])
        while b is not None:
            if self._matches(b.branch.name, b.branch.id):
                return True
            b = p.parent(b)
        return False

    def toggle(self, ref: NodeRef) -> int:
        """Mark every login role under the node, or unmark them if all were marked; returns the change.

        With a filter on, only the roles the filter shows: filter by a role name, then mark a project to
        take that role on every branch. Undoable (`undo`).
        """
        keys = self.login_keys(ref)
        if self.filter_text and ref.kind != "role":
            keys = [k for k in keys if self._shown(k)]
        if not keys:
            return 0
        what = f"{'unmark' if all(k in self.marks for k in keys) else 'mark'} {self.node_label_text(ref)}"
        if all(k in self.marks for k in keys):
            return -len(self.change_marks(what, remove=keys)[1])
        return len(self.change_marks(what, add=keys)[0])

    def node_label_text(self, ref: NodeRef) -> str:
        """A node's name for messages ("acme-prod/staging", "role app on acme-prod/staging")."""
        if ref.kind == "org":
            org = next((o for o in self.orgs if (o.id if o else None) == ref.org_id), None)
            return f"organization {org.name}" if org else "this key's organization"
        if ref.kind == "role":
            return f"{ref.role_name} on {self.node_name(NodeRef('branch', project_id=ref.project_id, branch_id=ref.branch_id))}"
        return self.node_name(ref)

    # ------------------------------------------------------------- changing marks, undoably

    def change_marks(self, what: str, *, add=(), remove=()) -> tuple[frozenset[TargetKey], frozenset[TargetKey]]:
        """Add and remove marks as one undoable step; returns (what was added, what was removed)."""
        added = frozenset(k for k in add if k not in self.marks)
        removed = frozenset(k for k in remove if k in self.marks and k not in added)
        if not added and not removed:
            return added, removed
        self.marks.difference_update(removed)
        self.marks.update(added)
        self._undo.append((what, added, removed))
        del self._undo[:-self.UNDO_LEVELS]
        self.refresh_labels(self._affected(list(added | removed)))
        return added, removed

    def replace_marks(self, what: str, keys) -> tuple[frozenset[TargetKey], frozenset[TargetKey]]:
        keys = set(keys)
        return self.change_marks(what, add=keys, remove=self.marks - keys)

    def unmark_all(self) -> int:
        return len(self.change_marks("unmark all", remove=set(self.marks))[1])

    def forget_marks(self, keys) -> None:
        """Drop marks without an undo step (a run rotated them): no undo brings a rotated target back."""
        keys = set(keys)
        self.marks.difference_update(keys)
        self._undo = [(w, a - keys, r - keys) for w, a, r in self._undo if (a - keys) or (r - keys)]
        self.refresh_labels(self._affected(list(keys)))

    @property
    def undo_depth(self) -> int:
        return len(self._undo)

    def undo(self) -> tuple[str, int, int] | None:
        """Undo the last mark change: (what it was, marks taken back, marks restored), or None if none."""
        if not self._undo:
            return None
        what, added, removed = self._undo.pop()
        self.marks.difference_update(added)
        self.marks.update(removed)
        self.refresh_labels(self._affected(list(added | removed)))
        return what, len(added), len(removed)

    # ------------------------------------------------------------- matches

    def is_match(self, ref: NodeRef) -> bool:
        """Is this node itself a hit of the filter (not just on the way to one)?

        Plain text: its own name or id contains the text. Prefixed terms: its path satisfies the filter and
        its parent's does not (the highest node that matches as a whole: a project for `project:x`, each
        role for `role:x`).
        """
        f = self._filter
        if not f.active or ref.kind not in ("org", "project", "branch", "role"):
            return False
        if ref.kind == "org":
            org_values = self._org_values(ref.org_id)
            return self._complete(org_id=ref.org_id) if f.structured else self._matches(*org_values)
        p = self.inventory.projects.get(ref.project_id or "")
        if p is None:
            return False
        if ref.kind == "project":
            if f.structured:
                return self._complete(p) and not self._complete(org_id=p.project.org_id)
            return self._matches(p.project.name, p.project.id)
        b = (p.branches or {}).get(ref.branch_id or "")
        if b is None:
            return False
        if ref.kind == "branch":
            if f.structured:
                return self._complete(p, b) and not self._complete(p)
            return self._matches(b.branch.name, b.branch.id)
        role = next((r for r in b.roles or [] if r.name == ref.role_name), None)
        if role is None:
            return False
        if f.structured:
            return self._complete(p, b, role) and not self._complete(p, b) and not self._complete(p)
        return self._matches(role.name)

    def _walk(self) -> list[TreeNode[NodeRef]]:
        """Every node the tree holds, in the order it shows them (collapsed nodes' children included)."""
        out: list[TreeNode[NodeRef]] = []
        stack = list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(node.children))
        return out

    def matches(self) -> list[NodeRef]:
        """The nodes that are hits of the filter, top to bottom."""
        return [n.data for n in self._walk() if n.data is not None and self.is_match(n.data)]

    def go_to(self, ref: NodeRef) -> bool:
        """Put the cursor on a node, opening its ancestors; False if the tree does not hold it."""
        node = self.node_for(ref)
        if node is None:
            return False
        parent = node.parent
        while parent is not None and parent is not self.root:
            if not parent.is_expanded:
                parent.expand()
            parent = parent.parent
        self.get_node_at_line(0)  # lay the lines out now, so the cursor lands on the node at once
        self.move_cursor(node)
        self.scroll_to_node(node, animate=False)
        return True

    class MatchMoved(Message):
        """n/N moved (or could not move) the cursor between matches; `position` is 1-based, 0 when none."""

        def __init__(self, position: int, total: int, wrapped: bool) -> None:
            super().__init__()
            self.position = position
            self.total = total
            self.wrapped = wrapped

    def first_match(self) -> bool:
        """The cursor on the first match (when a filter is applied); False when nothing matches."""
        found = self.matches()
        return bool(found) and self.go_to(found[0])

    def _step_match(self, step: int) -> None:
        nodes = [n for n in self._walk() if n.data is not None]
        order = {n.data: i for i, n in enumerate(nodes)}
        found = [n.data for n in nodes if self.is_match(n.data)]
        if not found:
            self.post_message(self.MatchMoved(0, 0, False))
            return
        here = order.get(self.cursor_node.data, -1) if self.cursor_node is not None else -1
        if step > 0:
            after = [i for i, r in enumerate(found) if order[r] > here]
            index, wrapped = (after[0], False) if after else (0, True)
        else:
            before = [i for i, r in enumerate(found) if order[r] < here]
            index, wrapped = (before[-1], False) if before else (len(found) - 1, True)
        self.go_to(found[index])
        self.post_message(self.MatchMoved(index + 1, len(found), wrapped))

    def action_next_match(self) -> None:
        self._step_match(1)

    def action_previous_match(self) -> None:
        self._step_match(-1)

    def action_cursor_top(self) -> None:
        if self.last_line >= 0:
            self.cursor_line = 0
            self.scroll_to_line(0, animate=False)

    def action_cursor_bottom(self) -> None:
        if self.last_line >= 0:
            self.cursor_line = self.last_line
            self.scroll_to_line(self.last_line, animate=False)

    def match_targets(self) -> list[TargetKey]:
        """Every login role the filter shows, in every organization (as far as loaded)."""
        if not self._filter.active:
            return []
        keys: list[TargetKey] = []
        for org in self.orgs:
            keys.extend(k for k in self.login_keys(NodeRef("org", org_id=org.id if org else None)) if self._shown(k))
        return keys

    def projects_for_matches(self) -> list[ProjectInfo]:
        """The projects whose roles decide what matches (the prefixed filter's org/project terms narrow them)."""
        out = []
        for oid, pids in self.org_projects.items():
            for pid in pids:
                p = self.inventory.projects.get(pid)
                if p is not None and (not self._filter.structured or self._project_possible(p)):
                    out.append(p)
        return out

    # ------------------------------------------------------------- mouse

    MARK_BOXES = ("[ ]", "[x]", "[-]")

    def render_label(self, node: TreeNode[NodeRef], base_style, style) -> Text:
        text = super().render_label(node, base_style, style)
        # The mark box at the start of the label: a click on it marks (the click handler reads this meta).
        box = len(text.plain) - len(node.label.plain)
        if node.label.plain[:3] in self.MARK_BOXES:
            from rich.style import Style

            # the box and the space after it: one span, as the label's own text was, and an easier target
            text.stylize(Style(meta={"mark": True}), box, box + 4)
        return text

    async def _on_click(self, event: events.Click) -> None:
        meta = event.style.meta
        if meta.get("mark") and "line" in meta:
            node = self.get_node_at_line(meta["line"])
            if node is not None and node.data is not None:
                event.stop()
                event.prevent_default()
                self.move_cursor(node)
                self.post_message(self.MarkRequested(self, node.data))
        # Anywhere else: Tree's own click handler runs next (Textual calls each class's in turn).

    def _affected(self, keys: list[TargetKey]) -> set[NodeRef]:
        """The nodes whose mark box can change when these roles change: them and their ancestors."""
        refs: set[NodeRef] = set()
        projects = {k[0] for k in keys}
        for ref in self._node_map:
            if ref.kind == "org" or (ref.kind in ("project", "branch") and ref.project_id in projects):
                refs.add(ref)
        refs.update(NodeRef("role", project_id=k[0], branch_id=k[1], role_name=k[2]) for k in keys)
        return refs

    @property
    def refs(self) -> tuple[NodeRef, ...]:
        """The nodes in the tree now, in the order they were added (the filter's hits and their ancestors;
        children of a closed node only once they are loaded). `node_for(ref)` gives the TreeNode."""
        return tuple(self._node_map)
