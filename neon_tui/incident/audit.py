"""Role and access audit after a leak, and dropping roles (no Textual here).

Neon's API has no audit log, and a role carries only name, protected, authentication_method, created_at and
updated_at. So the audit reads every signal the API does give and says what each one can and cannot prove:

- ``role_created``: a role whose created_at is after the leak (copies made when a branch was created after
  the leak are folded into that branch's finding instead);
- ``role_changed``: updated_at after the leak. A password reset moves updated_at too, so a change is often
  a rotation: roles that neon-tui itself reset after the leak (run journals) are "rotated by neon-tui";
- ``role_not_on_parent``: on a child branch but not on its parent, as the parent's role list is *now*;
- ``role_owns_nothing``: a login role that owns no database on its branch (nothing depends on keeping it);
- ``branch_created``: a branch created after the leak, with its created_by name;
- ``member``: organization members who joined after the leak, and the admins;
- ``permission``: project access granted (by email) after the leak, and the rest;
- ``pg_privilege`` (only with a PostgreSQL connection, see `PgAccess`): roles that are superusers, that can
  create roles or belong to neon_superuser, or that exist in PostgreSQL but not in the API's role list.

Anything the audit could not read is a `NotChecked` with why; nothing unread is ever reported clean.

Dropping: `review_drops` then `drop_roles` (DELETE role, wait for its operations, journal kind "roles").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from neon_tui.neon.errors import NeonError, PasswordsNotStoredError
from neon_tui.neon.models import Branch, Database, Role
from neon_tui.rotation.inventory import BranchInfo, Inventory, ProjectInfo

SEVERITIES = ("high", "medium", "low", "info")
# Severities that make `neon-tui audit` exit 3; low and info are listed for review only.
ACTIONABLE = frozenset({"high", "medium"})
KINDS = {  # in the order they are shown: the strongest signals first, the long review lists last
    "role_created": "Roles created since the leak",
    "role_changed": "Roles changed since the leak",
    "branch_created": "Branches created since the leak",
    "member": "Organization members",
    "permission": "Project access",
    "pg_privilege": "PostgreSQL privileges",
    "role_not_on_parent": "Roles on a child branch, not on its parent",
    "role_owns_nothing": "Login roles that own no database",
}
ROLE_KINDS = frozenset({"role_created", "role_changed", "role_not_on_parent", "role_owns_nothing", "pg_privilege"})
COPY_SLACK = timedelta(seconds=120)  # roles copied onto a new branch carry (about) the branch's created_at
ROTATED_STATES = frozenset({"applying", "rotated", "delivered", "unconfirmed"})


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    reason: str  # plain English, one line, never a secret
    org_id: str | None = None
    project_id: str | None = None
    project: str | None = None
    branch_id: str | None = None
    branch: str | None = None
    role: str | None = None
    subject: str | None = None  # a member's or grantee's email, a branch's creator
    when: datetime | None = None
    org: str | None = None  # the organization's name, for members

    @property
    def is_role(self) -> bool:
        return self.role is not None and self.project_id is not None and self.branch_id is not None

    @property
    def target(self) -> str | None:
        """PROJECT_ID/BRANCH_ID/ROLE for `neon-tui audit drop`."""
        return f"{self.project_id}/{self.branch_id}/{self.role}" if self.is_role else None

    @property
    def label(self) -> str:
        parts = [p for p in (self.project, self.branch, self.role) if p]
        if parts:
            return "/".join(parts)
        return f"{self.subject} ({self.org})" if self.org and self.subject else (self.subject or "")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "reason": self.reason, "org_id": self.org_id,
                "project_id": self.project_id, "project": self.project, "branch_id": self.branch_id,
                "branch": self.branch, "role": self.role, "subject": self.subject, "org": self.org, "when": _iso(self.when),
                "target": self.target}


@dataclass(frozen=True)
class NotChecked:
    what: str  # which check: a KINDS key, or "roles"/"branches" for listings
    scope: str  # e.g. "acme-prod/main", "organization Acme Robotics"
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "scope": self.scope, "reason": self.reason}


@dataclass
class AuditReport:
    since: datetime
    findings: list[Finding] = field(default_factory=list)
    not_checked: list[NotChecked] = field(default_factory=list)
    organizations: int = 0
    projects: int = 0
    branches: int = 0
    roles: int = 0
    requests: int = 0
    seconds: float = 0.0
    rotated_by_us: int = 0  # role changes explained by neon-tui's own runs

    @property
    def complete(self) -> bool:
        return not self.not_checked

    @property
    def actionable(self) -> list[Finding]:
        return [f for f in self.findings if f.severity in ACTIONABLE]

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in KINDS}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def severities(self) -> dict[str, int]:
        out = {s: 0 for s in SEVERITIES}
        for f in self.findings:
            out[f.severity] += 1
        return out

    def by_kind(self) -> dict[str, list[Finding]]:
        out: dict[str, list[Finding]] = {}
        for f in self.findings:
            out.setdefault(f.kind, []).append(f)
        return out

    def summary(self) -> str:
        sev = self.severities()
        head = (f"audit since {_iso(self.since)}: {len(self.findings)} findings "
                f"({sev['high']} high, {sev['medium']} medium, {sev['low']} low, {sev['info']} info) in "
                f"{self.organizations} organizations, {self.projects} projects, {self.branches} branches, "
                f"{self.roles} roles; {self.requests} API requests, {self.seconds:.1f}s")
        if self.not_checked:
            head += f"; {len(self.not_checked)} not checked"
        return head


# ------------------------------------------------------------------------------------------ helpers

def parse_since(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (a zone-less time is UTC) or relative: 90m, 24h, 7d, 2w. ValueError with a clear message."""
    now = now or datetime.now(timezone.utc)
    raw = text.strip()
    units = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    if len(raw) >= 2 and raw[-1].lower() in units and raw[:-1].replace(".", "", 1).isdigit():
        try:
            return now - timedelta(seconds=float(raw[:-1]) * units[raw[-1].lower()])
        except (OverflowError, ValueError):
            raise ValueError(f"--since {text!r} reaches before the year 1: give a shorter age or an ISO 8601 time") \
                from None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: give an ISO 8601 time (2026-11-28T09:00Z) or an age like 24h or 7d") \
            from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when > now + timedelta(minutes=5):
        raise ValueError(f"--since {text!r} is in the future")
    return when


