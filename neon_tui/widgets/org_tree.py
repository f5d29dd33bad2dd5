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
    ]

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
        self.filter_text = ""
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
        f = self.filter_text.casefold()
        return not f or any(v is not None and f in v.casefold() for v in values)

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
        filtering = bool(self.filter_text)
        for org in self.orgs:
            oid = org.id if org else None
            oref = NodeRef("org", org_id=oid)
            pids = [pid for pid in self.org_projects.get(oid, []) if pid in self.inventory.projects]
            org_hit = self._matches(org.name if org else None, oid)
            shown = [pid for pid in pids if org_hit or self._project_hit(self.inventory.projects[pid])]
            if filtering and not shown:
                continue
            onode = self._add(self.root, oref, expand=True)
            for pid in shown:
                self._add_project(onode, self.inventory.projects[pid], filtering and not org_hit)
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
        if self._matches(p.project.name, p.project.id):
            return True
        return any(self._branch_hit(b) for b in (p.branches or {}).values())

    def _branch_hit(self, b: BranchInfo) -> bool:
        return self._matches(b.branch.name, b.branch.id) or any(self._matches(r.name) for r in b.roles or [])

    def _add_project(self, parent, p: ProjectInfo, narrow: bool) -> None:
        ref = NodeRef("project", org_id=p.project.org_id, project_id=p.project.id)
        narrow = narrow and not self._matches(p.project.name, p.project.id)
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
        self_hit = self._matches(b.branch.name, b.branch.id)
        for r in sorted(b.roles or [], key=lambda r: r.name):
            if narrow and not self_hit and not self._matches(r.name):
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
        return self._branch_hit(b) or any(self._subtree_hit(p, c) for c in p.children(b.branch.id))

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
        take that role on every branch.
        """
        keys = self.login_keys(ref)
        if self.filter_text and ref.kind != "role":
            keys = [k for k in keys if self._shown(k)]
        if not keys:
            return 0
        before = len(self.marks)
        if all(k in self.marks for k in keys):
            self.marks.difference_update(keys)
        else:
            self.marks.update(keys)
        self.refresh_labels(self._affected(keys))
        return len(self.marks) - before

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
