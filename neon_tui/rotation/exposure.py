"""Which roles, on which branches, hold a leaked password right now.

Walks every organization the key can see (or one, with `org`), every project, branch and login role.
Where the project stores passwords, each role's password is revealed and compared in memory with every
leaked one (`hmac.compare_digest` on bytes; nothing is kept). Where it does not, `probe_logins` tries a
real login per role and leaked password on the branch's compute; without it those roles are reported
"not checked". A hint in the leak (a URI's user or endpoint) only orders the work: the scan always covers
everything, because the point is to find child branches that inherited the password and reuses elsewhere.

Nothing that cannot be read is ever reported clean: it is `unchecked`, with the reason.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from neon_tui.neon.errors import NeonError, NotFoundError, PasswordsNotStoredError
from neon_tui.neon.models import Organization, Role
from neon_tui.neon.secret import Secret
from neon_tui.rotation.inventory import BranchInfo, Inventory, ProjectInfo
from neon_tui.rotation.leak import Leak, LeakedSecret
from neon_tui.rotation.logins import DEFAULT_TIMEOUT, Login, LoginOutcome, Route
from neon_tui.rotation.plan import TargetKey, connection_uri, skip_reason

REVEALED = "revealed"
LOGIN = "login"
NOT_STORED = "project does not store passwords (use --probe-logins)"

LoginFn = Callable[..., Awaitable[LoginOutcome]]
Progress = Callable[["ScanProgress"], None]


@dataclass(frozen=True, slots=True)
class ScanProgress:
    projects_total: int
    projects_done: int
    roles_total: int
    roles_done: int


@dataclass(frozen=True, slots=True)
class Exposed:
    key: TargetKey
    org_id: str | None
    project_name: str
    branch_name: str
    how: str  # revealed | login
    leaked: tuple[LeakedSecret, ...]

    @property
    def label(self) -> str:
        return f"{self.project_name}/{self.branch_name}/{self.key[2]}"


@dataclass(frozen=True, slots=True)
class Unchecked:
    """Something the scan could not settle: a role, or a whole branch, project or organization."""

    reason: str
    org_id: str | None
    project_id: str | None = None
    project_name: str | None = None
    branch_id: str | None = None
    branch_name: str | None = None
    role: str | None = None

    @property
    def key(self) -> TargetKey | None:
        if self.project_id and self.branch_id and self.role is not None:
            return (self.project_id, self.branch_id, self.role)
        return None

    @property
    def scope(self) -> str:
        if self.role is not None:
            return "role"
        if self.branch_id:
            return "branch"
        if self.project_id:
            return "project"
        return "organization"

    @property
    def label(self) -> str:
        parts = [p for p in (self.project_name or self.project_id, self.branch_name or self.branch_id, self.role)
                 if p is not None]
        return "/".join(parts) if parts else f"organization {self.org_id or '(this key)'}"


@dataclass(slots=True)
class ExposureReport:
    exposed: list[Exposed] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    clean: int = 0  # login roles checked and holding none of the leaked passwords
    organizations: int = 0
    projects: int = 0
    roles: int = 0  # login roles seen
    leaked: int = 0
    requests: int = 0
    logins: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.unchecked

    @property
    def keys(self) -> list[TargetKey]:
        return [e.key for e in self.exposed]

    def old_passwords(self) -> dict[TargetKey, list[Secret]]:
        """Each exposed target and the leaked passwords it held: for verifying, after a rotation, that they
        are dead (`RunSession(old_passwords=...)`)."""
        return {e.key: [s.password for s in e.leaked] for e in self.exposed}

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for u in self.unchecked:
            out[u.reason] = out.get(u.reason, 0) + 1
        return out

    def summary(self) -> str:
        text = (f"exposed {len(self.exposed)}, clean {self.clean}, not checked {len(self.unchecked)} "
                f"(of {self.roles} login roles in {self.projects} projects, {self.organizations} organizations); "
                f"{self.requests} API requests")
        if self.logins:
            text += f", {self.logins} login attempts"
        return text + f", {self.seconds:.1f}s"


def _matches(revealed: Secret, leak: Leak) -> list[LeakedSecret]:
    """Every leaked password equal to `revealed`, compared in constant time (no early exit)."""
    mine = revealed.reveal().encode("utf-8", "surrogatepass")
    hits = []
    for s in leak.secrets:
        if hmac.compare_digest(mine, s.as_bytes()):
            hits.append(s)
    return hits


def _why(exc: BaseException) -> str:
    if isinstance(exc, NeonError):
        status = getattr(exc, "status", None)
        return f"{type(exc).__name__}{f' {status}' if status else ''}"
    return type(exc).__name__


class _Scan:
    def __init__(self, client, leak: Leak, inventory: Inventory, probe_logins: bool, route: Route | None,
                 progress: Progress | None, login: LoginFn, login_timeout: float, reveal_concurrency: int,
                 login_concurrency: int, refresh: bool = True) -> None:
        self.client = client
        self.refresh = refresh
        self.leak = leak
        self.inv = inventory
        self.probe = probe_logins
        self.route = route
        self.progress = progress
        self.login = login
        self.login_timeout = login_timeout
        self.report = ExposureReport(leaked=len(leak))
        self.reveal_sem = asyncio.Semaphore(reveal_concurrency)
        self.login_sem = asyncio.Semaphore(login_concurrency)
        self.users = set().union(*(s.users for s in leak.secrets)) if leak.secrets else set()
        self.endpoints = set().union(*(s.endpoint_ids for s in leak.secrets)) if leak.secrets else set()
        self.projects_total = self.projects_done = self.roles_done = 0

    def tick(self) -> None:
        if self.progress is not None:
            try:
                self.progress(ScanProgress(self.projects_total, self.projects_done, self.report.roles,
                                           self.roles_done))
            except Exception:
                pass

    def unchecked(self, reason: str, org_id, p: ProjectInfo | None = None, b: BranchInfo | None = None,
                  role: str | None = None) -> None:
        self.report.unchecked.append(Unchecked(
            reason, org_id, p.project.id if p else None, p.project.name if p else None,
            b.branch.id if b else None, b.branch.name if b else None, role))

    def hinted(self, b: BranchInfo, r: Role) -> bool:
        return r.name in self.users or any(e.id in self.endpoints for e in b.endpoints)

    async def org(self, org: Organization | None) -> None:
        oid = org.id if org else None
        try:
            projects = await self.inv.load_projects(oid)
        except NeonError as e:
            self.unchecked(f"could not check: projects of the organization could not be listed ({_why(e)})", oid)
            return
        self.report.projects += len(projects)
        self.projects_total += len(projects)
        self.tick()
        await asyncio.gather(*(self.project(oid, p) for p in projects))

    async def project(self, oid: str | None, p: ProjectInfo) -> None:
        try:
            await self._project(oid, p)
        finally:
            self.projects_done += 1
            self.tick()

    async def _project(self, oid: str | None, p: ProjectInfo) -> None:
        if self.refresh:
            p.branches = None  # read again: new branches (and their inherited roles) must not be missed
        try:
            branches = await self.inv.load_branches(p)
        except NeonError as e:
            self.unchecked(f"could not check: branches could not be listed ({_why(e)})", oid, p)
            return

        async def roles_of(b: BranchInfo) -> tuple[BranchInfo, list[Role] | None]:
            try:
                return b, await self.inv.load_roles(p, b)
            except NeonError as e:
                self.unchecked(f"could not check: roles could not be listed ({_why(e)})", oid, p, b)
                return b, None

        listed = await asyncio.gather(*(roles_of(b) for b in branches.values()))
        work = [(b, r) for b, roles in listed if roles is not None for r in roles if skip_reason(r) is None]
        self.report.roles += len(work)
        self.tick()
        # What the leak names first (its user, its endpoint's branch), then everything else.
        work.sort(key=lambda br: not self.hinted(*br))
        await asyncio.gather(*(self.role(oid, p, b, r) for b, r in work))

    async def role(self, oid, p: ProjectInfo, b: BranchInfo, r: Role) -> None:
        try:
            if p.project.store_passwords:
                stored = await self.reveal(oid, p, b, r)
                if stored:
                    return
            await self.no_store(oid, p, b, r)
        finally:
            self.roles_done += 1
            self.tick()

    async def reveal(self, oid, p: ProjectInfo, b: BranchInfo, r: Role) -> bool:
        """True when settled here (exposed, clean or unchecked); False when the project turned out not to
        store passwords after all (412)."""
        pid, bid = p.project.id, b.branch.id
        try:
            async with self.reveal_sem:
                pw = await self.inv.patient(f"password of {pid}/{bid}/{r.name}",
                                            lambda: self.client.reveal_role_password(pid, bid, r.name), limit=False)
        except PasswordsNotStoredError:
            return False
        except NotFoundError:
            self.unchecked("could not check: the role disappeared during the scan", oid, p, b, r.name)
            return True
        except NeonError as e:
            self.unchecked(f"could not check: reveal_password failed ({_why(e)})", oid, p, b, r.name)
            return True
        hits = _matches(pw, self.leak)
        del pw
        self.settle(oid, p, b, r, hits, REVEALED)
        return True

    def settle(self, oid, p: ProjectInfo, b: BranchInfo, r: Role, hits: list[LeakedSecret], how: str) -> None:
        if hits:
            self.report.exposed.append(Exposed((p.project.id, b.branch.id, r.name), oid, p.project.name,
                                               b.branch.name, how, tuple(hits)))
        else:
            self.report.clean += 1

    async def no_store(self, oid, p: ProjectInfo, b: BranchInfo, r: Role) -> None:
        if not self.probe:
            self.unchecked(NOT_STORED, oid, p, b, r.name)
            return
        endpoint = b.read_write_endpoint or (b.endpoints[0] if b.endpoints else None)
        if endpoint is None:
            self.unchecked("could not check: no compute on this branch to try a login on", oid, p, b, r.name)
            return
        candidates = [s for s in self.leak.secrets if s.probe_worthy]
        if not candidates:
            self.unchecked("no leaked value fit for a login probe (only arbitrary variable values)",
                           oid, p, b, r.name)
            return
        try:
            dbs = await self.inv.load_databases(p, b)
        except NeonError as e:
            self.unchecked(f"could not check: databases could not be listed ({_why(e)})", oid, p, b, r.name)
            return
        db = sorted(dbs, key=lambda d: (d.owner_name != r.name, d.id, d.name))
        database = db[0].name if db else "postgres"
        # The leaked items naming this user first.
        candidates.sort(key=lambda s: r.name not in s.users)
        unknown: list[str] = []
        for s in candidates:
            uri = connection_uri(r.name, s.password, endpoint.host, database)
            async with self.login_sem:
                self.report.logins += 1
                try:
                    outcome = await self.login(uri, route=self.route, timeout=self.login_timeout)
                except Exception as e:  # a broken probe is "unknown", never "not exposed"
                    outcome = LoginOutcome(Login.UNKNOWN, f"login probe failed ({type(e).__name__})")
            if outcome.result is Login.OK:
                self.settle(oid, p, b, r, [s], LOGIN)
                return
            if outcome.result is Login.UNKNOWN:
                unknown.append(outcome.detail)
        if unknown:
            self.unchecked(f"could not check: login {unknown[0]}", oid, p, b, r.name)
        else:
            self.report.clean += 1


async def scan(
    client,
    leak: Leak,
    *,
    probe_logins: bool = False,
    route: Route | None = None,
    progress: Progress | None = None,
    org: str | None = None,
    inventory: Inventory | None = None,
    login: LoginFn | None = None,
    login_timeout: float = DEFAULT_TIMEOUT,
    reveal_concurrency: int = 32,
    login_concurrency: int = 8,
    refresh: bool = True,
) -> ExposureReport:
    """Find every login role, on every branch the key can see, whose current password is a leaked one.

    `org` (id, name or handle) limits the scan to one organization; LookupError when there is none such.
    `inventory` is shared with the caller (the TUI's), but with `refresh` (the default) every project's
    branches and roles are read again: a branch created since they were loaded may have inherited the
    leaked password, and a cached listing would miss it silently. `login` replaces the real PostgreSQL login
    (`logins.try_login`) in tests. Raises NeonError only when the account itself cannot be read (the key is
    refused, the API unreachable); anything narrower becomes an `Unchecked` entry.
    """
    from neon_tui.rotation.logins import try_login

    inv = inventory or Inventory(client)
    started = time.monotonic()
    sent = getattr(client, "requests_sent", 0)
    s = _Scan(client, leak, inv, probe_logins, route, progress, login or try_login, login_timeout,
              reveal_concurrency, login_concurrency, refresh)
    if org:
        chosen: list[Organization | None] = [await inv.resolve_org(org)]
    else:
        chosen = list(await inv.load_organizations()) or [None]
    s.report.organizations = len(chosen)
    await asyncio.gather(*(s.org(o) for o in chosen))
    report = s.report
    order: dict[Any, int] = {}
    for i, o in enumerate(chosen):
        order[o.id if o else None] = i
    report.exposed.sort(key=lambda e: (order.get(e.org_id, 0), e.project_name, e.key[0], e.branch_name, e.key[2]))
    report.unchecked.sort(key=lambda u: (order.get(u.org_id, 0), u.project_name or "", u.branch_name or "",
                                         u.role or ""))
    report.requests = getattr(client, "requests_sent", 0) - sent
    report.seconds = time.monotonic() - started
    return report


def probe_route(api_base_url: str, sim=None, environ=None):
    """(route, login) for login probes: where verification would log in; when no login can be made here
    (a simulator without PostgreSQL), a login function that answers "unknown" with the reason, so the
    roles are reported "could not check", never probed against Neon-like host names on the internet."""
    from neon_tui.rotation.logins import Login, LoginOutcome
    from neon_tui.rotation.verify import where_to_verify

    route, unavailable = where_to_verify(api_base_url, sim, simulated=sim is not None, environ=environ)
    if unavailable is None:
        return route, None

    async def no_login(uri, password=None, *, route=None, timeout=0.0) -> LoginOutcome:
        return LoginOutcome(Login.UNKNOWN, f"not possible here: {unavailable}")

    return None, no_login
