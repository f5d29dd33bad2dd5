"""From a selection (selectors or marked nodes) to a plan: concrete targets, skips with reasons, warnings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import quote

from neon_tui.neon.errors import NeonError
from neon_tui.neon.models import Database, Endpoint, Organization, Role
from neon_tui.neon.secret import Secret
from neon_tui.rotation.inventory import BranchInfo, Inventory, ProjectInfo, shares_parent_password

TargetKey = tuple[str, str, str]  # (project_id, branch_id, role_name)


@dataclass(frozen=True, slots=True)
class Target:
    """One role on one branch to reset."""

    project_id: str
    project_name: str
    branch_id: str
    branch_name: str
    role_name: str
    role_updated_at: str | None
    store_passwords: bool
    protected_branch: bool
    endpoints: tuple[Endpoint, ...] = ()
    databases: tuple[Database, ...] = ()

    @property
    def key(self) -> TargetKey:
        return (self.project_id, self.branch_id, self.role_name)

    @property
    def label(self) -> str:
        return f"{self.project_name}/{self.branch_name}/{self.role_name}"

    @property
    def read_write_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.read_write)

    @property
    def connect_endpoint(self) -> Endpoint | None:
        """The endpoint connection strings point at: the read-write one, else any."""
        rw = self.read_write_endpoints
        return rw[0] if rw else (self.endpoints[0] if self.endpoints else None)

    def connection_databases(self) -> list[Database]:
        """Databases to produce strings for: those the role owns first, then the rest of the branch's, oldest
        first (the project's own database, created with it, before any added later), so the first one is
        the likeliest to be the one an application connects to."""
        return sorted(self.databases, key=lambda d: (d.owner_name != self.role_name, d.id, d.name))

    def consequences(self) -> list[str]:
        out = []
        rw = self.read_write_endpoints
        for e in rw:
            out.append(f"connections to {e.id} are dropped")
            if e.current_state != "active":
                out.append(f"idle compute {e.id} wakes for a short time")
        if rw:
            out.append("the old password keeps working until the reset's operations finish")
        else:
            out.append("no read-write compute: the new password applies at once")
        if not self.endpoints:
            out.append("no compute on this branch: no connection string until an endpoint exists")
        if not self.store_passwords:
            out.append("the project does not store passwords: a lost answer cannot be recovered")
        if self.protected_branch:
            out.append("protected branch")
        return out


@dataclass(frozen=True, slots=True)
class Skipped:
    project_name: str
    branch_name: str
    role_name: str
    reason: str

    @property
    def label(self) -> str:
        return f"{self.project_name}/{self.branch_name}/{self.role_name}"


@dataclass(frozen=True, slots=True)
class CopyWarning:
    """A branch that holds the same role name but is not in the plan.

    `same_as` names the selected branch whose password this copy still holds, when the inventory shows it:
    Neon copies a role with its password onto a branch created from another, and neither copy changes until
    one is reset (role updated_at); `why` says how the two are linked. None: its own password as far as the
    inventory shows (branched before the last reset, reset since, or from a protected branch)."""

    project_name: str
    branch_name: str
    branch_id: str
    role_name: str
    likely_same_password: bool
    project_id: str = ""
    same_as: str | None = None
    why: str = ""

    @property
    def key(self) -> TargetKey:
        return (self.project_id, self.branch_id, self.role_name)

    @property
    def reason(self) -> str:
        """Why this copy matters (or does not), without the role's name."""
        if self.same_as is not None:
            return f"same password as {self.same_as} ({self.why})" if self.why else f"same password as {self.same_as}"
        return f"its own password ({self.why})" if self.why else "its own password (not the one being reset)"

    def __str__(self) -> str:
        return f"{self.project_name}/{self.branch_name} is not selected: {self.reason}: {self.role_name}"


@dataclass(frozen=True, slots=True)
class CopyGroup:
    """The unselected copies of one branch that share one reason: one line in a review, whatever the roles."""

    project_name: str
    branch_name: str
    reason: str
    flagged: bool  # likely holds a password being reset (or the leak scan found the leaked one there)
    roles: tuple[str, ...]
    keys: tuple[TargetKey, ...]

    def __str__(self) -> str:
        return f"{self.project_name}/{self.branch_name}: {self.reason}: {', '.join(self.roles)}"


def group_copies(warnings: Iterable[CopyWarning], exposed: Iterable[TargetKey] = ()) -> list[CopyGroup]:
    """Unselected copies grouped by branch and reason, flagged ones first (tree order kept otherwise).
    `exposed`: keys where a leak scan found the leaked password, which settles the question."""
    exposed = set(exposed)
    groups: dict[tuple[str, str, str], list[CopyWarning]] = {}
    flagged: dict[tuple[str, str, str], bool] = {}
    for w in warnings:
        proven = w.key in exposed
        reason = "the leak scan found the leaked password here" if proven else w.reason
        k = (w.project_name, w.branch_name, reason)
        groups.setdefault(k, []).append(w)
        flagged[k] = proven or w.likely_same_password
    out = [CopyGroup(p, b, reason, flagged[(p, b, reason)], tuple(w.role_name for w in ws), tuple(w.key for w in ws))
           for (p, b, reason), ws in groups.items()]
    return sorted(out, key=lambda g: not g.flagged)


@dataclass(slots=True)
class Plan:
    targets: list[Target] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[CopyWarning] = field(default_factory=list)
    org_id: str | None = None
    unmatched: list[str] = field(default_factory=list)  # selectors that matched no role at all

    @property
    def touches_protected_branch(self) -> bool:
        return any(t.protected_branch for t in self.targets)

    @property
    def projects(self) -> list[str]:
        return sorted({t.project_id for t in self.targets})


def skip_reason(role: Role) -> str | None:
    if role.protected:
        return "system-protected role (managed by Neon)"
    if role.authentication_method == "no_login":
        return "no_login role: it has no password to leak"
    if role.authentication_method not in ("password", ""):
        return f"{role.authentication_method} role: it does not log in with a password"
    return None


def connection_uri(role_name: str, password: Secret, host: str, database: str) -> Secret:
    """The libpq URI Neon's console shows, with every part percent-encoded."""
    user = quote(role_name, safe="")
    pw = quote(password.reveal(), safe="")
    db = quote(database, safe="")
    return Secret(f"postgresql://{user}:{pw}@{host}/{db}?sslmode=require&channel_binding=require")


@dataclass(frozen=True, slots=True)
class Selector:
    """PROJECT[/BRANCH[/ROLE]] with shell-style globs, matched against names or ids.

    Branch names often hold '/' (dev/alice, preview/pr-142) and role names may too, so with three or
    more parts every split of the rest into BRANCH/ROLE is tried; the role is at least the last part.
    `p/dev/alice/*` is every role on branch dev/alice; `p/dev/alice` is role alice on branch dev.
    """

    project: str
    rest: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # An empty part must never mean "every": built directly or parsed, it is refused.
        if any(not part or not part.strip() for part in (self.project, *self.rest)):
            raise ValueError(_empty_part_message("/".join((self.project, *self.rest))))

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse PROJECT[/BRANCH[/ROLE]]; ValueError for an empty selector or an empty part.

        An empty part (leading, trailing or doubled '/', or only spaces) is an error, never a wildcard:
        `"$P/$B/$R"` with unset variables must not become the whole organization. `*` says "every".
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty selector: name what to rotate as PROJECT[/BRANCH[/ROLE]]; "
                             "write '*' for every project in the organization")
        parts = text.strip().split("/")
        if any(not part.strip() for part in parts):
            raise ValueError(_empty_part_message(text))
        project, *rest = parts
        return cls(project, tuple(rest))

    @staticmethod
    def _match(pattern: str, *values: str | None) -> bool:
        # No fallback for an empty pattern: it matches nothing rather than everything.
        return bool(pattern) and any(v is not None and fnmatchcase(v, pattern) for v in values)

    def matches_project(self, p: ProjectInfo, ids: frozenset[str] | set[str] = frozenset()) -> bool:
        """`ids`: every project id in scope. A part that IS one of them names that project only, never
        also a project whose name happens to equal it (the exposure scan prints ids; nothing may widen)."""
        if self.project in ids:
            return p.project.id == self.project
        return self._match(self.project, p.project.name, p.project.id)

    def matches_exact(self, b: BranchInfo, r: Role, branch_ids: frozenset[str] | set[str]) -> bool:
        """Like matches(), but a branch part that IS one of this project's branch ids names that branch only."""
        if self.rest and self.rest[0] in branch_ids:
            if b.branch.id != self.rest[0]:
                return False
            return len(self.rest) == 1 or fnmatchcase(r.name, "/".join(self.rest[1:]))
        return self.matches(b, r)

    def matches_branch(self, b: BranchInfo) -> bool:
        """Could any split select something on this branch?"""
        if not self.rest:
            return True
        if len(self.rest) == 1:
            return self._match(self.rest[0], b.branch.name, b.branch.id)
        return any(self._match("/".join(self.rest[:i]), b.branch.name, b.branch.id) for i in range(1, len(self.rest)))

    def matches(self, b: BranchInfo, r: Role) -> bool:
        if not self.rest:
            return True
        if len(self.rest) == 1:
            return self._match(self.rest[0], b.branch.name, b.branch.id)
        return any(
            self._match("/".join(self.rest[:i]), b.branch.name, b.branch.id) and self._match("/".join(self.rest[i:]), r.name)
            for i in range(1, len(self.rest))
        )


