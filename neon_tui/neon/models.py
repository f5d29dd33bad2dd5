"""Typed models of the Neon API objects neon-tui uses, parsed strictly enough to catch malformed answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from neon_tui.neon.errors import UnexpectedResponseError
from neon_tui.neon.secret import Secret

TERMINAL_OK = frozenset({"finished", "skipped"})
TERMINAL_FAILED = frozenset({"failed", "error", "cancelled"})


def _field(obj: Any, key: str, kind: type | tuple[type, ...], what: str, *, required: bool = True, default=None):
    if not isinstance(obj, dict):
        raise UnexpectedResponseError(f"expected a JSON object for {what}, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        if required:
            raise UnexpectedResponseError(f"{what} has no '{key}'")
        return default
    value = obj[key]
    # bool is an int in Python; a boolean where a number is due is still malformed.
    if kind is int and isinstance(value, bool):
        raise UnexpectedResponseError(f"{what}.{key} should be {kind.__name__}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise UnexpectedResponseError(f"{what}.{key} should be {name}, got {type(value).__name__}")
    return value


def parse_time(value: str | None, what: str = "timestamp") -> datetime | None:
    """Parse Neon's RFC 3339 timestamps ('2025-01-16T21:02:05Z')."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise UnexpectedResponseError(f"{what} is not a timestamp") from None


def _secret(obj: dict, key: str, what: str) -> Secret | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return None
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    raise UnexpectedResponseError(f"{what}.{key} should be a string")


@dataclass(frozen=True, slots=True)
class AuthInfo:
    account_id: str
    auth_method: str

    @property
    def is_org_key(self) -> bool:
        return self.auth_method == "api_key_org"

    @classmethod
    def from_api(cls, d: Any) -> AuthInfo:
        return cls(_field(d, "account_id", str, "auth"), _field(d, "auth_method", str, "auth"))


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: str
    email: str
    name: str
    login: str

    @classmethod
    def from_api(cls, d: Any) -> CurrentUser:
        w = "user"
        return cls(_field(d, "id", str, w), _field(d, "email", str, w), _field(d, "name", str, w),
                   _field(d, "login", str, w, required=False, default=""))


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    handle: str
    plan: str
    managed_by: str
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_api(cls, d: Any) -> Organization:
        w = "organization"
        return cls(
            _field(d, "id", str, w), _field(d, "name", str, w), _field(d, "handle", str, w, required=False, default=""),
            _field(d, "plan", str, w, required=False, default=""),
            _field(d, "managed_by", str, w, required=False, default="console"),
            parse_time(_field(d, "created_at", str, w, required=False)), parse_time(_field(d, "updated_at", str, w, required=False)),
        )


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    region_id: str
    pg_version: int
    store_passwords: bool
    created_at: datetime | None
    updated_at: datetime | None
    org_id: str | None = None
    proxy_host: str = ""
    allowed_ips: tuple[str, ...] = ()
    protected_branches_only: bool = False

    @classmethod
    def from_api(cls, d: Any) -> Project:
        w = "project"
        settings = _field(d, "settings", dict, w, required=False, default={})
        allowed = settings.get("allowed_ips") or {}
        ips = allowed.get("ips") if isinstance(allowed, dict) else None
        return cls(
            id=_field(d, "id", str, w), name=_field(d, "name", str, w), region_id=_field(d, "region_id", str, w),
            pg_version=_field(d, "pg_version", int, w),
            store_passwords=_field(d, "store_passwords", bool, w),
            created_at=parse_time(_field(d, "created_at", str, w)), updated_at=parse_time(_field(d, "updated_at", str, w)),
            org_id=_field(d, "org_id", str, w, required=False), proxy_host=_field(d, "proxy_host", str, w, required=False, default=""),
            allowed_ips=tuple(ips) if isinstance(ips, list) else (),
            protected_branches_only=(allowed.get("protected_branches_only") is True
                                     if isinstance(allowed, dict) else False),
        )


