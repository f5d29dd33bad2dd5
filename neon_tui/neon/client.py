"""The async Neon API v2 client: one httpx client, typed results, safe retries and the rate limiter."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import random
import ssl
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from neon_tui import __version__
from neon_tui.neon.errors import (
    InsecureTransportError,
    InvalidHostError,
    MalformedApiKeyError,
    NeonError,
    NetworkError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestTimeoutError,
    TlsError,
    UnexpectedResponseError,
    error_for_status,
)
from neon_tui.neon.models import (
    ApiKey,
    AuthInfo,
    Branch,
    CreatedApiKey,
    CurrentUser,
    Database,
    Endpoint,
    Operation,
    OrgMember,
    Organization,
    Project,
    ProjectPermission,
    Role,
    RoleOperations,
)
from neon_tui.neon.ratelimit import RateLimiter
from neon_tui.neon.secret import Secret

log = logging.getLogger("neon_tui.neon")

DEFAULT_HOST = "https://console.neon.tech/api/v2"
MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})
# Answers that prove a mutation was not applied, so it may be sent again (spec: GeneralError response).
MUTATION_RETRY_STATUSES = frozenset({423, 429, 503})
# Transport failures that happen before any byte of the request left: safe to resend even a mutation.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_SECRET_KEYS = frozenset({"password", "uri", "connection_uri"})  # connection_uri: branch creation's connection_uris


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with jitter; Retry-After wins when Neon sends it."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after) + random.uniform(0, 0.1)
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        # Equal jitter: never hammer at once, never wait much longer than the cap.
        return cap / 2 + random.uniform(0, cap / 2)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP attempt, for the command log: never headers, bodies or query values that could be secret."""

    method: str
    path: str
    status: int | None
    duration: float
    attempt: int
    request_id: str | None
    error: str | None = None
    started: float = 0.0


class _BearerAuth(httpx.Auth):
    """Adds the key to each request; httpx masks the Authorization header in reprs."""

    def __init__(self, key: Secret) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = "Bearer " + self._key.reveal()
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(********)"


def _is_loopback(host: str) -> bool:
    """A loopback address, or a `localhost` name that resolves to loopback addresses only (a resolver without
    RFC 6761's rule could send `api.localhost` out over DNS, and the key with it in plain http)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if not (host.lower() == "localhost" or host.lower().endswith(".localhost")):
        return False
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def _char_kind(ch: str) -> str:
    if ch in "\r\n":
        return "a line break"
    if ch.isspace():
        return "whitespace"
    if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
        return "a control character"
    return "a non-ASCII character"


def _bad_char(text: str) -> str | None:
    """What kind of character makes `text` unusable in a URL or header (only printable ASCII is), else None."""
    for ch in text:
        if not 0x21 <= ord(ch) <= 0x7E:
            return _char_kind(ch)
    return None


def clean_api_key(api_key: str | Secret) -> Secret:
    """The key with surrounding whitespace trimmed (`$(cat keyfile)` leaves a newline), wrapped in Secret.

    NeonError when empty; MalformedApiKeyError when it still holds whitespace, control or non-ASCII
    characters (a Neon key is printable ASCII). Neither message contains the key or any part of it.
    """
    raw = api_key.reveal() if isinstance(api_key, Secret) else api_key
    if not isinstance(raw, str):
        raise MalformedApiKeyError("the API key must be text")
    raw = raw.strip()
    if not raw:
        raise NeonError("no API key: set NEON_API_KEY or pass a key")
    kind = _bad_char(raw)
    if kind is not None:
        raise MalformedApiKeyError(
            f"the API key contains {kind}; a Neon API key is one word of printable ASCII "
            "(was it pasted with a line break or copied from a formatted document?)"
        )
    return Secret(raw)


def _redact_url(url: str) -> str:
    """The URL for a message, without any user:password part."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{tail}"