_GLOB_CHARS = "*?[/"


def quote_selector_part(name: str) -> str:
    """A name as a selector part that matches exactly that name: glob characters and '/' go into brackets
    (`[*]`, `[?]`, `[[]`, `[/]`), as do leading and trailing whitespace, so no name can widen a selector or
    make an empty part. Plain names are unchanged. Works with every `Selector` as it always parsed."""
    out = []
    last = len(name) - 1
    for i, ch in enumerate(name):
        if ch in _GLOB_CHARS or (ch.isspace() and (i == 0 or i == last)):
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)


def selector_for(key: TargetKey) -> str:
    """`PROJECT_ID/BRANCH_ID/ROLE` selecting exactly this target in its organization."""
    return "/".join(quote_selector_part(part) for part in key)


def _empty_part_message(text: str) -> str:
    return (f"selector {text!r} has an empty part (a leading, trailing or doubled '/', or only spaces; "
            "an unset shell variable?). An empty part never means 'every': write '*' for every project, "
            "branch or role, e.g. 'myproj/*/app'")


def parse_selectors(texts: Iterable[str]) -> list[Selector]:
    """Parse every selector before anything is loaded; one ValueError naming each bad one.

    Call it before talking to the API: a bad selector is a usage error (exit status 2).
    """
    texts = list(texts)
    sels: list[Selector] = []
    problems: list[str] = []
    for text in texts:
        try:
            sels.append(Selector.parse(text))
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise ValueError("; ".join(problems))
    if not sels:
        raise ValueError("no selector: name what to rotate as PROJECT[/BRANCH[/ROLE]] ('*' for everything)")
    return sels