def default_since(directory: Path | None = None, now: datetime | None = None, *, host: str | None = None,
                  account: str | None = None, not_before: datetime | None = None) -> tuple[datetime, str]:
    """The leak time of the newest exposure journal of this API host and account (a journal naming no account
    counts) that has one, else 7 days ago; and where it came from."""
    from neon_tui.incident.journals import exposure_journals

    for log in reversed(exposure_journals(directory, host=host, account=account, not_before=not_before)):
        for rec in reversed(log.events("exposure_scanned")):
            leaked = rec.get("leaked_at")
            if isinstance(leaked, str) and leaked:
                try:
                    return parse_since(leaked, now), f"the leak time of exposure scan {log.id}"
                except ValueError:
                    continue
    now = now or datetime.now(timezone.utc)
    return now - timedelta(days=7), "7 days ago (no exposure scan recorded a leak time)"


def rotated_by_us(since: datetime, directory: Path | None = None) -> dict[tuple[str, str, str], tuple[float, str]]:
    """Targets neon-tui reset after `since`, from the run journals: key -> (wall time of the last reset, run id)."""
    from neon_tui.rotation.journal import JournalError, list_journals, read_journal

    out: dict[tuple[str, str, str], tuple[float, str]] = {}
    cut = since.timestamp()
    for path in list_journals(directory):
        try:
            state = read_journal(path)
        except JournalError:
            continue
        for key, t in state.targets.items():
            if t.sent_at is None or t.sent_at < cut or str(t.state) not in ROTATED_STATES:
                continue
            if key not in out or out[key][0] < t.sent_at:
                out[key] = (float(t.sent_at), state.run_id)
    return out


