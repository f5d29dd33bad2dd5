"""In-memory state of a simulated Neon account and the domain rules that mutate it."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from .names import IdFactory

# Regions the account spreads projects over: region_id -> (project proxy_host, compute host suffix).
REGIONS = {
    "aws-us-east-2": ("us-east-2.aws.neon.tech", "c-2.us-east-2.aws.neon.tech"),
    "aws-eu-central-1": ("eu-central-1.aws.neon.tech", "c-3.eu-central-1.aws.neon.tech"),
    "aws-us-west-2": ("us-west-2.aws.neon.tech", "c-4.us-west-2.aws.neon.tech"),
}
DAY = 86_400.0
ACTIVE_STATUSES = ("scheduling", "running")
# Neon's refusals of an operation it cannot schedule now; all three are "try again later" answers.
LOCK_MESSAGE = "project already has running conflicting operations, scheduling of new ones is prohibited"
TRANSITION_MESSAGE = "endpoint is in some transitive state, could not suspend"
NOT_READY_MESSAGE = "branch not ready yet"


class SimError(Exception):
    """A domain failure that maps onto an API error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class User:
    id: str
    email: str
    name: str
    last_name: str
    login: str
    image: str


@dataclass
class Member:
    """An organization member (GET /organizations/{org_id}/members): who, with which role, since when."""
    id: str
    user_id: str
    org_id: str
    email: str
    role: str  # admin | member
    joined_t: float


@dataclass
class Permission:
    """Project access granted to an email (GET /projects/{project_id}/permissions)."""
    id: str
    email: str
    granted_t: float
    revoked_t: float | None = None


@dataclass
class Org:
    id: str
    name: str
    handle: str
    plan: str
    managed_by: str
    created_t: float
    personal: bool = False
    members: list[Member] = field(default_factory=list)


@dataclass
class ApiKey:
    id: int
    key: str
    name: str
    created_t: float
    created_by: str
    org_id: str | None = None  # None: personal key of the user
    project_id: str | None = None
    revoked: bool = False
    last_used_t: float | None = None
    last_used_from_addr: str = ""


@dataclass
class Pending:
    password: str
    apply_t: float  # the model (API, connection_uri) switches to the new password when every op has ended
    fails: bool
    config_t: float | None = None  # apply_config's end: a real compute takes the new password here


@dataclass
class Role:
    branch_id: str
    name: str
    password: str | None
    created_t: float
    updated_t: float
    protected: bool = False
    no_login: bool = False
    pending: Pending | None = None
    reset_count: int = 0


@dataclass
class Database:
    id: int
    branch_id: str
    name: str
    owner_name: str
    created_t: float
    updated_t: float


@dataclass
class Endpoint:
    id: str
    project_id: str
    branch_id: str
    type: str
    region_id: str
    created_t: float
    updated_t: float
    current_state: str = "idle"  # at rest: "active" (serving) or "idle" (suspended)
    # Until then the compute is starting (woken by a connection) or stopping: Neon reports "init" and
    # refuses to suspend it (423 TRANSITION_MESSAGE).
    transition_until: float = float("-inf")
    sessions_dropped: int = 0  # suspend_compute operations that ended while this compute was active

    def transitive(self, now: float) -> bool:
        return now < self.transition_until

    @property
    def host(self) -> str:
        return f"{self.id}.{REGIONS[self.region_id][1]}"

    @property
    def pooler_host(self) -> str:
        return f"{self.id}-pooler.{REGIONS[self.region_id][1]}"


@dataclass
class Branch:
    id: str
    project_id: str
    name: str
    parent_id: str | None
    created_t: float
    updated_t: float
    default: bool = False
    protected: bool = False
    ready_t: float = float("-inf")
    logical_size: int = 30_777_344
    created_by: str | None = None  # the creator's display name; None: the account's user
    roles: dict[str, Role] = field(default_factory=dict)
    databases: dict[str, Database] = field(default_factory=dict)


