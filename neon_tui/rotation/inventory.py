"""What the key can see, loaded lazily: organizations, projects, branch trees, roles, databases, endpoints."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from neon_tui.neon import NeonClient
from neon_tui.neon.errors import (
    LockedError,
    NeonError,
    NetworkError,
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)
from neon_tui.neon.models import Branch, Database, Endpoint, Organization, Project, Role

log = logging.getLogger("neon_tui.rotation.inventory")

T = TypeVar("T")

# Failures that may go away by themselves: worth waiting for while discovering (reads only).
TRANSIENT_ERRORS = (NetworkError, RateLimitedError, ServerError, LockedError)
DEFAULT_PATIENCE = 120.0  # seconds of retrying one listing, on top of the client's own retries
BACKOFF_BASE = 1.0
BACKOFF_CAP = 15.0


def is_transient(exc: BaseException) -> bool:
    """A read that failed this way may succeed later (network, 429, 5xx, 423)."""
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, OutcomeUnknownError)


@dataclass(slots=True)
class BranchInfo:
    branch: Branch
    roles: list[Role] | None = None
    databases: list[Database] | None = None
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def read_write_endpoint(self) -> Endpoint | None:
        return next((e for e in self.endpoints if e.read_write), None)

    @property
    def has_compute(self) -> bool:
        return bool(self.endpoints)


@dataclass(slots=True)
class ProjectInfo:
    project: Project
    branches: dict[str, BranchInfo] | None = None  # by branch id, once loaded

    def children(self, branch_id: str | None) -> list[BranchInfo]:
        """Branches whose parent is `branch_id` (None: the roots), default branch first, then by name."""
        assert self.branches is not None
        kids = [b for b in self.branches.values() if b.branch.parent_id == branch_id
                or (branch_id is None and b.branch.parent_id not in self.branches)]
        return sorted(kids, key=lambda b: (not b.branch.default, b.branch.name))

    def parent(self, info: BranchInfo) -> BranchInfo | None:
        assert self.branches is not None
        return self.branches.get(info.branch.parent_id or "")


def shares_parent_password(project: ProjectInfo, info: BranchInfo, role: Role) -> bool:
    """Likely still holding the parent branch's password for this role.

    Neon copies roles with their passwords onto a child branch (new ones if the parent is protected);
    neither copy changes until one of them is reset, which moves that role's updated_at.
    """
    parent = project.parent(info)
    if parent is None or parent.branch.protected or parent.roles is None:
        return False
    theirs = next((r for r in parent.roles if r.name == role.name), None)
    born: datetime | None = info.branch.created_at
    if theirs is None or born is None or role.updated_at is None or theirs.updated_at is None:
        return False
    return role.updated_at <= born and theirs.updated_at <= born


class Inventory:
    """A lazily filled cache of the account, shared by the plan builder and the TUI."""

    def __init__(
        self,
        client: NeonClient,
        *,
        concurrency: int = 16,
        patience: float = DEFAULT_PATIENCE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`patience`: for how long (seconds) each listing keeps retrying transient failures
        (429, 5xx, 423, and network errors once the API has answered at least once) after the client's
        own retries gave up; no new attempt starts later than that. Other errors (401, 403, 404,
        malformed answers...) propagate at once, and so does a network error before the API ever
        answered: that is a wrong or unreachable NEON_API_HOST, not a blip."""
        if patience < 0:
            raise ValueError("patience must not be negative")
        self.client = client
        self.patience = patience
        self._sleep = sleep
        self._clock = clock
        self._reached = False
        self.organizations: list[Organization] | None = None
        self.projects: dict[str, ProjectInfo] = {}
        self._sem = asyncio.Semaphore(concurrency)
        # One fetch per thing even when the TUI's background loader and a keypress ask at once.
        self._inflight: dict[tuple, asyncio.Future] = {}

    def _backoff(self, attempt: int, exc: NeonError) -> float:
        retry_after = exc.retry_after if isinstance(exc, RateLimitedError) else None
        if retry_after is not None:
            return max(retry_after, 0.0) + random.uniform(0, 0.25)
        cap = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** (attempt - 1)))
        return cap / 2 + random.uniform(0, cap / 2)

    def _api_reached(self) -> bool:
        """Has the API ever answered (any HTTP status) through this inventory or its client?"""
        if not self._reached:
            history = getattr(self.client, "history", ())
            self._reached = any(r.status is not None for r in list(history))
        return self._reached

    async def _patient(self, what: str, call: Callable[[], Awaitable[T]], *, limit: bool = True) -> T:
        """Run one read, retrying transient failures with capped backoff for at most `patience` seconds.

        The concurrency slot is held only while a request is out, never while waiting.
        """
        deadline = self._clock() + self.patience
        attempt = 0
        while True:
            attempt += 1
            try:
                if limit:
                    async with self._sem:
                        result = await call()
                else:
                    result = await call()
                self._reached = True
                return result
            except NeonError as exc:
                if not is_transient(exc):
                    raise
                if isinstance(exc, NetworkError) and not self._api_reached():
                    raise
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise
                delay = min(self._backoff(attempt, exc), remaining)
                log.info("%s: %s; trying again in %.1fs", what, type(exc).__name__, delay)
                await self._sleep(delay)

    async def patient(self, what: str, call: Callable[[], Awaitable[T]], *, limit: bool = True) -> T:
        """A read with the inventory's patience for transient failures (see `__init__`), for callers that
        read more than the inventory caches (e.g. the exposure scan's reveal_password)."""
        return await self._patient(what, call, limit=limit)

    async def _once(self, key: tuple, make):
        fut = self._inflight.get(key)
        if fut is None:
            fut = self._inflight[key] = asyncio.ensure_future(make())
            fut.add_done_callback(lambda _f: self._inflight.pop(key, None))
        return await asyncio.shield(fut)

    async def load_organizations(self) -> list[Organization]:
        if self.organizations is None:
            try:
                orgs = await self.client.list_organizations()
            except NeonError as exc:
                if isinstance(exc, NetworkError) and not self._api_reached():
                    raise  # nothing answered at all: no point asking /auth the same host
                auth = await self._patient("auth", self.client.get_auth, limit=False)
                if auth.is_org_key:
                    # An organization key may not list the user's organizations; it implies its own.
                    orgs = []
                elif is_transient(exc):
                    orgs = await self._patient("organizations", self.client.list_organizations, limit=False)
                else:
                    raise
            self.organizations = orgs
        return self.organizations

    async def resolve_org(self, wanted: str | None) -> Organization | None:
        """The organization named by id, name or handle; else the only or first one; None for an org key."""
        orgs = await self.load_organizations()
        if wanted:
            for o in orgs:
                if wanted in (o.id, o.name, o.handle):
                    return o
            names = ", ".join(f"{o.name} ({o.id})" for o in orgs) or "none visible to this key"
            raise LookupError(f"no organization {wanted!r}; organizations: {names}")
        return orgs[0] if orgs else None

    async def load_projects(self, org_id: str | None, *, on_page=None) -> list[ProjectInfo]:
        """Every project of the organization, page by page; a page that fails transiently is retried alone."""
        found: list[ProjectInfo] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            def fetch(cursor=cursor):
                return self.client.project_page(org_id, cursor=cursor)

            page, cursor = await self._patient("projects", fetch, limit=False)
            infos = []
            for p in page:
                info = self.projects.get(p.id) or ProjectInfo(p)
                info.project = p
                self.projects[p.id] = info
                infos.append(info)
            found.extend(infos)
            if on_page is not None and infos:
                on_page(infos)
            if cursor is None:
                return found
            if cursor in seen:
                raise UnexpectedResponseError("projects: the pagination cursor repeats")
            seen.add(cursor)

    async def load_branches(self, project: ProjectInfo) -> dict[str, BranchInfo]:
        """Branches and the project's endpoints (one request for all endpoints)."""
        if project.branches is None:
            async def fetch() -> None:
                pid = project.project.id
                branches, endpoints = await asyncio.gather(
                    self._patient(f"branches of {pid}", lambda: self.client.list_branches(pid)),
                    self._patient(f"endpoints of {pid}", lambda: self.client.list_endpoints(pid)),
                )
                infos = {b.id: BranchInfo(b) for b in branches}
                for e in endpoints:
                    if e.branch_id in infos:
                        infos[e.branch_id].endpoints.append(e)
                project.branches = infos

            await self._once(("branches", project.project.id), fetch)
        assert project.branches is not None
        return project.branches

    async def load_roles(self, project: ProjectInfo, info: BranchInfo) -> list[Role]:
        if info.roles is None:
            async def fetch() -> None:
                pid, bid = project.project.id, info.branch.id
                info.roles = await self._patient(f"roles of {pid}/{bid}", lambda: self.client.list_roles(pid, bid))

            await self._once(("roles", info.branch.id), fetch)
        return info.roles or []

    async def load_databases(self, project: ProjectInfo, info: BranchInfo) -> list[Database]:
        if info.databases is None:
            async def fetch() -> None:
                pid, bid = project.project.id, info.branch.id
                info.databases = await self._patient(f"databases of {pid}/{bid}",
                                                     lambda: self.client.list_databases(pid, bid))

            await self._once(("databases", info.branch.id), fetch)
        return info.databases or []

    async def load_roles_and_databases(self, project: ProjectInfo, info: BranchInfo, *, databases: bool) -> None:
        """A branch's roles and, when asked and the branch has a compute, its databases, in one round trip
        (two requests side by side). Databases only feed connection strings, which need a compute: on a
        branch without one they are never listed."""
        if databases and info.has_compute:
            await asyncio.gather(self.load_roles(project, info), self.load_databases(project, info))
        else:
            await self.load_roles(project, info)

    async def refresh_roles(self, project: ProjectInfo, info: BranchInfo) -> list[Role]:
        """Read a branch's roles again (their updated_at moves with every reset)."""
        info.roles = None
        return await self.load_roles(project, info)

    async def load_project_tree(self, project: ProjectInfo) -> None:
        """Branches, endpoints and every branch's roles."""
        branches = await self.load_branches(project)
        await asyncio.gather(*(self.load_roles(project, b) for b in branches.values()))