# ------------------------------------------------------------------------------------------ PostgreSQL

PG_QUERY = """
SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcanlogin,
       EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
               WHERE m.member = r.oid AND g.rolname = 'neon_superuser') AS in_neon_superuser
FROM pg_roles r
WHERE r.oid >= 16384 AND r.rolname NOT IN ('neon_superuser')
ORDER BY r.rolname
"""


@dataclass(frozen=True)
class PgRole:
    name: str
    superuser: bool
    createrole: bool
    can_login: bool
    in_neon_superuser: bool


# (uri, route) -> rows, or raises; injectable for tests
PgQuery = Callable[[Any, Any], "asyncio.Future[list[PgRole]]"]


async def query_pg_roles(uri, route=None, timeout: float = 30.0) -> list[PgRole]:
    """Log in with a connection string (a Secret) and read pg_roles / pg_auth_members."""
    import psycopg

    kwargs: dict[str, Any] = {"connect_timeout": max(1, int(timeout))}
    if route is not None:
        kwargs["hostaddr"], kwargs["port"] = route.hostaddr, route.port
    raw = uri.reveal() if hasattr(uri, "reveal") else uri
    try:
        conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(raw, **kwargs), timeout + 2)
    except psycopg.Error as e:
        from neon_tui.rotation.logins import classify

        raise ConnectionError(classify(str(e).replace(raw, "********"))[1]) from None
    except (OSError, asyncio.TimeoutError, TimeoutError) as e:
        raise ConnectionError(f"connection failed ({type(e).__name__})") from None
    try:
        cur = await conn.execute(PG_QUERY)
        return [PgRole(*row) for row in await cur.fetchall()]
    finally:
        await conn.close()


@dataclass
class PgAccess:
    """How the audit reaches PostgreSQL: as the branch's database owner (the role owning its oldest
    database, `neondb_owner` in a new project), with the password Neon stores (reveal_password) and the
    connection string Neon gives (connection_uri), through `route` (PGHOSTADDR/PGPORT; the demo's router).
    `unavailable`: why no login can be made here (then every branch is "not checked" with it)."""

    route: Any = None
    unavailable: str | None = None
    query: Callable[..., Any] = query_pg_roles
    concurrency: int = 4  # logins at once: each wakes a compute, and computes start one by one
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)

    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.concurrency))
        return self._slots


# ------------------------------------------------------------------------------------------ the audit