@dataclass
class Operation:
    id: str
    project_id: str
    branch_id: str | None
    endpoint_id: str | None
    action: str
    created_t: float
    start_t: float
    end_t: float
    created_at: dt.datetime  # exact wall instant; unique per project so timestamp cursors work
    outcome: str = "finished"  # terminal status: finished | failed | cancelled
    error: str | None = None

    def status(self, now: float) -> str:
        if now < self.start_t:
            return "scheduling"
        if now < self.end_t:
            return "running"
        return self.outcome

    def active(self, now: float) -> bool:
        return now < self.end_t


@dataclass
class Project:
    id: str
    name: str
    org_id: str
    region_id: str
    pg_version: int
    store_passwords: bool
    created_t: float
    updated_t: float
    owner_id: str
    allowed_ips: list[str] = field(default_factory=list)
    protected_branches_only: bool = False
    permissions: list[Permission] = field(default_factory=list)
    branches: dict[str, Branch] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    operations: list[Operation] = field(default_factory=list)

    def default_branch(self) -> Branch:
        return next(b for b in self.branches.values() if b.default)

    def branch_endpoints(self, branch_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.branch_id == branch_id]

    def rw_endpoint(self, branch_id: str) -> Endpoint | None:
        return next((e for e in self.branch_endpoints(branch_id) if e.type == "read_write"), None)