def check_host(base_url: str) -> str:
    """Validate the API base URL: https anywhere, plain http only to loopback.

    Surrounding whitespace is trimmed; inner whitespace or control characters are refused
    (InvalidHostError), as are plain http to a non-loopback host and credentials in the URL
    (InsecureTransportError). Returns the URL without a trailing '/'.
    """
    if not isinstance(base_url, str):
        raise InvalidHostError("NEON_API_HOST must be an http(s) URL")
    base_url = base_url.strip()
    shown = _redact_url(base_url)
    for ch in base_url:
        if ch.isspace() or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            raise InvalidHostError(f"NEON_API_HOST contains {_char_kind(ch)}: {shown!r}")
    try:
        parts = urlsplit(base_url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        raise InvalidHostError(f"NEON_API_HOST is not a valid URL: {shown!r}") from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise InvalidHostError(f"NEON_API_HOST must be an http(s) URL, got {shown!r}")
    if parts.username or parts.password:
        raise InsecureTransportError("NEON_API_HOST must not carry credentials")
    if parts.scheme == "http" and not _is_loopback(hostname):
        raise InsecureTransportError(
            f"refusing to send the API key over plain http to {hostname}; use https (or a loopback address)"
        )
    return base_url.rstrip("/")


# Closed connections are ordinary network failures (retried); any other SSL error will not change.
_SSL_NOT_TLS_FAILURE = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ssl.SSLError (certificate verification, handshake) behind an httpx error, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError) and not isinstance(cur, _SSL_NOT_TLS_FAILURE):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def _tls_reason(err: ssl.SSLError) -> str:
    """Why the handshake failed, e.g. 'self-signed certificate' or 'wrong version number'."""
    verify = getattr(err, "verify_message", None)
    if verify:
        return str(verify)
    reason = getattr(err, "reason", None)
    if reason:
        return str(reason).replace("_", " ").lower()
    return type(err).__name__


def _hook(obj: dict) -> dict:
    # Wrap secrets the moment JSON becomes Python, so no plain password sits in a local variable.
    for k in _SECRET_KEYS:
        if isinstance(obj.get(k), str):
            obj[k] = Secret(obj[k])
    if isinstance(obj.get("key"), str) and "id" in obj and "name" in obj:
        obj["key"] = Secret(obj["key"])
    return obj


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


# Neon answers 422 with this message while a branch is still being created; like a 423 it proves nothing was
# done, and it passes once the branch is ready. Any other 422 is a real refusal and is not retried.
BRANCH_NOT_READY = "branch not ready yet"


def _branch_not_ready(err: NeonError) -> bool:
    return err.status == 422 and BRANCH_NOT_READY in err.message.lower()


def seg(value: str) -> str:
    """One URL path segment: role and database names may hold spaces, unicode, slashes and quotes."""
    return quote(value, safe="")