class _Audit:
    def __init__(self, client, inv: Inventory, since: datetime, ours, pg: PgAccess | None, progress) -> None:
        self.client, self.inv, self.since, self.ours, self.pg = client, inv, since, ours, pg
        self.report = AuditReport(since)
        self.progress = progress

    def add(self, **kw: Any) -> None:
        self.report.findings.append(Finding(**kw))

    def skip(self, what: str, scope: str, reason: str) -> None:
        self.report.not_checked.append(NotChecked(what, scope, reason))

    async def org(self, org, org_id: str | None) -> None:
        name = org.name if org else (org_id or "the key's organization")
        await asyncio.gather(self.members(org_id, name), self.projects(org, org_id))

    async def members(self, org_id: str | None, name: str) -> None:
        if org_id is None:
            self.skip("member", f"organization {name}", "the key names no organization to list members of")
            return
        try:
            members = await self.inv.patient(f"members of {org_id}", lambda: self.client.list_org_members(org_id))
        except NeonError as e:
            self.skip("member", f"organization {name}", f"could not list members: {_short(e)}")
            return
        for m in members:
            joined = m.joined_at
            if joined is not None and joined >= self.since:
                self.add(kind="member", severity="high", org_id=org_id, org=name, subject=m.email, when=joined,
                         reason=f"{m.email} joined organization {name} as {m.role} at {_iso(joined)}, after the leak")
            elif m.role == "admin":
                self.add(kind="member", severity="info", org_id=org_id, org=name, subject=m.email, when=joined,
                         reason=f"{m.email} is an admin of {name} (joined {_iso(joined) or 'at an unknown time'})")

    async def projects(self, org, org_id: str | None) -> None:
        try:
            projects = await self.inv.load_projects(org.id if org else None)
        except NeonError as e:
            self.skip("projects", f"organization {org.name if org else org_id}", f"could not list projects: {_short(e)}")
            return
        self.report.projects += len(projects)
        await asyncio.gather(*(self.project(p, org_id) for p in projects))

    async def project(self, p: ProjectInfo, org_id: str | None) -> None:
        await asyncio.gather(self.permissions(p, org_id), self.branches(p, org_id))
        if self.progress:
            self.progress(p.project.name)

    async def permissions(self, p: ProjectInfo, org_id: str | None) -> None:
        pid, pname = p.project.id, p.project.name
        try:
            grants = await self.inv.patient(f"permissions of {pid}", lambda: self.client.list_project_permissions(pid))
        except NeonError as e:
            self.skip("permission", f"project {pname}", f"could not list project access: {_short(e)}")
            return
        for g in grants:
            if g.revoked_at is not None:
                continue
            recent = g.granted_at is not None and g.granted_at >= self.since
            self.add(kind="permission", severity="high" if recent else "info", org_id=org_id, project_id=pid,
                     project=pname, subject=g.granted_to_email, when=g.granted_at,
                     reason=(f"{g.granted_to_email} was given access to project {pname} at {_iso(g.granted_at)}, "
                             "after the leak" if recent else
                             f"{g.granted_to_email} has access to project {pname} (granted {_iso(g.granted_at)})"))

    async def branches(self, p: ProjectInfo, org_id: str | None) -> None:
        pname = p.project.name
        p.branches = None  # read again: a cached listing would miss a branch made since
        try:
            branches = await self.inv.load_branches(p)
        except NeonError as e:
            self.skip("branches", f"project {pname}", f"could not list branches: {_short(e)}")
            return
        self.report.branches += len(branches)

        async def load(info: BranchInfo) -> None:
            info.roles, info.databases = None, None
            label = f"{pname}/{info.branch.name}"
            try:
                await asyncio.gather(self.inv.load_roles(p, info), self.inv.load_databases(p, info))
            except NeonError as e:
                self.skip("roles", label, f"could not list roles or databases: {_short(e)}")

        await asyncio.gather(*(load(b) for b in branches.values()))
        for info in branches.values():
            self.branch(p, info, org_id)
        if self.pg is not None:
            await asyncio.gather(*(self.pg_branch(p, info, org_id) for info in branches.values()
                                   if info.roles is not None))
        else:
            self.skip("pg_privilege", f"project {pname}",
                      "PostgreSQL not checked: no connection (--pg logs in as each branch's database owner)")

    def branch(self, p: ProjectInfo, info: BranchInfo, org_id: str | None) -> None:
        pid, pname = p.project.id, p.project.name
        b: Branch = info.branch
        parent = p.parent(info)
        where = dict(org_id=org_id, project_id=pid, project=pname, branch_id=b.id, branch=b.name)
        born = b.created_at
        new_branch = born is not None and born >= self.since
        if new_branch:
            by = b.created_by or "an unknown creator"
            parent_name = parent.branch.name if parent else "no parent"
            self.add(kind="branch_created", severity="medium", subject=b.created_by, when=born, **where,
                     reason=(f"branch {b.name} was created at {_iso(born)} by {by} (from {parent_name}), after the "
                             "leak; its roles were copied from its parent then"))
        if info.roles is None:
            return
        self.report.roles += len(info.roles)
        parent_roles = {r.name for r in parent.roles} if parent is not None and parent.roles is not None else None
        owners: dict[str, list[str]] = {}
        for d in info.databases or []:
            owners.setdefault(d.owner_name, []).append(d.name)
        for r in info.roles:
            self.role(r, info, parent, parent_roles, owners, where, new_branch)

    def role(self, r: Role, info: BranchInfo, parent: BranchInfo | None, parent_roles: set[str] | None,
             owners: dict[str, list[str]], where: dict, new_branch: bool) -> None:
        b = info.branch
        key = (where["project_id"], b.id, r.name)
        copied = (new_branch and parent_roles is not None and r.name in parent_roles and r.created_at is not None
                  and b.created_at is not None and abs(r.created_at - b.created_at) <= COPY_SLACK)
        created_recently = r.created_at is not None and r.created_at >= self.since
        if created_recently and not copied:
            self.add(kind="role_created", severity="high", role=r.name, when=r.created_at, **where,
                     reason=f"role {r.name} was created on {b.name} at {_iso(r.created_at)}, after the leak")
        elif r.updated_at is not None and r.updated_at >= self.since and (
                r.created_at is None or r.updated_at - r.created_at > COPY_SLACK):
            ours = self.ours.get(key)
            if ours is not None and r.updated_at.timestamp() <= ours[0] + COPY_SLACK.total_seconds():
                self.report.rotated_by_us += 1
                self.add(kind="role_changed", severity="info", role=r.name, when=r.updated_at, **where,
                         reason=(f"role {r.name} changed at {_iso(r.updated_at)}: rotated by neon-tui "
                                 f"(run {ours[1]})"))
            else:
                self.add(kind="role_changed", severity="medium", role=r.name, when=r.updated_at, **where,
                         reason=(f"role {r.name} changed at {_iso(r.updated_at)}, after the leak, and not by a "
                                 "neon-tui rotation (a password reset counts as a change: Neon's API says no "
                                 "more)"))
        if parent_roles is not None and r.name not in parent_roles:
            assert parent is not None
            self.add(kind="role_not_on_parent", severity="medium" if created_recently else "low", role=r.name,
                     when=r.created_at, **where,
                     reason=(f"role {r.name} is on {b.name} but not on its parent {parent.branch.name} "
                             "(the parent's role list as it is now)"))
        if r.can_login and r.name not in owners:
            self.add(kind="role_owns_nothing", severity="low", role=r.name, when=r.created_at, **where,
                     reason=f"login role {r.name} owns no database on {b.name}")

    async def pg_branch(self, p: ProjectInfo, info: BranchInfo, org_id: str | None) -> None:
        assert self.pg is not None
        pid, pname, b = p.project.id, p.project.name, info.branch
        label = f"{pname}/{b.name}"
        if self.pg.unavailable:
            self.skip("pg_privilege", label, f"PostgreSQL not checked: {self.pg.unavailable}")
            return
        if info.read_write_endpoint is None:
            self.skip("pg_privilege", label, "PostgreSQL not checked: the branch has no read-write compute")
            return
        dbs: list[Database] = sorted(info.databases or [], key=lambda d: (d.created_at or self.since, d.id))
        if not dbs:
            self.skip("pg_privilege", label, "PostgreSQL not checked: the branch has no database to log in to")
            return
        db = dbs[0]
        if not p.project.store_passwords:
            self.skip("pg_privilege", label,
                      f"PostgreSQL not checked: project {pname} does not store passwords, so neon-tui cannot log "
                      f"in as {db.owner_name}")
            return
        try:
            await self.inv.patient(f"password of {db.owner_name}", lambda: self.client.reveal_role_password(
                pid, b.id, db.owner_name))
            uri = await self.inv.patient(f"connection string of {label}", lambda: self.client.get_connection_uri(
                pid, database_name=db.name, role_name=db.owner_name, branch_id=b.id))
        except PasswordsNotStoredError:
            self.skip("pg_privilege", label, f"PostgreSQL not checked: project {pname} does not store passwords")
            return
        except NeonError as e:
            self.skip("pg_privilege", label, f"PostgreSQL not checked: {_short(e)}")
            return
        try:
            async with self.pg.slots():
                rows = await self.pg.query(uri, self.pg.route)
        except (ConnectionError, OSError) as e:
            self.skip("pg_privilege", label, f"PostgreSQL not checked: login as {db.owner_name} failed ({e})")
            return
        known = {r.name for r in info.roles or []}
        where = dict(org_id=org_id, project_id=pid, project=pname, branch_id=b.id, branch=b.name)
        for row in rows:
            privileged = row.createrole or row.in_neon_superuser
            what = ", ".join(w for w, on in (("SUPERUSER", row.superuser), ("CREATEROLE", row.createrole),
                                             ("member of neon_superuser", row.in_neon_superuser)) if on)
            if row.superuser:
                self.add(kind="pg_privilege", severity="high", role=row.name, **where,
                         reason=f"role {row.name} is a PostgreSQL superuser on {b.name} ({what})")
            elif row.name not in known:
                self.add(kind="pg_privilege", severity="high" if privileged else "medium", role=row.name, **where,
                         reason=(f"role {row.name} exists in PostgreSQL on {b.name} but not in Neon's role list: "
                                 "made in SQL" + (f" ({what})" if what else "") +
                                 "; drop it in SQL, the API does not know it"))
            elif privileged:
                self.add(kind="pg_privilege", severity="info", role=row.name, **where,
                         reason=(f"role {row.name} on {b.name}: {what} (Neon's default for roles made through "
                                 "the console or API)"))


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