async def plan_from_selectors(inventory: Inventory, selectors: Iterable[str], org_id: str | None) -> Plan:
    """Expand selectors over everything the key can see in one organization."""
    selectors = list(selectors)
    sels = parse_selectors(selectors)
    projects = await inventory.load_projects(org_id)
    project_ids = {p.project.id for p in projects}
    wanted = [p for p in projects if any(s.matches_project(p, project_ids) for s in sels)]
    await asyncio.gather(*(inventory.load_branches(p) for p in wanted))
    chosen: set[TargetKey] = set()
    loads = []
    for p in wanted:
        for b in (p.branches or {}).values():
            # Databases ride along with the roles (one phase, not two) where a selector could pick the branch.
            could_pick = any(s.matches_project(p, project_ids) and s.matches_branch(b) for s in sels)
            loads.append(inventory.load_roles_and_databases(p, b, databases=could_pick))
    await asyncio.gather(*loads)
    hits: set[int] = set()
    for p in wanted:
        branch_ids = set(p.branches or {})
        for b in (p.branches or {}).values():
            for r in b.roles or []:
                matched = [i for i, s in enumerate(sels)
                           if s.matches_project(p, project_ids) and s.matches_exact(b, r, branch_ids)]
                if matched:
                    hits.update(matched)
                    chosen.add((p.project.id, b.branch.id, r.name))
    plan = await build_plan(inventory, chosen)
    plan.org_id = org_id
    plan.unmatched = [text for i, text in enumerate(selectors) if i not in hits]
    return plan


