"""The Simulator: request pipeline (auth, rate limits, faults, latency) around the API handlers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import threading
import time
import uuid
from collections import deque
from typing import Callable
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from .account import build_account
from .api import Api, Ctx, Reply
from .config import ALL_FAULT_KINDS, RequestRecord, SimConfig
from .model import LOCK_MESSAGE, SimError
from .validate import check_request

API_PREFIX = "/api/v2"
JSON_TYPE = "application/json; charset=utf-8"
ACCOUNT_LIMIT, ACCOUNT_WINDOW = 700, 60.0
ROUTE_LIMIT, ROUTE_WINDOW = 40, 1.0
RESET_ROUTE = "POST /projects/{project_id}/branches/{branch_id}/roles/{role_name}/reset_password"


class SimulatedDrop(Exception):
    """Raised after a response has started so the connection closes mid-response."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"simulated connection drop ({kind})")
        self.kind = kind


class DroppedResponse(Response):
    """Promise a body, deliver a fragment, then die: a client sees a broken connection."""

    def __init__(self, kind: str, request_id: str) -> None:
        super().__init__(status_code=200)
        self.kind = kind
        self.request_id = request_id

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", JSON_TYPE.encode()), (b"content-length", b"512"),
                                (b"x-neon-ret-request-id", self.request_id.encode())]})
        await send({"type": "http.response.body", "body": b'{"', "more_body": True})
        raise SimulatedDrop(self.kind)


def _transport_class():
    """Build the transport class on first use: importing httpx drags in rich when httpx's CLI
    extras happen to be installed, and the simulator must not load UI libraries by itself."""
    global _TRANSPORT_CLASS
    if _TRANSPORT_CLASS is not None:
        return _TRANSPORT_CLASS
    import httpx

    class SimTransport(httpx.AsyncBaseTransport):
        """In-process transport that turns simulated drops into the errors a real socket gives."""

        def __init__(self, app) -> None:
            self._inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 54321))

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            try:
                return await self._inner.handle_async_request(request)
            except SimulatedDrop as exc:
                if exc.kind == "reset":
                    raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                                    request=request) from None
                # Mirrors what httpx reports over a socket when the body stops short of Content-Length.
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body (received 2 bytes, expected 512)",
                    request=request) from None

    _TRANSPORT_CLASS = SimTransport
    return SimTransport


_TRANSPORT_CLASS = None


class _AsgiApp:
    """An ASGI 3 application object (uvicorn tells ASGI 3 from 2 by an async __call__)."""

    def __init__(self, handler) -> None:
        self._handler = handler

    async def __call__(self, scope, receive, send) -> None:
        await self._handler(scope, receive, send)


class RateLimiter:
    """Neon's documented limits: 700 requests per sliding minute, 40 per second per route."""

    def __init__(self) -> None:
        self.account: deque[float] = deque()
        self.routes: dict[str, deque[float]] = {}

    def admit(self, route: str, now: float) -> bool:
        while self.account and self.account[0] <= now - ACCOUNT_WINDOW:
            self.account.popleft()
        window = self.routes.setdefault(route, deque())
        while window and window[0] <= now - ROUTE_WINDOW:
            window.popleft()
        if len(self.account) >= ACCOUNT_LIMIT or len(window) >= ROUTE_LIMIT:
            return False
        self.account.append(now)
        window.append(now)
        return True