@dataclass(frozen=True, slots=True)
class Branch:
    id: str
    project_id: str
    name: str
    default: bool
    protected: bool
    current_state: str
    created_at: datetime | None
    updated_at: datetime | None
    parent_id: str | None = None
    created_by: str | None = None  # created_by.name: who made the branch (user, org, integration or API key)

    @classmethod
    def from_api(cls, d: Any) -> Branch:
        w = "branch"
        by = d.get("created_by") if isinstance(d, dict) else None
        return cls(
            id=_field(d, "id", str, w), project_id=_field(d, "project_id", str, w), name=_field(d, "name", str, w),
            default=_field(d, "default", bool, w, required=False, default=False),
            protected=_field(d, "protected", bool, w, required=False, default=False),
            current_state=_field(d, "current_state", str, w, required=False, default=""),
            created_at=parse_time(_field(d, "created_at", str, w)), updated_at=parse_time(_field(d, "updated_at", str, w)),
            parent_id=_field(d, "parent_id", str, w, required=False),
            created_by=_field(by, "name", str, "branch.created_by", required=False) if isinstance(by, dict) else None,
        )


@dataclass(frozen=True, slots=True)
class OrgMember:
    """One organization member (spec MemberWithUser): member{id,user_id,org_id,role,joined_at?}, user{email}."""
    id: str
    user_id: str
    org_id: str
    role: str
    email: str
    joined_at: datetime | None

    @classmethod
    def from_api(cls, d: Any) -> OrgMember:
        m = _field(d, "member", dict, "organization member")
        u = _field(d, "user", dict, "organization member")
        w = "member"
        return cls(_field(m, "id", str, w), _field(m, "user_id", str, w), _field(m, "org_id", str, w),
                   _field(m, "role", str, w), _field(u, "email", str, "member.user"),
                   parse_time(_field(m, "joined_at", str, w, required=False)))


@dataclass(frozen=True, slots=True)
class ProjectPermission:
    """Project access granted to an email (spec ProjectPermission)."""
    id: str
    granted_to_email: str
    granted_at: datetime | None
    revoked_at: datetime | None = None

    @classmethod
    def from_api(cls, d: Any) -> ProjectPermission:
        w = "project permission"
        return cls(_field(d, "id", str, w), _field(d, "granted_to_email", str, w),
                   parse_time(_field(d, "granted_at", str, w)),
                   parse_time(_field(d, "revoked_at", str, w, required=False)))


@dataclass(frozen=True, slots=True)
class Role:
    branch_id: str
    name: str
    protected: bool
    authentication_method: str
    created_at: datetime | None
    updated_at: datetime | None
    password: Secret | None = field(default=None, compare=False)

    @property
    def can_login(self) -> bool:
        """False for system-protected roles and roles without a password login."""
        return not self.protected and self.authentication_method not in ("no_login", "oauth")

    @classmethod
    def from_api(cls, d: Any) -> Role:
        w = "role"
        return cls(
            branch_id=_field(d, "branch_id", str, w), name=_field(d, "name", str, w),
            protected=_field(d, "protected", bool, w, required=False, default=False),
            authentication_method=_field(d, "authentication_method", str, w, required=False, default="password"),
            created_at=parse_time(_field(d, "created_at", str, w)), updated_at=parse_time(_field(d, "updated_at", str, w)),
            password=_secret(d, "password", w),
        )