async def other_org_matches(
    inventory: Inventory, selectors: Iterable[str], org_id: str | None
) -> dict[str, list[Organization]]:
    """For selectors that matched nothing in `org_id`: the other organizations where each matches a role.

    Returns every given selector as a key, mapped to the organizations (in the order Neon lists them,
    `org_id` itself excluded) where it would match at least one role; an empty list when none.
    Loads only what it needs through the inventory: each other organization's projects, then branches
    only of projects the selector's PROJECT part matches, then roles only of branches its BRANCH part
    could match. An organization whose projects cannot be listed (e.g. 403) is left out: this is a hint.
    Never widens anything: the caller reports, it does not plan in the other organization.
    Raises ValueError for a malformed selector (as plan_from_selectors does).
    """
    texts = list(selectors)
    sels = parse_selectors(texts) if texts else []
    found: dict[str, list[Organization]] = {t: [] for t in texts}
    if not texts:
        return found
    others = [o for o in await inventory.load_organizations() if o.id != org_id]

    async def check_org(org: Organization) -> list[bool]:
        try:
            projects = await inventory.load_projects(org.id)
        except NeonError:
            return [False] * len(sels)
        return list(await asyncio.gather(*(_matches_somewhere(inventory, s, projects) for s in sels)))

    results = await asyncio.gather(*(check_org(o) for o in others))
    for org, hits in zip(others, results):
        for text, hit in zip(texts, hits):
            if hit and org not in found[text]:
                found[text].append(org)
    return found


async def _matches_somewhere(inventory: Inventory, sel: Selector, projects: list[ProjectInfo]) -> bool:
    """Does `sel` match at least one role in these projects? Loads branches and roles lazily."""

    async def in_project(p: ProjectInfo) -> bool:
        try:
            branches = await inventory.load_branches(p)
        except NeonError:
            return False
        candidates = [b for b in branches.values() if sel.matches_branch(b)]
        for b in candidates:
            try:
                roles = await inventory.load_roles(p, b)
            except NeonError:
                continue
            if any(sel.matches(b, r) for r in roles):
                return True
        return False

    wanted = [p for p in projects if sel.matches_project(p)]
    return any(await asyncio.gather(*(in_project(p) for p in wanted)))


async def build_plan(inventory: Inventory, chosen: Iterable[TargetKey]) -> Plan:
    """Turn chosen (project, branch, role) keys into a plan. Projects and branches must be loaded."""
    chosen = set(chosen)
    plan = Plan()
    by_project: dict[str, set[str]] = {}
    for pid, bid, _ in chosen:
        by_project.setdefault(pid, set()).add(bid)
    # Every branch of a touched project needs its roles, to warn about unselected copies.
    loads = []
    for pid in by_project:
        p = inventory.projects[pid]
        for b in (p.branches or {}).values():
            # Databases feed connection strings only, which need a compute: none listed where there is none.
            loads.append(inventory.load_roles_and_databases(p, b, databases=b.branch.id in by_project[pid]))
    await asyncio.gather(*loads)
    for pid in sorted(by_project, key=lambda i: inventory.projects[i].project.name):
        p = inventory.projects[pid]
        assert p.branches is not None
        selected_names: set[str] = set()
        for b in _tree_order(p):
            for r in sorted(b.roles or [], key=lambda r: r.name):
                if (pid, b.branch.id, r.name) not in chosen:
                    continue
                reason = skip_reason(r)
                if reason:
                    plan.skipped.append(Skipped(p.project.name, b.branch.name, r.name, reason))
                    continue
                selected_names.add(r.name)
                plan.targets.append(Target(
                    project_id=pid, project_name=p.project.name, branch_id=b.branch.id, branch_name=b.branch.name,
                    role_name=r.name, role_updated_at=_iso(r.updated_at), store_passwords=p.project.store_passwords,
                    protected_branch=b.branch.protected, endpoints=tuple(b.endpoints), databases=tuple(b.databases or ()),
                ))
        for b in _tree_order(p):
            for r in b.roles or []:
                if r.name in selected_names and (pid, b.branch.id, r.name) not in chosen and skip_reason(r) is None:
                    same_as, why = _shared_with(p, b, r.name, {bid for (q, bid, n) in chosen if q == pid and n == r.name})
                    plan.warnings.append(CopyWarning(p.project.name, b.branch.name, b.branch.id, r.name,
                                                     same_as is not None, pid, same_as, why))
    return plan


