"""Fakes of GitHub's Actions secrets API and Vercel's environment variables API that behave like the real
services (status codes, bodies, rules), served by uvicorn on 127.0.0.1.

The GitHub fake holds a real libsodium key pair: it decrypts every PUT with SealedBox(private_key) and keeps the
plaintext for the test to assert, so a wrong encryption fails the way it would on GitHub (the value would be
garbage there; here the PUT is refused with 422 like a bad key_id).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import uvicorn
from nacl.encoding import Base64Encoder
from nacl.public import PrivateKey, SealedBox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from neon_tui.simulator.serve import _bind, _Server


def _now_iso(clock: float) -> str:
    return datetime.fromtimestamp(clock, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def serve_app(app) -> Iterator[str]:
    sock = _bind("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", http="h11", ws="none", lifespan="off", access_log=False,
                            timeout_graceful_shutdown=2)
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="platform-fake", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake server failed to start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# --------------------------------------------------------------------------- GitHub


@dataclass
class StoredSecret:
    plaintext: str
    created_at: str
    updated_at: str
    visibility: str | None = None


@dataclass
class GitHubFake:
    token: str = "ghp_fake_token_0123456789"
    repos: set[tuple[str, str]] = field(default_factory=lambda: {("acme", "app")})
    environments: set[tuple[str, str, str]] = field(default_factory=lambda: {("acme", "app", "production")})
    orgs: set[str] = field(default_factory=lambda: {"acme"})
    # scope path ("repos/acme/app", "repos/acme/app/environments/production", "orgs/acme") -> name -> secret
    secrets: dict[str, dict[str, StoredSecret]] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    clock_offset: float = 0.0  # seconds the fake's clock is ahead of ours (skew)

    def __post_init__(self) -> None:
        self.private_key = PrivateKey.generate()
        self.key_id = "568250167242549743"
        self._tick = itertools.count()
        self.app = Starlette(routes=[
            Route("/repos/{owner}/{repo}/actions/secrets/public-key", self._key, methods=["GET"]),
            Route("/repos/{owner}/{repo}/actions/secrets/{name}", self._secret, methods=["GET", "PUT"]),
            Route("/repos/{owner}/{repo}/environments/{env}/secrets/public-key", self._key, methods=["GET"]),
            Route("/repos/{owner}/{repo}/environments/{env}/secrets/{name}", self._secret, methods=["GET", "PUT"]),
            Route("/orgs/{org}/actions/secrets/public-key", self._key, methods=["GET"]),
            Route("/orgs/{org}/actions/secrets/{name}", self._secret, methods=["GET", "PUT"]),
        ])

    def value(self, scope: str, name: str) -> str | None:
        s = self.secrets.get(scope, {}).get(name)
        return s.plaintext if s else None

    def _clock(self) -> float:
        # Distinct whole seconds per write, like GitHub's timestamps moving on each update.
        return time.time() + self.clock_offset + next(self._tick)

    def _scope(self, request: Request) -> str | None:
        p = request.path_params
        if "org" in p:
            return f"orgs/{p['org']}" if p["org"] in self.orgs else None
        if (p["owner"], p["repo"]) not in self.repos:
            return None
        if "env" in p:
            if (p["owner"], p["repo"], p["env"]) not in self.environments:
                return None
            return f"repos/{p['owner']}/{p['repo']}/environments/{p['env']}"
        return f"repos/{p['owner']}/{p['repo']}"

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                                 "status": "401"}, status_code=401)
        return None

    def _record(self, request: Request, status: int) -> None:
        self.requests.append((request.method, request.url.path, status))

    async def _key(self, request: Request) -> Response:
        refused = self._auth(request) or (None if self._scope(request) else
                                          JSONResponse({"message": "Not Found", "status": "404"}, status_code=404))
        if refused:
            self._record(request, refused.status_code)
            return refused
        self._record(request, 200)
        return JSONResponse({"key_id": self.key_id,
                             "key": self.private_key.public_key.encode(Base64Encoder).decode()})

    async def _secret(self, request: Request) -> Response:
        refused = self._auth(request)
        scope = self._scope(request)
        if refused is None and scope is None:
            refused = JSONResponse({"message": "Not Found", "status": "404"}, status_code=404)
        if refused:
            self._record(request, refused.status_code)
            return refused
        name = request.path_params["name"]
        store = self.secrets.setdefault(scope, {})
        if request.method == "GET":
            s = store.get(name)
            if s is None:
                self._record(request, 404)
                return JSONResponse({"message": "Not Found", "status": "404"}, status_code=404)
            self._record(request, 200)
            body = {"name": name, "created_at": s.created_at, "updated_at": s.updated_at}
            if s.visibility:
                body["visibility"] = s.visibility
            return JSONResponse(body)
        body = await request.json()
        if body.get("key_id") != self.key_id:
            self._record(request, 422)
            return JSONResponse({"message": "Bad request - key_id is not valid", "status": "422"}, status_code=422)
        try:
            plaintext = SealedBox(self.private_key).decrypt(base64.b64decode(body["encrypted_value"])).decode()
        except Exception:
            self._record(request, 422)
            return JSONResponse({"message": "Invalid request: encrypted_value could not be decrypted",
                                 "status": "422"}, status_code=422)
        if scope.startswith("orgs/") and body.get("visibility") not in ("all", "private", "selected"):
            self._record(request, 422)
            return JSONResponse({"message": "Invalid request: visibility is required", "status": "422"},
                                status_code=422)
        now = _now_iso(self._clock())
        existing = store.get(name)
        if existing is None:
            store[name] = StoredSecret(plaintext, now, now, body.get("visibility"))
            self._record(request, 201)
            return Response(status_code=201, content=b"{}", media_type="application/json")
        existing.plaintext, existing.updated_at = plaintext, now
        existing.visibility = body.get("visibility") or existing.visibility
        self._record(request, 204)
        return Response(status_code=204)


# --------------------------------------------------------------------------- Vercel


@dataclass
class VercelFake:
    token: str = "vercel_fake_token_abcdef"
    projects: dict[str, str] = field(default_factory=lambda: {"prj_web123": "web"})  # id -> name
    team_id: str | None = None
    envs: list[dict] = field(default_factory=list)
    deployments: list[dict] = field(default_factory=lambda: [
        {"uid": "dpl_old1", "name": "web", "projectId": "prj_web123", "target": "production", "created": 1}])
    redeploys: list[dict] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self.app = Starlette(routes=[
            Route("/v9/projects/{id_or_name}", self._project, methods=["GET"]),
            Route("/v10/projects/{id_or_name}/env", self._env, methods=["POST"]),
            Route("/v6/deployments", self._list_deployments, methods=["GET"]),
            Route("/v13/deployments", self._deploy, methods=["POST"]),
        ])

    def values(self, key: str) -> dict[str, tuple[str, str]]:
        """target -> (type, value) of a key."""
        out = {}
        for e in self.envs:
            if e["key"] == key:
                for t in e["target"]:
                    out[t] = (e["type"], e["value"])
        return out

    @staticmethod
    def _error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

    def _check(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._error(403, "forbidden", "Not authorized")  # Vercel answers a bad token with 403
        if self.team_id and request.query_params.get("teamId") != self.team_id:
            return self._error(403, "forbidden", "Not authorized")
        return None

    def _find(self, id_or_name: str) -> str | None:
        if id_or_name in self.projects:
            return id_or_name
        return next((i for i, n in self.projects.items() if n == id_or_name), None)

    def _done(self, request: Request, resp: Response) -> Response:
        self.requests.append((request.method, request.url.path, resp.status_code))
        return resp

    async def _project(self, request: Request) -> Response:
        bad = self._check(request)
        if bad:
            return self._done(request, bad)
        pid = self._find(request.path_params["id_or_name"])
        if pid is None:
            return self._done(request, self._error(404, "not_found", "Project not found"))
        return self._done(request, JSONResponse({"id": pid, "name": self.projects[pid], "accountId": "team_x"}))

    async def _env(self, request: Request) -> Response:
        bad = self._check(request)
        if bad:
            return self._done(request, bad)
        pid = self._find(request.path_params["id_or_name"])
        if pid is None:
            return self._done(request, self._error(404, "not_found", "Project not found"))
        body = await request.json()
        items = body if isinstance(body, list) else [body]
        upsert = request.query_params.get("upsert") == "true"
        created = []
        for item in items:
            key, value, typ, targets = item.get("key"), item.get("value"), item.get("type"), item.get("target")
            if not key or not isinstance(value, str) or typ not in ("system", "secret", "encrypted", "plain",
                                                                      "sensitive") or not targets:
                return self._done(request, self._error(400, "bad_request", "Invalid request body"))
            if typ == "sensitive" and "development" in targets:
                return self._done(request, self._error(
                    400, "bad_request",
                    "You cannot set a Sensitive Environment Variable's target to development."))
            now = int(time.time() * 1000)
            branch = item.get("gitBranch")
            same = [e for e in self.envs if e["projectId"] == pid and e["key"] == key
                    and e.get("gitBranch") == branch and set(e["target"]) & set(targets)]
            if same and not upsert:
                return self._done(request, self._error(
                    400, "ENV_ALREADY_EXISTS", f"A variable with the name `{key}` already exists for the target "
                                               "environment."))
            if same:
                e = same[0]
                for other in same[1:]:
                    self.envs.remove(other)
                e.update(value=value, type=typ, target=list(targets), updatedAt=now)
            else:
                e = {"id": f"env_{next(self._ids)}", "projectId": pid, "key": key, "value": value, "type": typ,
                     "target": list(targets), "gitBranch": branch, "createdAt": now, "updatedAt": now}
                self.envs.append(e)
            shown = {k: v for k, v in e.items() if k not in ("value", "projectId")}
            if typ != "sensitive":
                shown["value"] = "eyJ2IjoiZW5jcnlwdGVkIn0"  # the API answers with the encrypted form
            created.append(shown)
        return self._done(request, JSONResponse(
            {"created": created[0] if len(created) == 1 else created, "failed": []}, status_code=201))

    async def _list_deployments(self, request: Request) -> Response:
        bad = self._check(request)
        if bad:
            return self._done(request, bad)
        q = request.query_params
        found = [d for d in self.deployments if d["projectId"] == q.get("projectId")
                 and (not q.get("target") or d["target"] == q.get("target"))]
        found.sort(key=lambda d: d["created"], reverse=True)
        limit = int(q.get("limit", "20"))
        return self._done(request, JSONResponse({"deployments": found[:limit], "pagination": {"count": len(found)}}))

    async def _deploy(self, request: Request) -> Response:
        bad = self._check(request)
        if bad:
            return self._done(request, bad)
        body = await request.json()
        src = next((d for d in self.deployments if d["uid"] == body.get("deploymentId")), None)
        if src is None:
            return self._done(request, self._error(404, "not_found", "Deployment not found"))
        new = {"uid": f"dpl_new{next(self._ids)}", "name": body.get("name") or src["name"],
               "projectId": src["projectId"], "target": body.get("target") or src["target"],
               "created": max(d["created"] for d in self.deployments) + 1}
        self.deployments.append(new)
        self.redeploys.append(dict(body))
        return self._done(request, JSONResponse({"id": new["uid"], "url": f"{new['name']}-x.vercel.app",
                                                 "readyState": "QUEUED"}, status_code=200))