async def audit(client, *, since: datetime, orgs: Sequence[str] | str | None = None,
                inventory: Inventory | None = None, pg: PgAccess | None = None,
                journals: Path | None = None, progress: Callable[[str], None] | None = None) -> AuditReport:
    """Audit every organization the key sees (or `orgs`: ids, names or handles) for signs of access since
    `since`. Raises NeonError only when the account itself cannot be read, LookupError for an unknown org."""
    inv = inventory or Inventory(client)
    started = time.monotonic()
    sent = getattr(client, "requests_sent", 0)
    a = _Audit(client, inv, since, rotated_by_us(since, journals), pg, progress)
    if isinstance(orgs, str):
        orgs = [orgs]
    if orgs:
        chosen = [await inv.resolve_org(o) for o in orgs]
    else:
        chosen = list(await inv.load_organizations()) or [None]
    key_org = None
    if chosen == [None]:
        auth = await inv.patient("auth", client.get_auth, limit=False)
        key_org = auth.account_id if auth.is_org_key else None
    a.report.organizations = len(chosen)
    await asyncio.gather(*(a.org(o, o.id if o else key_org) for o in chosen))
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    kinds = list(KINDS)
    a.report.findings.sort(key=lambda f: (kinds.index(f.kind), rank[f.severity], f.project or "", f.branch or "",
                                          f.role or "", f.subject or ""))
    a.report.not_checked.sort(key=lambda n: (n.what, n.scope))
    a.report.requests = getattr(client, "requests_sent", 0) - sent
    a.report.seconds = time.monotonic() - started
    return a.report