def _role(b: BranchInfo, name: str) -> Role | None:
    return next((r for r in b.roles or [] if r.name == name), None)


def _shared_with(p: ProjectInfo, b: BranchInfo, role: str, selected: set[str]) -> tuple[str | None, str]:
    """The selected branch whose `role` password `b` still holds, and how that is known; (None, "") if none.

    Branches linked by inheritance (a child created after its parent's last reset of the role, neither reset
    since: inventory.shares_parent_password) hold one password; b shares a selected branch's password when
    the two are in one such chain."""
    def up(info: BranchInfo) -> BranchInfo | None:
        r = _role(info, role)
        parent = p.parent(info)
        return parent if r is not None and parent is not None and shares_parent_password(p, info, r) else None

    def top(info: BranchInfo) -> tuple[BranchInfo, list[BranchInfo]]:
        chain = [info]
        while (nxt := up(chain[-1])) is not None and nxt not in chain:
            chain.append(nxt)
        return chain[-1], chain

    mine_top, mine = top(b)
    for sid in sorted(selected, key=lambda i: p.branches[i].branch.name if p.branches and i in p.branches else i):
        other = (p.branches or {}).get(sid)
        if other is None:
            continue
        other_top, theirs = top(other)
        if other_top.branch.id != mine_top.branch.id:
            continue
        name = other.branch.name
        ids = [x.branch.id for x in mine]
        if sid in ids:  # the selected branch is an ancestor
            between = [x.branch.name for x in mine[1:ids.index(sid)]]
            return name, (f"inherited from {name} through {', '.join(between)}, none reset since" if between
                          else "branched from it after its last reset, not reset since")
        if b.branch.id in [x.branch.id for x in theirs]:  # the selected branch descends from it
            return name, "which was branched from this one after its last reset, neither reset since"
        return name, f"both inherited from {mine_top.branch.name}, neither reset since"
    return None, _own_why(p, b, role)


def _own_why(p: ProjectInfo, b: BranchInfo, role: str) -> str:
    """Why a copy holds a password of its own, from the same facts (creation time, role updated_at)."""
    mine, parent = _role(b, role), p.parent(b)
    born = b.branch.created_at
    if mine is not None and born is not None and mine.updated_at is not None and mine.updated_at > born:
        return "reset on this branch since it was created"
    if parent is None:
        return ""
    if parent.branch.protected:
        return f"branched from protected {parent.branch.name}: Neon gave it new passwords"
    theirs = _role(parent, role)
    if theirs is not None and born is not None and theirs.updated_at is not None and theirs.updated_at > born:
        return f"{parent.branch.name} was reset after it was branched: it keeps {parent.branch.name}'s earlier password"
    return ""


def _tree_order(p: ProjectInfo) -> list[BranchInfo]:
    out: list[BranchInfo] = []
    seen: set[str] = set()

    def walk(parent: str | None) -> None:
        for b in p.children(parent):
            if b.branch.id in seen:
                continue
            seen.add(b.branch.id)
            out.append(b)
            walk(b.branch.id)

    walk(None)
    # Anything unreachable (a cycle in malformed data) still gets listed.
    out.extend(b for b in (p.branches or {}).values() if b.branch.id not in seen)
    return out


def _iso(dt) -> str | None:
    return dt.isoformat() if dt is not None else None