@dataclass(frozen=True, slots=True)
class Database:
    id: int
    branch_id: str
    name: str
    owner_name: str
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_api(cls, d: Any) -> Database:
        w = "database"
        return cls(
            id=_field(d, "id", int, w), branch_id=_field(d, "branch_id", str, w), name=_field(d, "name", str, w),
            owner_name=_field(d, "owner_name", str, w),
            created_at=parse_time(_field(d, "created_at", str, w)), updated_at=parse_time(_field(d, "updated_at", str, w)),
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    project_id: str
    branch_id: str
    host: str
    type: str
    current_state: str
    pooler_enabled: bool
    disabled: bool
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def read_write(self) -> bool:
        return self.type == "read_write"

    @property
    def pooler_host(self) -> str:
        """The pooled host: Neon inserts '-pooler' after the endpoint id."""
        first, dot, rest = self.host.partition(".")
        return f"{first}-pooler{dot}{rest}"

    @classmethod
    def from_api(cls, d: Any) -> Endpoint:
        w = "endpoint"
        return cls(
            id=_field(d, "id", str, w), project_id=_field(d, "project_id", str, w), branch_id=_field(d, "branch_id", str, w),
            host=_field(d, "host", str, w), type=_field(d, "type", str, w),
            current_state=_field(d, "current_state", str, w, required=False, default=""),
            pooler_enabled=_field(d, "pooler_enabled", bool, w, required=False, default=False),
            disabled=_field(d, "disabled", bool, w, required=False, default=False),
            created_at=parse_time(_field(d, "created_at", str, w)), updated_at=parse_time(_field(d, "updated_at", str, w)),
        )


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    project_id: str
    action: str
    status: str
    branch_id: str | None = None
    endpoint_id: str | None = None
    error: str | None = None
    failures_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_OK or self.status in TERMINAL_FAILED

    @property
    def succeeded(self) -> bool:
        return self.status in TERMINAL_OK

    @classmethod
    def from_api(cls, d: Any) -> Operation:
        w = "operation"
        return cls(
            id=_field(d, "id", str, w), project_id=_field(d, "project_id", str, w), action=_field(d, "action", str, w),
            status=_field(d, "status", str, w), branch_id=_field(d, "branch_id", str, w, required=False),
            endpoint_id=_field(d, "endpoint_id", str, w, required=False), error=_field(d, "error", str, w, required=False),
            failures_count=_field(d, "failures_count", int, w, required=False, default=0),
            created_at=parse_time(_field(d, "created_at", str, w, required=False)),
            updated_at=parse_time(_field(d, "updated_at", str, w, required=False)),
        )


@dataclass(frozen=True, slots=True)
class RoleOperations:
    """What reset_password, create and delete return: the role (with its new password) and the operations."""

    role: Role
    operations: tuple[Operation, ...]

    @classmethod
    def from_api(cls, d: Any) -> RoleOperations:
        role = Role.from_api(_field(d, "role", dict, "response"))
        ops = _field(d, "operations", list, "response", required=False, default=[])
        return cls(role, tuple(Operation.from_api(o) for o in ops))


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    created_at: datetime | None
    created_by: str
    last_used_at: datetime | None
    last_used_from_addr: str
    project_id: str | None = None
    revoked: bool = False

    @classmethod
    def from_api(cls, d: Any) -> ApiKey:
        w = "api key"
        by = d.get("created_by") if isinstance(d, dict) else None
        # Lists give created_by as an object, create and revoke as a UUID string.
        by_text = by.get("name") or by.get("id") or "" if isinstance(by, dict) else (by or "")
        return cls(
            id=_field(d, "id", int, w), name=_field(d, "name", str, w),
            created_at=parse_time(_field(d, "created_at", str, w)), created_by=str(by_text),
            last_used_at=parse_time(_field(d, "last_used_at", str, w, required=False)),
            last_used_from_addr=_field(d, "last_used_from_addr", str, w, required=False, default=""),
            project_id=_field(d, "project_id", str, w, required=False),
            revoked=_field(d, "revoked", bool, w, required=False, default=False),
        )


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A new API key: the secret is shown once, here."""

    id: int
    name: str
    key: Secret
    created_at: datetime | None
    project_id: str | None = None

    @classmethod
    def from_api(cls, d: Any) -> CreatedApiKey:
        w = "api key"
        key = _secret(d, "key", w)
        if key is None:
            raise UnexpectedResponseError("api key has no 'key'")
        return cls(id=_field(d, "id", int, w), name=_field(d, "name", str, w), key=key,
                   created_at=parse_time(_field(d, "created_at", str, w)),
                   project_id=_field(d, "project_id", str, w, required=False))
