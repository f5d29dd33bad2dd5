"""Route table and handlers of the simulated Neon API v2 (everything below /api/v2)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

from .model import LOCK_MESSAGE, NOT_READY_MESSAGE, Account, ApiKey, Branch, Project, Role, SimError
from .views import Views, stamp_us

ORG_ID_REQUIRED = "org_id is required, you can find it on your organization settings page"
BRANCH_PAGE_CAP = 100  # what real Neon returns at most per page of GET /projects/{id}/branches
ID_PATTERN = re.compile(r"^[a-z0-9-]{1,60}$")
# IP Allow needs a paid plan: the docs name Scale (earlier Business/Enterprise). Neon's exact refusal text is
# not published; this one is modelled on its other plan refusals (403, a plain message, empty code).
IP_ALLOW_PLANS = frozenset({"scale", "business", "enterprise"})
IP_ALLOW_PLAN_MESSAGE = ("IP Allow is not available on the {plan} plan; upgrade to the Scale plan "
                         "to restrict access by IP address")


def ip_entry_error(entry: str) -> str | None:
    """Why Neon refuses one IP Allow entry (an address, a CIDR range or an a-b range), or None."""
    import ipaddress

    text = entry.strip()
    if not text:
        return "is empty"
    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        elif "-" in text:
            lo, hi = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
            if lo.version != hi.version or lo > hi:
                return "is not a valid IP range (start must not exceed end, same IP version)"
        else:
            ipaddress.ip_address(text)
    except ValueError:
        return "is not a valid IP address, CIDR range or IP range"
    return None


@dataclass
class Ctx:
    method: str
    params: dict[str, str]
    query: Any  # starlette QueryParams
    body: Any
    key: ApiKey
    now: float
    client_host: str
    fail_ops: bool = False


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Callable[[Ctx], Reply]
    mutation: bool = False
    segments: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


def _int_param(query, name: str, lo: int, hi: int, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SimError(400, f"invalid request: {name}: must be an integer") from None
    if not lo <= value <= hi:
        raise SimError(400, f"invalid request: {name}: must be between {lo} and {hi}")
    return value


def _bool_param(query, name: str) -> bool:
    raw = query.get(name)
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise SimError(400, f"invalid request: {name}: must be a boolean")


def _check_id(value: str, what: str) -> None:
    if not ID_PATTERN.match(value):
        raise SimError(400, f"invalid request: {what}: does not match pattern ^[a-z0-9-]{{1,60}}$")


class Api:
    """Handlers that read and change an Account; the caller holds the state lock."""

    def __init__(self, acct: Account) -> None:
        self.acct = acct
        self.v = Views(acct)
        self.routes: list[Route] = []
        self._table()

    def _add(self, method: str, template: str, handler, mutation: bool = False) -> None:
        segs = tuple(template.strip("/").split("/"))
        self.routes.append(Route(method, template, handler, mutation, segs))

    def _table(self) -> None:
        a = self._add
        a("GET", "/auth", self.auth)
        a("GET", "/users/me", self.users_me)
        a("GET", "/users/me/organizations", self.my_orgs)
        a("GET", "/organizations/{org_id}", self.get_org)
        a("GET", "/organizations/{org_id}/members", self.list_members)
        a("GET", "/organizations/{org_id}/api_keys", self.list_org_keys)
        a("POST", "/organizations/{org_id}/api_keys", self.create_org_key)
        a("DELETE", "/organizations/{org_id}/api_keys/{key_id}", self.revoke_org_key)
        a("GET", "/api_keys", self.list_keys)
        a("POST", "/api_keys", self.create_key)
        a("DELETE", "/api_keys/{key_id}", self.revoke_key)
        a("GET", "/projects", self.list_projects)
        a("GET", "/projects/shared", self.list_shared_projects)  # before /projects/{project_id}
        a("GET", "/projects/{project_id}", self.get_project)
        a("PATCH", "/projects/{project_id}", self.patch_project, True)
        a("GET", "/projects/{project_id}/permissions", self.list_permissions)
        a("GET", "/projects/{project_id}/branches", self.list_branches)
        a("POST", "/projects/{project_id}/branches", self.create_branch, True)
        a("GET", "/projects/{project_id}/branches/count", self.count_branches)  # before .../{branch_id}
        a("GET", "/projects/{project_id}/branches/{branch_id}", self.get_branch)
        a("DELETE", "/projects/{project_id}/branches/{branch_id}", self.delete_branch, True)
        p = "/projects/{project_id}/branches/{branch_id}"
        a("GET", p + "/roles", self.list_roles)
        a("POST", p + "/roles", self.create_role, True)
        a("GET", p + "/roles/{role_name}", self.get_role)
        a("DELETE", p + "/roles/{role_name}", self.delete_role, True)
        a("GET", p + "/roles/{role_name}/reveal_password", self.reveal_password)
        a("POST", p + "/roles/{role_name}/reset_password", self.reset_password, True)
        a("GET", p + "/databases", self.list_databases)
        a("GET", p + "/databases/{database_name}", self.get_database)
        a("GET", p + "/endpoints", self.list_branch_endpoints)
        a("GET", "/projects/{project_id}/endpoints", self.list_endpoints)
        a("GET", "/projects/{project_id}/endpoints/{endpoint_id}", self.get_endpoint)
        a("GET", "/projects/{project_id}/connection_uri", self.connection_uri)
        a("GET", "/projects/{project_id}/operations", self.list_operations)
        a("GET", "/projects/{project_id}/operations/{operation_id}", self.get_operation)

    def match(self, method: str, segments: list[str]) -> tuple[Route | None, dict[str, str], bool]:
        """Return (route, params, path_known); segments are already percent-decoded. A path resolves to the
        first template that matches it (literal templates such as /projects/shared come first), and only that
        template's methods serve it: DELETE /projects/{id}/branches/count is a 405, not a branch called count."""
        template = None
        params: dict[str, str] = {}
        for route in self.routes:
            if template is None:
                got = self._params(route, segments)
                if got is None:
                    continue
                template, params = route.template, got
            if route.template == template and route.method == method:
                return route, params, True
        return None, {}, template is not None

    @staticmethod
    def _params(route: Route, segments: list[str]) -> dict[str, str] | None:
        if len(route.segments) != len(segments):
            return None
        params: dict[str, str] = {}
        for pattern, seg in zip(route.segments, segments):
            if pattern.startswith("{"):
                if not seg:
                    return None
                params[pattern[1:-1]] = seg
            elif pattern != seg:
                return None
        return params

    def allowed_methods(self, segments: list[str]) -> list[str]:
        """The methods served on this path (for a 405's Allow header): those of the template it resolves to."""
        template = next((r.template for r in self.routes if self._params(r, segments) is not None), None)
        return [r.method for r in self.routes if r.template == template]

    # --- access helpers ------------------------------------------------------------------------
    def _org_access(self, ctx: Ctx, org_id: str, admin: bool = False):
        _check_id(org_id, "org_id")
        org = self.acct.org(org_id)
        key = ctx.key
        if key.org_id is not None and (key.org_id != org_id or (admin and key.project_id)):
            raise SimError(403, "permission denied: the API key does not grant access to this organization")
        if org is None:
            raise SimError(404, "organization not found")
        return org

    def _project(self, ctx: Ctx) -> Project:
        project_id = ctx.params["project_id"]
        _check_id(project_id, "project_id")
        project = self.acct.projects.get(project_id)
        key = ctx.key
        if project is None:
            raise SimError(404, "project not found")
        if key.org_id is not None and (key.org_id != project.org_id or
                                       (key.project_id is not None and key.project_id != project.id)):
            raise SimError(403, "permission denied: the API key does not grant access to this project")
        return project

    def _branch(self, ctx: Ctx, project: Project) -> Branch:
        branch_id = ctx.params["branch_id"]
        _check_id(branch_id, "branch_id")
        branch = project.branches.get(branch_id)
        if branch is None:
            raise SimError(404, "branch not found")
        return branch

    def _role(self, ctx: Ctx, branch: Branch) -> Role:
        role = branch.roles.get(ctx.params["role_name"])
        if role is None:
            raise SimError(404, "role not found")
        return role

    def _ready(self, ctx: Ctx, branch: Branch) -> None:
        """A branch still being created (current_state init) refuses changes with 422, checked before the
        project lock: the branch's own state is validated before anything is scheduled."""
        if ctx.now < branch.ready_t:
            raise SimError(422, NOT_READY_MESSAGE)

    def _mutable(self, ctx: Ctx, project: Project) -> None:
        if self.acct.locked(project, ctx.now):
            raise SimError(423, LOCK_MESSAGE)

    def _body_object(self, ctx: Ctx, field_name: str | None) -> dict:
        body = ctx.body
        if not isinstance(body, dict):
            raise SimError(400, "invalid request: request body must be a JSON object")
        if field_name is None:
            return body
        inner = body.get(field_name)
        if not isinstance(inner, dict):
            raise SimError(400, f"invalid request: decode application/json: invalid: {field_name} (field required)")
        return inner

    # --- identity --------------------------------------------------------------------------------
    def auth(self, ctx: Ctx) -> Reply:
        key = ctx.key
        if key.org_id is None:
            return Reply(200, {"account_id": self.acct.user.id, "auth_method": "api_key_user"})
        return Reply(200, {"account_id": key.org_id, "auth_method": "api_key_org"})

    def users_me(self, ctx: Ctx) -> Reply:
        if ctx.key.org_id is not None:
            raise SimError(403, "this endpoint requires a personal API key")
        u = self.acct.user
        return Reply(200, {
            "active_seconds_limit": 0, "id": u.id, "email": u.email, "login": u.login, "name": u.name,
            "last_name": u.last_name, "image": u.image, "projects_limit": 100, "branches_limit": 5000,
            "max_autoscaling_limit": 8, "plan": "scale",
            "billing_account": {
                "state": "active", "payment_source": {"type": "card"}, "subscription_type": "scale_v3",
                "payment_method": "stripe", "quota_reset_at_last": self.v.ts(min(o.created_t for o in self.acct.orgs)),
                "name": f"{u.name} {u.last_name}", "email": u.email, "address_city": "", "address_country": "",
                "address_line1": "", "address_line2": "", "address_postal_code": "", "address_state": "",
            },
            "auth_accounts": [{"provider": "github", "email": u.email, "name": f"{u.name} {u.last_name}",
                               "login": u.login, "image": u.image}],
        })

    def my_orgs(self, ctx: Ctx) -> Reply:
        orgs = self.acct.orgs if ctx.key.org_id is None else [o for o in self.acct.orgs if o.id == ctx.key.org_id]
        return Reply(200, {"organizations": [self.v.org(o) for o in orgs]})

    def get_org(self, ctx: Ctx) -> Reply:
        return Reply(200, self.v.org(self._org_access(ctx, ctx.params["org_id"])))

    # --- API keys ------------------------------------------------------------------------------
    def _personal_only(self, ctx: Ctx) -> None:
        if ctx.key.org_id is not None:
            raise SimError(403, "this endpoint requires a personal API key")

    def _key_name(self, ctx: Ctx) -> str:
        body = self._body_object(ctx, None)
        name = body.get("key_name")
        if not isinstance(name, str):  # the spec sets no minimum length: an empty name is a name
            raise SimError(400, "invalid request: decode application/json: invalid: key_name (field required)")
        if len(name) > 64:
            raise SimError(400, "invalid request: key_name: maximum string length is 64")
        return name

    def _key_id(self, ctx: Ctx) -> int:
        try:
            return int(ctx.params["key_id"])
        except ValueError:
            raise SimError(400, "invalid request: key_id: must be an integer") from None

    def list_keys(self, ctx: Ctx) -> Reply:
        self._personal_only(ctx)
        keys = [k for k in self.acct.keys.values() if k.org_id is None and not k.revoked]
        return Reply(200, [self.v.key_item(k) for k in keys])

    def create_key(self, ctx: Ctx) -> Reply:
        self._personal_only(ctx)
        key = self.acct.new_key(self._key_name(ctx), ctx.now)
        return Reply(200, self.v.key_created(key))

    def revoke_key(self, ctx: Ctx) -> Reply:
        self._personal_only(ctx)
        key = self.acct.keys.get(self._key_id(ctx))
        if key is None or key.org_id is not None:
            raise SimError(404, "API key not found")
        key.revoked = True
        return Reply(200, self.v.key_revoked(key))

    def list_members(self, ctx: Ctx) -> Reply:
        """Spec getOrganizationMembers: sort_by email|role|joined_at (default joined_at), sort_order, limit
        1..500, an opaque cursor; the pagination object is always there, `next` only when more remain."""
        org = self._org_access(ctx, ctx.params["org_id"])
        q = ctx.query
        sort_by = q.get("sort_by", "joined_at")
        sort_order = q.get("sort_order", "desc")
        if sort_by not in ("email", "role", "joined_at"):
            raise SimError(400, "invalid request: sort_by: must be one of email, role, joined_at")
        if sort_order not in ("asc", "desc"):
            raise SimError(400, "invalid request: sort_order: must be one of asc, desc")
        limit = _int_param(q, "limit", 1, 500, None)
        attr = {"email": "email", "role": "role", "joined_at": "joined_t"}[sort_by]
        members = sorted(org.members, key=lambda m: (getattr(m, attr), m.id), reverse=sort_order == "desc")
        start = 0
        cursor = q.get("cursor")
        if cursor:
            try:
                pos = json.loads(base64.b64decode(cursor, validate=True))
                start = int(pos["offset"])
                if pos["sort_by"] != sort_by or start < 0:
                    raise ValueError
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise SimError(400, "invalid request: cursor: malformed or does not match sort_by") from None
        page = members[start:] if limit is None else members[start:start + limit]
        pagination: dict[str, Any] = {"sort_by": sort_by, "sort_order": sort_order}
        if limit is not None and start + limit < len(members):
            pagination["next"] = base64.b64encode(json.dumps(
                {"offset": start + limit, "sort_by": sort_by}, separators=(",", ":")).encode()).decode()
        return Reply(200, {"members": [self.v.member(m) for m in page], "pagination": pagination})

    def list_permissions(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        return Reply(200, {"project_permissions": [self.v.permission(p) for p in project.permissions
                                                   if p.revoked_t is None]})

    def list_org_keys(self, ctx: Ctx) -> Reply:
        org = self._org_access(ctx, ctx.params["org_id"], admin=True)
        keys = [k for k in self.acct.keys.values() if k.org_id == org.id and not k.revoked]
        return Reply(200, [self.v.key_item(k) for k in keys])

    def create_org_key(self, ctx: Ctx) -> Reply:
        org = self._org_access(ctx, ctx.params["org_id"], admin=True)
        name = self._key_name(ctx)
        project_id = ctx.body.get("project_id")
        if project_id is not None:
            project = self.acct.projects.get(project_id) if isinstance(project_id, str) else None
            if project is None or project.org_id != org.id:
                raise SimError(404, "project not found in this organization")
        key = self.acct.new_key(name, ctx.now, org_id=org.id, project_id=project_id)
        return Reply(200, self.v.key_created(key))

    def revoke_org_key(self, ctx: Ctx) -> Reply:
        org = self._org_access(ctx, ctx.params["org_id"], admin=True)
        key = self.acct.keys.get(self._key_id(ctx))
        if key is None or key.org_id != org.id:
            raise SimError(404, "API key not found")
        key.revoked = True
        return Reply(200, self.v.key_revoked(key))

    # --- projects --------------------------------------------------------------------------------
    def list_projects(self, ctx: Ctx) -> Reply:
        q = ctx.query
        limit = _int_param(q, "limit", 1, 400, 10)
        _int_param(q, "timeout", 100, 30000, None)
        org_id = q.get("org_id")
        key = ctx.key
        if org_id is None:
            if key.org_id is None:
                raise SimError(400, ORG_ID_REQUIRED)
            org_id = key.org_id
        else:
            self._org_access(ctx, org_id)
        if _bool_param(q, "recoverable"):
            return Reply(200, {"projects": [], "applications": {}, "integrations": {}})
        projects = [p for p in self.acct.projects.values() if p.org_id == org_id]
        if key.project_id is not None:
            projects = [p for p in projects if p.id == key.project_id]
        search = q.get("search")
        if search:
            needle = search.lower()
            projects = [p for p in projects if needle in p.name.lower() or needle in p.id]
        projects.sort(key=lambda p: (-p.created_t, p.id))
        cursor = q.get("cursor")
        if cursor:
            ids = [p.id for p in projects]
            projects = projects[ids.index(cursor) + 1:] if cursor in ids else []
        page = projects[:limit]
        body: dict[str, Any] = {"projects": [self.v.project_item(p) for p in page]}
        if page:
            body["pagination"] = {"cursor": page[-1].id}
        body["applications"] = {}
        body["integrations"] = {}
        return Reply(200, body)

    def list_shared_projects(self, ctx: Ctx) -> Reply:
        """Projects other accounts shared with this user: none in the simulated account (observed `{"projects":
        []}` for an account without shares); the query is still checked as Neon checks it."""
        _int_param(ctx.query, "limit", 1, 400, 10)
        _int_param(ctx.query, "timeout", 100, 30000, None)
        return Reply(200, {"projects": [], "applications": {}, "integrations": {}})

    def get_project(self, ctx: Ctx) -> Reply:
        return Reply(200, {"project": self.v.project(self._project(ctx), ctx.now)})

    def patch_project(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        patch = self._body_object(ctx, "project")
        name = patch.get("name")
        if name is not None:
            if not isinstance(name, str) or not 1 <= len(name) <= 256:
                raise SimError(400, "invalid request: project.name: must be 1..256 characters")
        settings = patch.get("settings", {})
        if not isinstance(settings, dict):
            raise SimError(400, "invalid request: project.settings: must be an object")
        allowed = settings.get("allowed_ips")
        new_allow: tuple[list[str], bool] | None = None
        if allowed is not None:
            new_allow = self._allowed_ips(project, allowed)
        self._mutable(ctx, project)  # the body is judged first: decoding precedes scheduling
        if name is not None:
            project.name = name
        ops = []
        if new_allow is not None and new_allow != (project.allowed_ips, project.protected_branches_only):
            project.allowed_ips, project.protected_branches_only = new_allow
            ops = self.acct.allowed_ips_ops(project, ctx.now, fail=ctx.fail_ops)
        project.updated_t = ctx.now
        return Reply(200, {"project": self.v.project(project, ctx.now),
                           "operations": [self.v.operation(op, ctx.now) for op in ops]})

    def _allowed_ips(self, project: Project, allowed: Any) -> tuple[list[str], bool]:
        """Validate `settings.allowed_ips` as Neon does; the new (ips, protected_branches_only)."""
        where = "project.settings.allowed_ips"
        if not isinstance(allowed, dict):
            raise SimError(400, f"invalid request: {where}: must be an object")
        ips = allowed.get("ips", [])
        if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips):
            raise SimError(400, f"invalid request: {where}.ips: must be a list of strings")
        for n, entry in enumerate(ips):
            why = ip_entry_error(entry)
            if why:
                raise SimError(400, f"invalid request: {where}.ips[{n}]: {json.dumps(entry)} {why}")
        only = allowed.get("protected_branches_only", project.protected_branches_only)
        if not isinstance(only, bool):
            raise SimError(400, f"invalid request: {where}.protected_branches_only: must be a boolean")
        org = self.acct.org(project.org_id)
        plan = org.plan if org is not None else ""
        if (ips or only) and plan not in IP_ALLOW_PLANS:
            # Neon documents IP Allow as a Scale (and Business/Enterprise) feature; clearing it is allowed.
            raise SimError(403, IP_ALLOW_PLAN_MESSAGE.format(plan=plan or "current"))
        return [i.strip() for i in ips], only

    # --- branches --------------------------------------------------------------------------------
    def list_branches(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        q = ctx.query
        sort_by = q.get("sort_by", "updated_at")
        sort_order = q.get("sort_order", "desc")
        if sort_by not in ("name", "created_at", "updated_at"):
            raise SimError(400, "invalid request: sort_by: must be one of name, created_at, updated_at")
        if sort_order not in ("asc", "desc"):
            raise SimError(400, "invalid request: sort_order: must be one of asc, desc")
        limit = _int_param(q, "limit", 1, 10000, None)
        attr = {"name": "name", "created_at": "created_t", "updated_at": "updated_t"}[sort_by]
        branches = list(project.branches.values())
        search = q.get("search")
        if search:
            needle = search.lower()
            branches = [b for b in branches if needle in b.name.lower() or needle in b.id]
        desc = sort_order == "desc"
        branches.sort(key=lambda b: (getattr(b, attr), b.id), reverse=desc)
        cursor = q.get("cursor")
        if cursor:
            try:
                pos = json.loads(base64.b64decode(cursor, validate=True))
                mark = (pos["value"], pos["branch_id"])
                if pos["sort_by"] != sort_by or pos["sort_order"] != sort_order:
                    raise ValueError
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise SimError(400, "invalid request: cursor: malformed or does not match sort_by/sort_order") from None
            branches = [b for b in branches
                        if ((getattr(b, attr), b.id) < mark if desc else (getattr(b, attr), b.id) > mark)]
        # Neon caps a page at 100 whatever the limit (1..10000 in the spec) and always hands out `next` after
        # a non-empty page, even a short last one: only an empty page ends the walk.
        page = branches[:min(limit or BRANCH_PAGE_CAP, BRANCH_PAGE_CAP)]
        pagination: dict[str, Any] = {"sort_by": sort_by, "sort_order": sort_order.upper()}
        if page:
            last = page[-1]
            pagination["next"] = base64.b64encode(json.dumps(
                {"branch_id": last.id, "value": getattr(last, attr), "sort_by": sort_by,
                 "sort_order": sort_order}, separators=(",", ":")).encode()).decode()
        return Reply(200, {"branches": [self.v.branch(b, ctx.now) for b in page], "annotations": {},
                           "pagination": pagination})

    def count_branches(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        search = (ctx.query.get("search") or "").lower()
        return Reply(200, {"count": sum(1 for b in project.branches.values()
                                        if not search or search in b.name.lower() or search in b.id)})

    def delete_branch(self, ctx: Ctx) -> Reply:
        """Spec deleteProjectBranch: 204 for a branch that does not exist; never the default (or root) branch
        nor one with children; its computes are suspended (connections dropped), then the timeline goes."""
        project = self._project(ctx)
        _bool_param(ctx.query, "hard_delete")
        branch_id = ctx.params["branch_id"]
        _check_id(branch_id, "branch_id")
        branch = project.branches.get(branch_id)
        if branch is None:
            return Reply(204)
        if branch.default or branch.parent_id is None:
            raise SimError(400, "cannot delete the project's root or default branch")
        if any(b.parent_id == branch.id for b in project.branches.values()):
            raise SimError(400, "cannot delete a branch that has child branches")
        self._ready(ctx, branch)
        self._mutable(ctx, project)
        ops = self.acct.delete_branch(project, branch, ctx.now)
        return Reply(200, {"branch": self.v.branch(branch, ctx.now),
                           "operations": [self.v.operation(op, ctx.now) for op in ops]})

    def get_branch(self, ctx: Ctx) -> Reply:
        branch = self._branch(ctx, self._project(ctx))
        return Reply(200, {"branch": self.v.branch(branch, ctx.now), "annotation": self.v.annotation(branch)})

    def create_branch(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        self._mutable(ctx, project)
        body = ctx.body if ctx.body is not None else {}
        if not isinstance(body, dict):
            raise SimError(400, "invalid request: request body must be a JSON object")
        spec = body.get("branch") or {}
        eps = body.get("endpoints") or []
        if not isinstance(spec, dict) or not isinstance(eps, list):
            raise SimError(400, "invalid request: branch must be an object and endpoints a list")
        parent_id = spec.get("parent_id")
        if parent_id:
            parent = project.branches.get(parent_id)
            if parent is None:
                raise SimError(404, "parent branch not found")
        else:
            parent = project.default_branch()
        types = []
        for ep in eps:
            ty = ep.get("type") if isinstance(ep, dict) else None
            if ty not in ("read_write", "read_only"):
                raise SimError(400, "invalid request: endpoints[].type: must be read_write or read_only")
            types.append(ty)
        if types.count("read_write") > 1:
            raise SimError(400, "a branch can have only one read_write endpoint")
        name = spec.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise SimError(400, "invalid request: branch.name: must be a non-empty string")
        if name and any(b.name == name for b in project.branches.values()):
            raise SimError(409, f"branch \"{name}\" already exists")
        branch, endpoints, ops = self.acct.create_branch(
            project, parent, name, ctx.now, protected=bool(spec.get("protected", False)),
            endpoint_types=tuple(types))
        body = {
            "branch": self.v.branch(branch, ctx.now),
            "endpoints": [self.v.endpoint(e, project, ctx.now) for e in endpoints],
            "operations": [self.v.operation(op, ctx.now) for op in ops],
            "roles": [self.v.role(r) for r in branch.roles.values()],
            "databases": [self.v.database(d) for d in branch.databases.values()],
        }
        if endpoints:
            body["connection_uris"] = self._connection_uris(branch, endpoints)
        return Reply(201, body)

    @staticmethod
    def _connection_uris(branch: Branch, endpoints) -> list[dict]:
        """Spec ConnectionDetails: "When creating a branch from a parent with more than one role or database,
        the response body does not include a connection URI", so one entry for a one-role, one-database branch
        (on its read-write compute if it has one), else none."""
        logins = [r for r in branch.roles.values() if r.password is not None and not r.no_login]
        if len(branch.roles) != 1 or len(logins) != 1 or len(branch.databases) != 1:
            return []
        role, db = logins[0], next(iter(branch.databases.values()))
        ep = next((e for e in endpoints if e.type == "read_write"), endpoints[0])
        uri = (f"postgresql://{quote(role.name, safe='')}:{quote(role.password, safe='')}@{ep.host}/"
               f"{quote(db.name, safe='')}?sslmode=require&channel_binding=require")
        return [{"connection_uri": uri, "connection_parameters": {
            "database": db.name, "password": role.password, "role": role.name, "host": ep.host,
            "pooler_host": ep.pooler_host}}]

    # --- roles -------------------------------------------------------------------------------------
    def list_roles(self, ctx: Ctx) -> Reply:
        branch = self._branch(ctx, self._project(ctx))
        return Reply(200, {"roles": [self.v.role(r) for r in branch.roles.values()]})

    def get_role(self, ctx: Ctx) -> Reply:
        branch = self._branch(ctx, self._project(ctx))
        return Reply(200, {"role": self.v.role(self._role(ctx, branch))})

    def create_role(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        branch = self._branch(ctx, project)
        self._ready(ctx, branch)
        self._mutable(ctx, project)
        spec = self._body_object(ctx, "role")
        name = spec.get("name")
        if not isinstance(name, str):
            raise SimError(400, "invalid request: decode application/json: invalid: role.name (field required)")
        role, ops = self.acct.create_role(project, branch, name, bool(spec.get("no_login", False)), ctx.now)
        return Reply(201, {"role": self.v.role(role, role.password),
                           "operations": [self.v.operation(op, ctx.now) for op in ops]})

    def delete_role(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        branch = self._branch(ctx, project)
        self._ready(ctx, branch)
        self._mutable(ctx, project)
        role = branch.roles.get(ctx.params["role_name"])
        if role is None:
            return Reply(204)
        ops = self.acct.delete_role(project, branch, role, ctx.now)
        return Reply(200, {"role": self.v.role(role), "operations": [self.v.operation(op, ctx.now) for op in ops]})

    def reveal_password(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        role = self._role(ctx, self._branch(ctx, project))
        if not project.store_passwords:
            raise SimError(412, "storing passwords is disabled for this project")
        if role.no_login or role.password is None:
            raise SimError(400, f"role \"{role.name}\" cannot log in and has no password")
        # The newest stored password, even while the reset's operations still run.
        return Reply(200, {"password": role.pending.password if role.pending else role.password})

    def reset_password(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        branch = self._branch(ctx, project)
        role = self._role(ctx, branch)
        self._ready(ctx, branch)
        self._mutable(ctx, project)
        role, password, ops = self.acct.reset_password(project, branch, role, ctx.now, fail=ctx.fail_ops)
        return Reply(200, {"role": self.v.role(role, password),
                           "operations": [self.v.operation(op, ctx.now) for op in ops]})

    # --- databases and endpoints ---------------------------------------------------------------------
    def list_databases(self, ctx: Ctx) -> Reply:
        branch = self._branch(ctx, self._project(ctx))
        return Reply(200, {"databases": [self.v.database(d) for d in branch.databases.values()]})

    def get_database(self, ctx: Ctx) -> Reply:
        branch = self._branch(ctx, self._project(ctx))
        db = branch.databases.get(ctx.params["database_name"])
        if db is None:
            raise SimError(404, "database not found")
        return Reply(200, {"database": self.v.database(db)})

    def list_endpoints(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        return Reply(200, {"endpoints": [self.v.endpoint(e, project, ctx.now) for e in project.endpoints.values()]})

    def get_endpoint(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        endpoint_id = ctx.params["endpoint_id"]
        _check_id(endpoint_id, "endpoint_id")
        endpoint = project.endpoints.get(endpoint_id)
        if endpoint is None:
            raise SimError(404, "endpoint not found")
        return Reply(200, {"endpoint": self.v.endpoint(endpoint, project, ctx.now)})

    def list_branch_endpoints(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        branch = self._branch(ctx, project)
        return Reply(200, {"endpoints": [self.v.endpoint(e, project, ctx.now)
                                         for e in project.branch_endpoints(branch.id)]})

    def connection_uri(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        q = ctx.query
        db_name, role_name = q.get("database_name"), q.get("role_name")
        if not db_name or not role_name:
            raise SimError(400, "invalid request: database_name and role_name are required")
        pooled = _bool_param(q, "pooled")
        branch_id = q.get("branch_id")
        if branch_id:
            branch = project.branches.get(branch_id)
            if branch is None:
                raise SimError(404, "branch not found")
        else:
            branch = project.default_branch()
        endpoint_id = q.get("endpoint_id")
        if endpoint_id:
            endpoint = project.endpoints.get(endpoint_id)
            if endpoint is None or endpoint.branch_id != branch.id:
                raise SimError(404, "endpoint not found on this branch")
        else:
            endpoint = project.rw_endpoint(branch.id)
            if endpoint is None:
                raise SimError(400, "the branch has no read-write endpoint; pass endpoint_id or add a compute")
        role = branch.roles.get(role_name)
        if role is None:
            raise SimError(404, "role not found")
        if branch.databases.get(db_name) is None:
            raise SimError(404, "database not found")
        if role.no_login or role.password is None:
            raise SimError(400, f"role \"{role_name}\" cannot log in")
        if not project.store_passwords:
            raise SimError(412, "storing passwords is disabled for this project")
        host = endpoint.pooler_host if pooled else endpoint.host
        uri = (f"postgresql://{quote(role.name, safe='')}:{quote(role.password, safe='')}@{host}/"
               f"{quote(db_name, safe='')}?sslmode=require&channel_binding=require")
        return Reply(200, {"uri": uri})

    # --- operations --------------------------------------------------------------------------------
    def list_operations(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        limit = _int_param(ctx.query, "limit", 1, 1000, 10)
        ops = sorted(project.operations, key=lambda op: op.created_at, reverse=True)
        cursor = ctx.query.get("cursor")
        if cursor:
            try:
                mark = dt.datetime.fromisoformat(cursor.replace("Z", "+00:00"))
            except ValueError:
                raise SimError(400, "invalid request: cursor: must be a timestamp") from None
            ops = [op for op in ops if op.created_at < mark]
        page = ops[:limit]
        body: dict[str, Any] = {"operations": [self.v.operation(op, ctx.now) for op in page]}
        if page:
            body["pagination"] = {"cursor": stamp_us(page[-1].created_at)}
        return Reply(200, body)

    def get_operation(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        op_id = ctx.params["operation_id"]
        try:
            uuid.UUID(op_id)
        except ValueError:
            raise SimError(400, "invalid request: operation_id: must be a UUID") from None
        op = next((o for o in project.operations if o.id == op_id), None)
        if op is None:
            raise SimError(404, "operation not found")
        return Reply(200, {"operation": self.v.operation(op, ctx.now)})