# ------------------------------------------------------------------------------------------ dropping

@dataclass(frozen=True)
class DropTarget:
    project_id: str
    branch_id: str
    role: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.project_id, self.branch_id, self.role)

    @classmethod
    def parse(cls, text: str) -> DropTarget:
        """PROJECT_ID/BRANCH_ID/ROLE; the role name may itself contain '/'."""
        parts = text.split("/", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{text!r}: give PROJECT_ID/BRANCH_ID/ROLE (the ids, e.g. from `neon-tui audit --json`)")
        return cls(*parts)


@dataclass
class DropReview:
    target: DropTarget
    project: str = ""
    branch: str = ""
    refusal: str | None = None  # why neon-tui will not drop it; None: it may be dropped
    owns: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.project or self.target.project_id}/{self.branch or self.target.branch_id}/{self.target.role}"

    @property
    def ok(self) -> bool:
        return self.refusal is None


@dataclass
class DropOutcome:
    review: DropReview
    status: str  # dropped | refused | failed | gone
    message: str
    operations: list[str] = field(default_factory=list)
    request_id: str | None = None


def owner_role(databases: Sequence[Database]) -> str | None:
    """The project owner role as neon-tui means it: the owner of the default branch's oldest database."""
    dbs = sorted(databases, key=lambda d: (d.created_at or datetime.max.replace(tzinfo=timezone.utc), d.id))
    return dbs[0].owner_name if dbs else None