class Account:
    """The whole simulated account: one user, its orgs, projects and API keys."""

    def __init__(self, seed: int, epoch: dt.datetime, t0: float, op_seconds: float) -> None:
        self.rng = random.Random(seed)
        self.ids = IdFactory(self.rng)
        self.epoch = epoch
        self.t0 = t0
        self.op_seconds = op_seconds
        self.orgs: list[Org] = []
        self.projects: dict[str, Project] = {}
        self.keys: dict[int, ApiKey] = {}
        self.user = User(id="", email="", name="", last_name="", login="", image="")
        self._op_walls: dict[str, set[dt.datetime]] = {}
        self._pending: list[Role] = []  # settle() only looks here, so big accounts stay cheap
        self._suspends: list[tuple[Endpoint, Operation]] = []  # suspend_compute ops still to take effect

    # --- time -------------------------------------------------------------------------------
    def wall(self, t: float) -> dt.datetime:
        return self.epoch + dt.timedelta(seconds=t - self.t0)

    # --- lookups ------------------------------------------------------------------------------
    def org(self, org_id: str) -> Org | None:
        return next((o for o in self.orgs if o.id == org_id), None)

    def key_by_secret(self, secret: str) -> ApiKey | None:
        return next((k for k in self.keys.values() if k.key == secret), None)

    def new_key(self, name: str, t: float, org_id: str | None = None,
                project_id: str | None = None, secret: str | None = None) -> ApiKey:
        key = ApiKey(id=self.ids.int_id(), key=secret or self.ids.api_key(), name=name,
                     created_t=t, created_by=self.user.id, org_id=org_id, project_id=project_id)
        self.keys[key.id] = key
        return key

    # --- operations and pending passwords ---------------------------------------------------------
    def add_op(self, project: Project, action: str, t: float, start: float, end: float,
               branch_id: str | None = None, endpoint_id: str | None = None,
               outcome: str = "finished", error: str | None = None) -> Operation:
        walls = self._op_walls.setdefault(project.id, set())
        created = self.wall(t)
        while created in walls:
            created += dt.timedelta(microseconds=1)
        walls.add(created)
        op = Operation(id=self.ids.uuid(), project_id=project.id, branch_id=branch_id,
                       endpoint_id=endpoint_id, action=action, created_t=t, start_t=start,
                       end_t=end, created_at=created, outcome=outcome, error=error)
        project.operations.append(op)
        return op

    def settle(self, now: float) -> None:
        """Apply or discard reset passwords whose operations have reached a terminal state; suspend the
        computes whose suspend_compute finished (an active one drops its connections then)."""
        waiting: list[tuple[Endpoint, Operation]] = []
        for endpoint, op in self._suspends:
            if now < op.end_t:
                waiting.append((endpoint, op))
            elif op.outcome == "finished":
                if endpoint.current_state == "active":
                    endpoint.sessions_dropped += 1
                endpoint.current_state = "idle"
        self._suspends = waiting
        still: list[Role] = []
        for role in self._pending:
            pending = role.pending
            if pending is None:
                continue
            if now >= pending.apply_t:
                if not pending.fails:
                    role.password = pending.password
                role.pending = None
            else:
                still.append(role)
        self._pending = still

    def locked(self, project: Project, now: float) -> bool:
        return any(op.active(now) for op in reversed(project.operations))

    def check_unlocked(self, project: Project, now: float) -> None:
        if self.locked(project, now):
            raise SimError(423, LOCK_MESSAGE)

    def wake(self, endpoint: Endpoint, now: float) -> None:
        """A connection reached an idle compute: it starts (no operation in the project's list, so no project
        lock), and until it is up Neon cannot suspend it."""
        if endpoint.current_state != "active" and not endpoint.transitive(now):
            endpoint.transition_until = now + 0.25 * self.op_seconds
            endpoint.current_state = "active"

    def _config_ops(self, project: Project, branch: Branch, now: float, *, suspend: bool,
                    fail: bool = False) -> list[Operation]:
        """apply_config (+ suspend_compute) per read-write endpoint, as Neon does for role changes."""
        ops: list[Operation] = []
        endpoint = project.rw_endpoint(branch.id)
        if endpoint is None:
            return ops
        if suspend and endpoint.transitive(now):
            raise SimError(423, TRANSITION_MESSAGE)
        apply_end = now + 0.6 * self.op_seconds if suspend else now + 0.5 * self.op_seconds
        if fail:
            ops.append(self.add_op(project, "apply_config", now, now, apply_end, branch.id, endpoint.id,
                                   outcome="failed",
                                   error="compute failed to apply new configuration: timed out waiting for compute_ctl"))
            if suspend:
                ops.append(self.add_op(project, "suspend_compute", now, apply_end, apply_end, branch.id,
                                       endpoint.id, outcome="cancelled"))
            return ops
        ops.append(self.add_op(project, "apply_config", now, now, apply_end, branch.id, endpoint.id))
        if suspend:
            op = self.add_op(project, "suspend_compute", now, apply_end, now + self.op_seconds, branch.id, endpoint.id)
            ops.append(op)
            self._suspends.append((endpoint, op))
        return ops

    def allowed_ips_ops(self, project: Project, now: float, *, fail: bool = False) -> list[Operation]:
        """A new IP allowlist is pushed to every compute: one apply_config per endpoint."""
        end = now + 0.5 * self.op_seconds
        return [self.add_op(project, "apply_config", now, now, end, e.branch_id, e.id,
                            outcome="failed" if fail else "finished",
                            error="compute failed to apply new configuration: timed out waiting for compute_ctl"
                            if fail else None)
                for e in project.endpoints.values()]

    # --- mutations -------------------------------------------------------------------------------
    def reset_password(self, project: Project, branch: Branch, role: Role, now: float,
                       *, fail: bool = False) -> tuple[Role, str, list[Operation]]:
        if role.protected:
            raise SimError(400, f"role \"{role.name}\" is a system-protected role and its password cannot be reset")
        if role.no_login:
            raise SimError(400, f"role \"{role.name}\" cannot log in (no_login), so it has no password to reset")
        new_password = self.ids.password()
        ops = self._config_ops(project, branch, now, suspend=True, fail=fail)
        role.updated_t = now
        role.reset_count += 1
        if ops:
            config_t = next((op.end_t for op in ops if op.action == "apply_config"), None)
            role.pending = Pending(new_password, max(op.end_t for op in ops), fail, config_t)
            self._pending.append(role)
        else:
            role.password = new_password
            role.pending = None
        return role, new_password, ops

    def create_role(self, project: Project, branch: Branch, name: str, no_login: bool,
                    now: float, *, history: bool = False) -> tuple[Role, list[Operation]]:
        """`history`: a role the account was built with; its (finished) apply_config stands alone, as it did
        before role creation also suspended the compute, so the seeded ids and passwords stay what they were."""
        if not name or len(name.encode()) > 63:
            raise SimError(400, "role name must be between 1 and 63 bytes long")
        lowered = name.lower()
        if lowered.startswith("pg_") or lowered in ("neon_superuser", "cloud_admin", "zenith_admin", "public", "none"):
            raise SimError(400, f"role name \"{name}\" is reserved")
        if name in branch.roles:
            raise SimError(409, f"role \"{name}\" already exists")
        role = Role(branch.id, name, None if no_login else self.ids.password(), now, now, no_login=no_login)
        ops = self._config_ops(project, branch, now, suspend=not history)  # the same pair as a reset
        branch.roles[name] = role
        return role, ops

    def delete_role(self, project: Project, branch: Branch, role: Role, now: float) -> list[Operation]:
        if role.protected:
            raise SimError(400, f"role \"{role.name}\" is a system-protected role and cannot be deleted")
        owned = [d.name for d in branch.databases.values() if d.owner_name == role.name]
        if owned:
            raise SimError(400, f"role \"{role.name}\" owns database(s) {', '.join(owned)} and cannot be deleted")
        ops = self._config_ops(project, branch, now, suspend=True)
        del branch.roles[role.name]
        return ops

    def delete_branch(self, project: Project, branch: Branch, now: float) -> list[Operation]:
        """suspend_compute per compute (connections dropped), then delete_timeline; the branch and its computes
        are gone from every list at once (a deleted branch is only recoverable, never listed)."""
        ops: list[Operation] = []
        end = now + 0.5 * self.op_seconds
        for endpoint in project.branch_endpoints(branch.id):
            ops.append(self.add_op(project, "suspend_compute", now, now, end, branch.id, endpoint.id))
            del project.endpoints[endpoint.id]
        ops.append(self.add_op(project, "delete_timeline", now, end if ops else now, now + self.op_seconds, branch.id))
        del project.branches[branch.id]
        self._pending = [r for r in self._pending if r.branch_id != branch.id]
        project.updated_t = now
        return ops

    def add_endpoint(self, project: Project, branch: Branch, type_: str, t: float) -> Endpoint:
        ep = Endpoint(self.ids.endpoint(), project.id, branch.id, type_, project.region_id, t, t)
        project.endpoints[ep.id] = ep
        return ep

    def create_branch(self, project: Project, parent: Branch, name: str | None, t: float,
                      *, protected: bool = False, endpoint_types: tuple[str, ...] = (),
                      history: bool = False) -> tuple[Branch, list[Endpoint], list[Operation]]:
        """Copy the parent's roles and databases; a protected parent hands out fresh passwords."""
        branch_id = self.ids.branch()
        branch = Branch(branch_id, project.id, name or branch_id, parent.id, t, t, protected=protected)
        for role in parent.roles.values():
            password = role.password
            if password is not None and parent.protected:
                password = self.ids.password()
            branch.roles[role.name] = Role(branch_id, role.name, password, t, t,
                                           protected=role.protected, no_login=role.no_login)
        for db in parent.databases.values():
            branch.databases[db.name] = Database(self.ids.int_id(), branch_id, db.name, db.owner_name, t, t)
        project.branches[branch_id] = branch
        endpoints = [self.add_endpoint(project, branch, ty, t) for ty in endpoint_types]
        if history:
            span = 0.0
        else:
            span = self.op_seconds
            branch.ready_t = t + 0.5 * span
        ops = [self.add_op(project, "create_branch", t, t, t + 0.5 * span, branch_id)]
        for ep in endpoints:
            ops.append(self.add_op(project, "start_compute", t, t + 0.5 * span, t + span, branch_id, ep.id))
        return branch, endpoints, ops