class NeonClient:
    """Async client for the Neon API v2.

    Retries: GETs on network errors, 5xx, 423 and 429; mutations only on 423, 429 and 503 (answers
    that prove nothing happened) or when the connection was never made; both on a 422 "branch not ready
    yet" (any other 422 is final). A mutation whose answer is
    lost raises OutcomeUnknownError and is never resent: a blind reset_password retry would mint a
    second password nobody saw.
    """

    def __init__(
        self,
        api_key: str | Secret,
        *,
        host: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None | bool = True,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        on_request: Callable[[RequestRecord], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        history: int = 500,
    ) -> None:
        key = clean_api_key(api_key)
        host = (host or "").strip() or (os.environ.get("NEON_API_HOST") or "").strip() or DEFAULT_HOST
        self.base_url = check_host(host)
        self.host_name = urlsplit(self.base_url).hostname or ""
        self.limiter = RateLimiter() if limiter is True else (limiter or None)
        self.retry = retry or RetryPolicy()
        self.on_request = on_request
        self._sleep = sleep
        self.history: deque[RequestRecord] = deque(maxlen=history)
        self.requests_sent = 0
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/",
            auth=_BearerAuth(key),
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": f"neon-tui/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
            trust_env=False,
        )

    @classmethod
    def from_env(cls, **kw: Any) -> NeonClient:
        """Build from NEON_API_KEY and NEON_API_HOST, the names the official Neon CLI uses."""
        key = os.environ.get("NEON_API_KEY", "").strip()
        if not key:
            raise NeonError("NEON_API_KEY is not set")
        return cls(key, **kw)

    def __repr__(self) -> str:
        return f"NeonClient(host={self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> NeonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---------------------------------------------------------------- transport

    def _record(self, rec: RequestRecord) -> None:
        self.history.append(rec)
        log.debug("%s %s -> %s in %.3fs (attempt %d, request id %s)", rec.method, rec.path, rec.status or rec.error,
                  rec.duration, rec.attempt, rec.request_id)
        if self.on_request is not None:
            try:
                self.on_request(rec)
            except Exception:  # a broken observer must not break an API call
                log.exception("on_request observer failed")

    async def request(
        self,
        method: str,
        route: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        guard: Callable[[], None] | None = None,
    ) -> Any:
        """Send one logical request (with retries); return the decoded JSON (None for 204).

        `route` is the path template, the unit of Neon's per-route burst limit. `guard` is called right
        before each attempt leaves (after the rate limiter's wait); if it raises, nothing was sent.
        """
        mutating = method in MUTATING
        params = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            attempt += 1
            # The slot counts against the limits from now until the answer is in (see RateLimits).
            slot = await self.limiter.reserve(f"{method} {route}") if self.limiter is not None else None
            if guard is not None:
                try:
                    guard()
                except BaseException:
                    if slot is not None:
                        slot.cancel()  # nothing was sent
                    raise
            request_id = str(uuid.uuid4())
            started = time.monotonic()
            self.requests_sent += 1
            try:
                response = await self._http.request(
                    method, path.lstrip("/"), params=params, json=body, headers={"X-Request-ID": request_id}
                )
                if slot is not None:
                    slot.done()
            except httpx.HTTPError as exc:
                if slot is not None:
                    slot.done()
                kind = type(exc).__name__
                # Certificates are checked in the handshake, during connect: then nothing was sent. A TLS
                # error later in a request is an ordinary lost answer (retried, or unknown for a mutation).
                tls = _ssl_cause(exc) if isinstance(exc, httpx.ConnectError) else None
                if tls is not None:
                    kind = "TLS"
                self._record(RequestRecord(method, path, None, time.monotonic() - started, attempt, request_id, kind, started))
                if tls is not None:
                    # A certificate (or handshake) failure will not change on retry; nothing was sent.
                    # TLS verification stays on: the fix is the certificate, the host name or the CA store.
                    raise TlsError(
                        f"TLS certificate verification failed for {self.host_name} ({_tls_reason(tls)}); "
                        "nothing was sent. Check NEON_API_HOST and the host's certificate",
                        host=self.host_name, method=method, path=path, request_id=request_id,
                    ) from None
                if isinstance(exc, httpx.LocalProtocolError):
                    # Our own request could not be written (e.g. a bad header): resending cannot help.
                    # The exception's text may quote a header, so only its type is reported.
                    raise NeonError(f"could not send {method} {path}: the request is malformed ({kind})",
                                    method=method, path=path, request_id=request_id) from None
                not_sent = isinstance(exc, _NOT_SENT)
                timeout = isinstance(exc, httpx.TimeoutException)
                if mutating and not not_sent:
                    raise OutcomeUnknownError(
                        f"the answer to {method} {path} was lost ({kind}); it may or may not have been applied",
                        method=method, path=path, request_id=request_id,
                    ) from None
                if attempt < self.retry.max_attempts:
                    await self._sleep(self.retry.delay(attempt))
                    continue
                cls = RequestTimeoutError if timeout else NetworkError
                raise cls(f"could not reach the Neon API at {self.base_url} ({kind})", method=method, path=path,
                          request_id=request_id) from None
            except BaseException:
                if slot is not None:
                    slot.done()  # cancelled mid-flight: it may still arrive, so it keeps its place a window long
                raise
            status = response.status_code
            rid = response.headers.get("x-neon-ret-request-id") or request_id
            self._record(RequestRecord(method, path, status, time.monotonic() - started, attempt, rid, None, started))
            if status < 400:
                return self._decode(response, method, path, rid)
            err = self._error(response, method, path, rid)
            if mutating:
                retryable = status in MUTATION_RETRY_STATUSES or _branch_not_ready(err)
            else:
                retryable = status >= 500 or status in (423, 429) or _branch_not_ready(err)
            if retryable and attempt < self.retry.max_attempts:
                retry_after = err.retry_after if isinstance(err, RateLimitedError) else None
                await self._sleep(self.retry.delay(attempt, retry_after))
                continue
            raise err

    def _decode(self, response: httpx.Response, method: str, path: str, rid: str) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return json.loads(response.content, object_hook=_hook)
        except (ValueError, UnicodeDecodeError):
            raise UnexpectedResponseError(
                "Neon answered with something that is not JSON", status=response.status_code, method=method, path=path,
                request_id=rid,
            ) from None

    def _error(self, response: httpx.Response, method: str, path: str, rid: str) -> NeonError:
        status = response.status_code
        message, code = "", ""
        try:
            data = json.loads(response.content, object_hook=_hook) if response.content else None
        except (ValueError, UnicodeDecodeError):
            data = None
        if isinstance(data, dict):
            message = data.get("message") if isinstance(data.get("message"), str) else ""
            code = data.get("code") if isinstance(data.get("code"), str) else ""
            if isinstance(data.get("request_id"), str) and data["request_id"]:
                rid = data["request_id"]
        message = message or response.reason_phrase or f"HTTP {status}"
        cls = error_for_status(status)
        kw = dict(status=status, request_id=rid, code=code, method=method, path=path)
        if cls is RateLimitedError:
            return RateLimitedError(message, retry_after=_retry_after(response.headers.get("retry-after")), **kw)
        return cls(message, **kw)

    async def _get(self, route: str, path: str, **params: Any) -> Any:
        return await self.request("GET", route, path, params=params)

    @staticmethod
    def _obj(data: Any, key: str, what: str) -> Any:
        if not isinstance(data, dict) or key not in data:
            raise UnexpectedResponseError(f"{what}: the answer has no '{key}'")
        return data[key]

    def _list(self, data: Any, key: str, model: Any, what: str) -> list[Any]:
        items = self._obj(data, key, what)
        if not isinstance(items, list):
            raise UnexpectedResponseError(f"{what}: '{key}' is not a list")
        return [model.from_api(i) for i in items]

    # ---------------------------------------------------------------- identity

    async def get_auth(self) -> AuthInfo:
        return AuthInfo.from_api(await self._get("/auth", "/auth"))

    async def get_current_user(self) -> CurrentUser:
        return CurrentUser.from_api(await self._get("/users/me", "/users/me"))

    async def list_organizations(self) -> list[Organization]:
        data = await self._get("/users/me/organizations", "/users/me/organizations")
        return self._list(data, "organizations", Organization, "organizations")

    async def get_organization(self, org_id: str) -> Organization:
        return Organization.from_api(await self._get("/organizations/{org_id}", f"/organizations/{seg(org_id)}"))

    async def list_org_members(self, org_id: str, *, page_size: int = 500) -> list[OrgMember]:
        """Every member of an organization, following `pagination.next` (spec getOrganizationMembers)."""
        route = "/organizations/{org_id}/members"
        path = f"/organizations/{seg(org_id)}/members"
        out: list[OrgMember] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            data = await self._get(route, path, limit=page_size, cursor=cursor)
            page = self._list(data, "members", OrgMember, "organization members")
            out.extend(page)
            pagination = data.get("pagination") if isinstance(data, dict) else None
            cursor = pagination.get("next") if isinstance(pagination, dict) else None
            if not page or not cursor:
                return out
            if cursor in seen:
                raise UnexpectedResponseError("organization members: the pagination cursor repeats")
            seen.add(cursor)

    # ---------------------------------------------------------------- projects

    async def list_project_permissions(self, project_id: str) -> list[ProjectPermission]:
        data = await self._get("/projects/{project_id}/permissions", f"/projects/{seg(project_id)}/permissions")
        return self._list(data, "project_permissions", ProjectPermission, "project permissions")

    async def project_page(
        self, org_id: str | None = None, *, search: str | None = None, cursor: str | None = None,
        page_size: int = 400,
    ) -> tuple[list[Project], str | None]:
        """One page of projects and the cursor of the next page (None after the last page).

        One request (with the client's retries), so a caller can retry a page without starting over.
        """
        if not 1 <= page_size <= 400:
            raise ValueError("page_size must be 1..400")
        data = await self._get("/projects", "/projects", org_id=org_id, search=search, limit=page_size, cursor=cursor)
        page = self._list(data, "projects", Project, "projects")
        pagination = data.get("pagination") if isinstance(data, dict) else None
        nxt = pagination.get("cursor") if isinstance(pagination, dict) else None
        if len(page) < page_size or not isinstance(nxt, str) or not nxt:
            nxt = None
        return page, nxt

    async def iter_project_pages(
        self, org_id: str | None = None, *, search: str | None = None, page_size: int = 400
    ) -> AsyncIterator[list[Project]]:
        """Pages of projects. Personal keys must pass org_id; org keys may omit it."""
        if not 1 <= page_size <= 400:
            raise ValueError("page_size must be 1..400")
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page, cursor = await self.project_page(org_id, search=search, cursor=cursor, page_size=page_size)
            if page:
                yield page
            if cursor is None:
                return
            if cursor in seen:
                raise UnexpectedResponseError("projects: the pagination cursor repeats")
            seen.add(cursor)

    async def list_projects(self, org_id: str | None = None, *, search: str | None = None) -> list[Project]:
        return [p async for page in self.iter_project_pages(org_id, search=search) for p in page]

    async def get_project(self, project_id: str) -> Project:
        data = await self._get("/projects/{project_id}", f"/projects/{seg(project_id)}")
        return Project.from_api(self._obj(data, "project", "project"))

    async def set_allowed_ips(self, project_id: str, ips: list[str], protected_branches_only: bool | None = None,
                              ) -> tuple[Project, list[Operation]]:
        """Replace the project's IP allowlist. Both fields are always sent (the issue's rule: a PATCH with
        `ips` alone would leave `protected_branches_only` to Neon's default); None keeps the current value,
        read first. The returned operations must finish before the list is in force everywhere."""
        if protected_branches_only is None:
            protected_branches_only = (await self.get_project(project_id)).protected_branches_only
        body = {"project": {"settings": {"allowed_ips": {"ips": list(ips),
                                                         "protected_branches_only": bool(protected_branches_only)}}}}
        data = await self.request("PATCH", "/projects/{project_id}", f"/projects/{seg(project_id)}", body=body)
        ops = self._list(data, "operations", Operation, "update project") if "operations" in (data or {}) else []
        return Project.from_api(self._obj(data, "project", "update project")), ops

    # ---------------------------------------------------------------- branches

    async def iter_branch_pages(self, project_id: str, *, page_size: int = 100) -> AsyncIterator[list[Branch]]:
        """Pages of branches; this endpoint has its own cursor style (`pagination.next`).

        Neon serves at most 100 branches a page whatever `limit` says, and sends `next` even after a short
        last page, so neither the page size nor a short page proves the end: only an empty page or a missing
        `next` does (one extra request per project, rather than a branch silently left unrotated)."""
        route = "/projects/{project_id}/branches"
        path = f"/projects/{seg(project_id)}/branches"
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            data = await self._get(route, path, limit=page_size, cursor=cursor)
            page = self._list(data, "branches", Branch, "branches")
            if page:
                yield page
            pagination = data.get("pagination") if isinstance(data, dict) else None
            cursor = pagination.get("next") if isinstance(pagination, dict) else None
            if not page or not cursor:
                return
            if cursor in seen:
                raise UnexpectedResponseError("branches: the pagination cursor repeats")
            seen.add(cursor)

    async def list_branches(self, project_id: str) -> list[Branch]:
        return [b async for page in self.iter_branch_pages(project_id) for b in page]

    async def get_branch(self, project_id: str, branch_id: str) -> Branch:
        data = await self._get("/projects/{project_id}/branches/{branch_id}",
                               f"/projects/{seg(project_id)}/branches/{seg(branch_id)}")
        return Branch.from_api(self._obj(data, "branch", "branch"))

    # ---------------------------------------------------------------- roles

    @staticmethod
    def _role_path(project_id: str, branch_id: str, role: str | None = None, tail: str = "") -> str:
        path = f"/projects/{seg(project_id)}/branches/{seg(branch_id)}/roles"
        if role is not None:
            path += f"/{seg(role)}"
        return path + tail

    _ROLES = "/projects/{project_id}/branches/{branch_id}/roles"
    _ROLE = _ROLES + "/{role_name}"

    async def list_roles(self, project_id: str, branch_id: str) -> list[Role]:
        data = await self._get(self._ROLES, self._role_path(project_id, branch_id))
        return self._list(data, "roles", Role, "roles")

    async def get_role(self, project_id: str, branch_id: str, role_name: str) -> Role:
        data = await self._get(self._ROLE, self._role_path(project_id, branch_id, role_name))
        return Role.from_api(self._obj(data, "role", "role"))

    async def create_role(self, project_id: str, branch_id: str, role_name: str, *, no_login: bool = False) -> RoleOperations:
        data = await self.request("POST", self._ROLES, self._role_path(project_id, branch_id),
                                  body={"role": {"name": role_name, "no_login": no_login}})
        return RoleOperations.from_api(data)

    async def delete_role(self, project_id: str, branch_id: str, role_name: str) -> RoleOperations | None:
        """Delete a role; None when it did not exist (Neon answers 204)."""
        data = await self.request("DELETE", self._ROLE, self._role_path(project_id, branch_id, role_name))
        return None if data is None else RoleOperations.from_api(data)

    async def reset_role_password(self, project_id: str, branch_id: str, role_name: str, *,
                                  guard: Callable[[], None] | None = None) -> RoleOperations:
        """Reset the password. The new one (role.password) works once every returned operation finishes.

        Raises OutcomeUnknownError if the answer was lost: reconcile, never resend blindly. `guard` (see
        `request`) lets the caller refuse the send at the last moment, e.g. when a sink has just failed.
        """
        data = await self.request("POST", self._ROLE + "/reset_password",
                                  self._role_path(project_id, branch_id, role_name, "/reset_password"), guard=guard)
        result = RoleOperations.from_api(data)
        if result.role.password is None:
            raise UnexpectedResponseError("reset_password answered without a password")
        return result

    async def reveal_role_password(self, project_id: str, branch_id: str, role_name: str) -> Secret:
        """The stored password; PasswordsNotStoredError (412) when the project does not store passwords."""
        data = await self._get(self._ROLE + "/reveal_password",
                               self._role_path(project_id, branch_id, role_name, "/reveal_password"))
        value = self._obj(data, "password", "reveal_password")
        if not isinstance(value, Secret):
            raise UnexpectedResponseError("reveal_password: 'password' is not a string")
        return value

    # ---------------------------------------------------------------- databases, endpoints, URIs

    async def list_databases(self, project_id: str, branch_id: str) -> list[Database]:
        data = await self._get("/projects/{project_id}/branches/{branch_id}/databases",
                               f"/projects/{seg(project_id)}/branches/{seg(branch_id)}/databases")
        return self._list(data, "databases", Database, "databases")

    async def get_database(self, project_id: str, branch_id: str, database_name: str) -> Database:
        data = await self._get("/projects/{project_id}/branches/{branch_id}/databases/{database_name}",
                               f"/projects/{seg(project_id)}/branches/{seg(branch_id)}/databases/{seg(database_name)}")
        return Database.from_api(self._obj(data, "database", "database"))

    async def list_endpoints(self, project_id: str, branch_id: str | None = None) -> list[Endpoint]:
        """Endpoints of a project, or of one branch."""
        if branch_id is None:
            data = await self._get("/projects/{project_id}/endpoints", f"/projects/{seg(project_id)}/endpoints")
        else:
            data = await self._get("/projects/{project_id}/branches/{branch_id}/endpoints",
                                   f"/projects/{seg(project_id)}/branches/{seg(branch_id)}/endpoints")
        return self._list(data, "endpoints", Endpoint, "endpoints")

    async def get_connection_uri(
        self, project_id: str, *, database_name: str, role_name: str, branch_id: str | None = None,
        endpoint_id: str | None = None, pooled: bool = False,
    ) -> Secret:
        data = await self._get("/projects/{project_id}/connection_uri", f"/projects/{seg(project_id)}/connection_uri",
                               database_name=database_name, role_name=role_name, branch_id=branch_id,
                               endpoint_id=endpoint_id, pooled="true" if pooled else None)
        uri = self._obj(data, "uri", "connection_uri")
        if not isinstance(uri, Secret):
            raise UnexpectedResponseError("connection_uri: 'uri' is not a string")
        return uri

    # ---------------------------------------------------------------- operations

    async def get_operation(self, project_id: str, operation_id: str) -> Operation:
        data = await self._get("/projects/{project_id}/operations/{operation_id}",
                               f"/projects/{seg(project_id)}/operations/{seg(operation_id)}")
        return Operation.from_api(self._obj(data, "operation", "operation"))

    async def list_operations(
        self, project_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[Operation], str | None]:
        """One page of the project's operations, newest first, and the cursor for the next page."""
        data = await self._get("/projects/{project_id}/operations", f"/projects/{seg(project_id)}/operations",
                               limit=limit, cursor=cursor)
        ops = self._list(data, "operations", Operation, "operations")
        pagination = data.get("pagination") if isinstance(data, dict) else None
        return ops, (pagination.get("cursor") if isinstance(pagination, dict) else None)

    # ---------------------------------------------------------------- API keys

    def _keys(self, data: Any, what: str) -> list[ApiKey]:
        # These lists are bare JSON arrays, unlike every other list in the API.
        if not isinstance(data, list):
            raise UnexpectedResponseError(f"{what}: expected a JSON array")
        return [ApiKey.from_api(i) for i in data]

    async def list_api_keys(self) -> list[ApiKey]:
        return self._keys(await self._get("/api_keys", "/api_keys"), "api keys")

    async def create_api_key(self, name: str) -> CreatedApiKey:
        return CreatedApiKey.from_api(await self.request("POST", "/api_keys", "/api_keys", body={"key_name": name}))

    async def revoke_api_key(self, key_id: int) -> ApiKey:
        return ApiKey.from_api(await self.request("DELETE", "/api_keys/{key_id}", f"/api_keys/{int(key_id)}"))

    async def list_org_api_keys(self, org_id: str) -> list[ApiKey]:
        data = await self._get("/organizations/{org_id}/api_keys", f"/organizations/{seg(org_id)}/api_keys")
        return self._keys(data, "organization api keys")

    async def create_org_api_key(self, org_id: str, name: str, *, project_id: str | None = None) -> CreatedApiKey:
        body: dict[str, Any] = {"key_name": name}
        if project_id:
            body["project_id"] = project_id
        data = await self.request("POST", "/organizations/{org_id}/api_keys", f"/organizations/{seg(org_id)}/api_keys",
                                  body=body)
        return CreatedApiKey.from_api(data)

    async def revoke_org_api_key(self, org_id: str, key_id: int) -> ApiKey:
        data = await self.request("DELETE", "/organizations/{org_id}/api_keys/{key_id}",
                                  f"/organizations/{seg(org_id)}/api_keys/{int(key_id)}")
        return ApiKey.from_api(data)