def owns_message(role: str, branch: str, dbs: Sequence[str]) -> str:
    names = ", ".join(dbs)
    return (f"role {role} owns database{'s' if len(dbs) > 1 else ''} {names} on {branch}: Neon will not drop a role "
            f"that owns a database; give {'them' if len(dbs) > 1 else 'it'} another owner first (ALTER DATABASE "
            f"... OWNER TO ...) or delete {'them' if len(dbs) > 1 else 'it'}, then drop the role")


async def review_drops(client, targets: Sequence[DropTarget]) -> list[DropReview]:
    """What dropping each target would do, and the refusals: unknown, protected, project owner, owns a database."""
    out: list[DropReview] = []
    cache: dict[tuple, Any] = {}

    async def cached(key: tuple, call):
        if key not in cache:
            cache[key] = await call()
        return cache[key]

    for t in targets:
        rv = DropReview(t)
        out.append(rv)
        try:
            project = await cached(("p", t.project_id), lambda: client.get_project(t.project_id))
            rv.project = project.name
            branches = await cached(("b", t.project_id), lambda: client.list_branches(t.project_id))
            branch = next((b for b in branches if b.id == t.branch_id), None)
            if branch is None:
                rv.refusal = f"project {project.name} has no branch {t.branch_id}"
                continue
            rv.branch = branch.name
            roles = await cached(("r", t.branch_id), lambda: client.list_roles(t.project_id, t.branch_id))
            role = next((r for r in roles if r.name == t.role), None)
            if role is None:
                rv.refusal = f"branch {branch.name} has no role {t.role}"
                continue
            if role.protected:
                rv.refusal = f"role {t.role} is system-protected: Neon manages it and it cannot be dropped"
                continue
            dbs = await cached(("d", t.branch_id), lambda: client.list_databases(t.project_id, t.branch_id))
            default = next((b for b in branches if b.default), None)
            if default is not None:
                ddbs = dbs if default.id == t.branch_id else await cached(
                    ("d", default.id), lambda: client.list_databases(t.project_id, default.id))
                if owner_role(ddbs) == t.role:
                    rv.refusal = (f"role {t.role} is the project owner role of {project.name} (it owns the default "
                                  "branch's first database): neon-tui will not drop it; rotate its password instead")
                    continue
            rv.owns = sorted(d.name for d in dbs if d.owner_name == t.role)
            if rv.owns:
                rv.refusal = owns_message(t.role, branch.name, rv.owns)
        except NeonError as e:
            rv.refusal = f"could not review: {_short(e)}"
    return out


async def wait_operations(client, project_id: str, ops, *, timeout: float = 120.0, poll: float = 0.25,
                          sleep=asyncio.sleep) -> list:
    """Poll every operation to a terminal status; TimeoutError past `timeout` seconds."""
    pending = {op.id: op for op in ops if not op.done}
    done = [op for op in ops if op.done]
    deadline = time.monotonic() + timeout
    delay = poll
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} operation(s) still running after {timeout:.0f}s")
        await sleep(delay)
        delay = min(delay * 2, 5.0)
        for op_id in list(pending):
            op = await client.get_operation(project_id, op_id)
            if op.done:
                done.append(op)
                del pending[op_id]
    return done


def _last_request_id(client, method: str) -> str | None:
    for rec in reversed(list(getattr(client, "history", ()))):
        if rec.method == method:
            return rec.request_id
    return None