class Simulator:
    """A stateful simulated Neon account serving the API v2 as an ASGI app."""

    base_url = "http://neon-sim.invalid" + API_PREFIX

    def __init__(self, config: SimConfig | None = None, clock: Callable[[], float] | None = None) -> None:
        from .inspector import Inspector

        self.config = config or SimConfig()
        self.clock = clock or time.monotonic
        t0 = self.clock()
        epoch = self.config.epoch or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        if epoch.tzinfo is None:
            epoch = epoch.replace(tzinfo=dt.timezone.utc)
        self.account = build_account(self.config, epoch, t0)
        self.api = Api(self.account)
        self.lock = threading.RLock()
        self.requests: list[RequestRecord] = []
        self.fault_rate = self.config.fault_rate
        self.fault_kinds: tuple[str, ...] = tuple(self.config.faults)
        # Faults draw from their own stream so the account stays identical whatever faults do.
        self._fault_rng = random.Random(self.config.seed * 7919 + 1)
        self._burst_until = float("-inf")
        self._burst_count = 0
        self.limiter = RateLimiter()
        self._org_keys: dict[str, str] = {}
        self._scripted: list[list] = []  # [route name, kind, times left, key id or None]: see fail_next
        # A bare ASGI callable rather than Starlette routing: every path (even one with an encoded newline,
        # which Starlette's `{path:path}` does not match) and every method reaches the pipeline, so every
        # answer is Neon's JSON error shape with a request id.
        self.app = _AsgiApp(self._asgi)
        self.inspect = Inspector(self)
        self.postgres = None  # a PostgresBackend while one serves this simulator's branches

    # --- public helpers --------------------------------------------------------------------------
    @property
    def api_key(self) -> str:
        return next(k.key for k in self.account.keys.values() if k.org_id is None)

    def org_api_key(self, org_id: str) -> str:
        with self.lock:
            cached = self._org_keys.get(org_id)
            if cached is not None:
                key = self.account.key_by_secret(cached)
                if key is not None and not key.revoked:
                    return cached
            if self.account.org(org_id) is None:
                raise KeyError(f"unknown organization {org_id!r}")
            key = self.account.new_key("neon-tui-org", self.clock(), org_id=org_id)
            self._org_keys[org_id] = key.key
            return key.key

    def transport(self):
        """An httpx.AsyncBaseTransport that serves requests from this simulator in-process."""
        return _transport_class()(self.app)

    def set_faults(self, rate: float, kinds=None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault rate must be within 0..1")
        if kinds is not None:
            unknown = [k for k in kinds if k not in ALL_FAULT_KINDS]
            if unknown:
                raise ValueError(f"unknown fault kinds: {unknown}")
        with self.lock:
            self.fault_rate = rate
            if kinds is not None:
                self.fault_kinds = tuple(kinds)
            if rate == 0:
                self._burst_until = float("-inf")

    SCRIPTED_KINDS = ("500", "503", "drop")

    def fail_next(self, route: str, kind: str = "500", *, times: int = 1, key_id: int | None = None) -> None:
        """Fail the next `times` requests to `route` ("METHOD /template"), optionally only those sent with the
        key `key_id`: "500"/"503" answer an error and apply nothing; "drop" applies the request, then the
        connection breaks before the answer (a lost response). For tests that need a fault at one exact step."""
        if kind not in self.SCRIPTED_KINDS:
            raise ValueError(f"unknown scripted fault {kind!r}")
        if not any(r.name == route for r in self.api.routes):
            raise ValueError(f"unknown route {route!r}")
        with self.lock:
            self._scripted.append([route, kind, int(times), key_id])

    def clear_scripted_faults(self) -> None:
        """Forget every fault fail_next scripted that has not fired yet."""
        with self.lock:
            self._scripted.clear()

    def _take_scripted(self, route: str, key_id: int | None) -> str | None:
        for entry in self._scripted:
            if entry[0] == route and entry[2] > 0 and entry[3] in (None, key_id):
                entry[2] -= 1
                if entry[2] == 0:
                    self._scripted.remove(entry)
                return entry[1]
        return None

    # --- pipeline ------------------------------------------------------------------------------------
    def _json(self, status: int, body, request_id: str, headers: dict[str, str] | None = None) -> Response:
        all_headers = {"x-neon-ret-request-id": request_id, **(headers or {})}
        if body is None:
            return Response(status_code=status, headers=all_headers)
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        all_headers["content-type"] = JSON_TYPE
        return Response(payload, status_code=status, headers=all_headers)

    def _error(self, status: int, message: str, request_id: str, headers=None) -> Response:
        return self._json(status, {"code": "", "message": message, "request_id": request_id}, request_id, headers)

    def _draw_fault(self, route_name: str, mutation: bool) -> str | None:
        if self.fault_rate <= 0 or self._fault_rng.random() >= self.fault_rate:
            return None
        allowed = []
        for kind in self.fault_kinds:
            if kind in ("drop_reset", "op_failed", "502_applied", "drop_reset_late") and route_name != RESET_ROUTE:
                continue
            if kind == "423" and not mutation:
                continue
            allowed.append(kind)
        return self._fault_rng.choice(allowed) if allowed else None

    def _burst_reply(self, request_id: str) -> Response:
        self._burst_count += 1
        # Only some 429s carry Retry-After, so clients exercise both back-off paths.
        headers = {"retry-after": "1"} if self._burst_count % 2 else None
        return self._error(429, "rate limit exceeded", request_id, headers)

    async def _asgi(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._endpoint(request)
        await response(scope, receive, send)

    async def _endpoint(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        raw = raw_path.decode("latin-1")
        body_bytes = await request.body()
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000.0)
        record = RequestRecord(method=request.method, path=raw, route=None, status=None, t=self.clock(),
                               request_id=request_id, extra={"query": request.url.query})
        try:
            response = self._handle(request, raw, body_bytes, request_id, record)
        except Exception as exc:  # noqa: BLE001 - a bug in a handler still answers as Neon does: JSON, request id
            record.extra["exception"] = type(exc).__name__
            response = self._error(500, "internal server error", request_id)
        finally:
            with self.lock:
                self.requests.append(record)
        record.status = None if isinstance(response, DroppedResponse) else response.status_code
        return response

    def _handle(self, request: Request, raw: str, body_bytes: bytes, request_id: str,
                record: RequestRecord) -> Response:
        with self.lock:
            now = record.t
            if not raw.startswith(API_PREFIX + "/"):
                return self._error(404, "not found", request_id)
            try:
                segments = [unquote(s, errors="strict") for s in raw[len(API_PREFIX) + 1:].split("/")]
            except UnicodeDecodeError:
                return self._error(400, "invalid request: path is not valid UTF-8", request_id)
            route, params, known = self.api.match(request.method, segments)
            if route is None:
                if known:
                    allowed = ", ".join(self.api.allowed_methods(segments))
                    return self._error(405, f"method {request.method} not allowed", request_id, {"allow": allowed})
                return self._error(404, "not found", request_id)
            record.route = route.name

            auth = request.headers.get("authorization", "")
            scheme, _, secret = auth.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                return self._error(401, "authorization header is missing or is not a Bearer token", request_id)
            key = self.account.key_by_secret(secret.strip())
            # a scripted 5xx comes from in front of the API (a proxy): before the key is even looked at
            scripted = self._take_scripted(route.name, key.id if key else None) if self._scripted else None
            if scripted in ("500", "503"):
                record.fault = scripted
                return self._error(int(scripted), "internal server error" if scripted == "500"
                                   else "service temporarily unavailable, please retry", request_id)
            if key is None or key.revoked:
                return self._error(401, "invalid API key", request_id)
            record.key_id = key.id
            key.last_used_t = now
            key.last_used_from_addr = request.client.host if request.client else ""

            if now < self._burst_until:
                record.fault = "429"
                return self._burst_reply(request_id)
            if self.config.rate_limit == "neon" and not self.limiter.admit(route.name, now):
                return self._error(429, "rate limit exceeded", request_id)

            fault = self._draw_fault(route.name, route.mutation)
            if fault is not None:
                record.fault = fault
            if fault == "500":
                return self._error(500, "internal server error", request_id)
            if fault == "503":
                return self._error(503, "service temporarily unavailable, please retry", request_id)
            if fault == "429":
                self._burst_until = now + self._fault_rng.uniform(0.5, 1.0)
                return self._burst_reply(request_id)
            if fault == "reset":
                return DroppedResponse("reset", request_id)
            if fault == "423":
                return self._error(423, LOCK_MESSAGE, request_id)

            body = None
            if body_bytes.strip():
                try:
                    body = json.loads(body_bytes)
                except ValueError as exc:
                    return self._error(400, f"invalid request: decode application/json: {exc}", request_id)
            invalid = check_request(route.name, params, request.query_params, body, bool(body_bytes.strip()))
            if invalid is not None:
                if fault in ("drop_reset", "op_failed", "drop_reset_late", "502_applied"):
                    record.fault = None  # refused before anything was applied: the fault never happened
                return self._error(400, invalid, request_id)
            self.account.settle(now)
            ctx = Ctx(request.method, params, request.query_params, body, key, now,
                      request.client.host if request.client else "", fail_ops=fault == "op_failed")
            if fault == "drop_reset_late":
                self._apply_later(route, ctx)
                return DroppedResponse("drop_reset", request_id)
            try:
                reply: Reply = route.handler(ctx)
            except SimError as exc:
                if fault in ("drop_reset", "op_failed"):
                    record.fault = None  # nothing was applied, so the fault never happened
                return self._error(exc.status, exc.message, request_id)
            if fault == "drop_reset" or scripted == "drop":
                record.fault = record.fault or "drop"
                return DroppedResponse("drop_reset", request_id)
            if fault == "502_applied":
                return self._error(502, "bad gateway", request_id)
            return self._json(reply.status, reply.body, request_id, reply.headers)

    LATE_APPLY_SECONDS = 0.4

    def _apply_later(self, route, ctx) -> None:
        """The request is still inside Neon when the client gives up on it: apply it a moment later."""

        def apply() -> None:
            with self.lock:
                now = self.clock()
                self.account.settle(now)
                ctx.now = now
                try:
                    route.handler(ctx)
                except SimError:
                    pass

        asyncio.get_running_loop().call_later(self.LATE_APPLY_SECONDS, apply)