async def drop_roles(client, targets: Sequence[DropTarget], journal, *, reviews: Sequence[DropReview] | None = None,
                     op_timeout: float = 120.0, on_outcome: Callable[[DropOutcome], None] | None = None,
                     ) -> list[DropOutcome]:
    """Drop each reviewed role (refusals are journaled as failures and never sent), one at a time: DELETE,
    then wait for its operations. Journal kind "roles": role_dropped / role_drop_failed / role_drop_refused."""
    reviews = list(reviews) if reviews is not None else await review_drops(client, targets)
    outcomes: list[DropOutcome] = []
    for rv in reviews:
        out = await _drop_one(client, rv, op_timeout)
        t = rv.target
        if out.status in ("dropped", "gone"):
            journal.write("role_dropped", project_id=t.project_id, branch_id=t.branch_id, role=t.role,
                          operations=out.operations, request_id=out.request_id,
                          already_gone=out.status == "gone")
        elif out.status == "refused":  # never sent: the review refused it (not a failure that needs attention)
            journal.write("role_drop_refused", project_id=t.project_id, branch_id=t.branch_id, role=t.role,
                          reason=out.message)
        else:
            journal.write("role_drop_failed", project_id=t.project_id, branch_id=t.branch_id, role=t.role,
                          reason=out.message)
        outcomes.append(out)
        if on_outcome:
            on_outcome(out)
    return outcomes


async def _drop_one(client, rv: DropReview, op_timeout: float) -> DropOutcome:
    t = rv.target
    if not rv.ok:
        return DropOutcome(rv, "refused", rv.refusal or "refused")
    try:
        result = await client.delete_role(t.project_id, t.branch_id, t.role)
    except NeonError as e:
        msg = _short(e)
        if "owns" in msg and "database" in msg:
            msg = f"Neon refused: {msg}. Give the database(s) another owner first, then drop the role"
        return DropOutcome(rv, "failed", msg)
    rid = _last_request_id(client, "DELETE")
    if result is None:
        return DropOutcome(rv, "gone", f"role {t.role} was already gone from {rv.branch}", request_id=rid)
    ids = [op.id for op in result.operations]
    try:
        ops = await wait_operations(client, t.project_id, result.operations, timeout=op_timeout)
    except (NeonError, TimeoutError) as e:
        return DropOutcome(rv, "failed", f"Neon accepted the delete of {t.role} but its operations could not be "
                           f"confirmed: {_short(e)}", ids, rid)
    failed = [op for op in ops if not op.succeeded]
    if failed:
        return DropOutcome(rv, "failed", f"Neon accepted the delete of {t.role} but {failed[0].action} ended "
                           f"{failed[0].status}: the compute may still know the role", ids, rid)
    return DropOutcome(rv, "dropped", f"dropped {rv.label} ({len(ids)} operations finished)", ids, rid)


def open_roles_journal(client, *, account: str | None = None, directory: Path | None = None):
    from neon_tui.incident.actions import create_action_journal

    return create_action_journal("roles", host=getattr(client, "base_url", None), account=account,
                                 directory=directory)


def journal_review(journal, report: AuditReport) -> None:
    """audit_reviewed: the counts of what the audit found (no names, no emails)."""
    # flagged: the roles with findings that need a decision (drop or keep): high and medium, each role once.
    # Low and info ones are for reading (e.g. login roles that own nothing), not for the checklist to wait on.
    # flagged_targets: their ids (project_id, branch_id, role; no names of people, no secrets), so the checklist
    # can require a decision on each one rather than a count of decisions.
    targets = sorted({(f.project_id or "", f.branch_id or "", f.role or "") for f in report.findings
                      if f.is_role and f.severity in ("high", "medium")})
    flagged = len(targets)
    journal.write("audit_reviewed", findings=report.counts(), severities=report.severities(), flagged=flagged,
                  flagged_targets=[list(t) for t in targets],
                  not_checked=len(report.not_checked), since=_iso(report.since))


def journal_kept(journal, finding: Finding, reason: str) -> None:
    journal.write("role_kept", project_id=finding.project_id, branch_id=finding.branch_id, role=finding.role,
                  reason=reason)
