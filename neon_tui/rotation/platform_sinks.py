"""Platform sinks: GitHub Actions secrets and Vercel environment variables, over their REST APIs.

    --deliver github:OWNER/REPO[:NAME]          a repository secret (NAME defaults to DATABASE_URL)
    --deliver github:OWNER/REPO@ENV[:NAME]      an environment secret of that repository
    --deliver github-org:ORG[:NAME]             an organization secret (?visibility=all|private)
    --deliver vercel:PROJECT[:KEY]              a Vercel environment variable (KEY defaults to DATABASE_URL)

Options after '?', joined with '&': value=direct|pooled|password (default direct), database=NAME (default
the target's first database); Vercel: targets=production,preview[,development], team=TEAM_ID,
type=sensitive|encrypted, branch=GIT_BRANCH (preview only), redeploy=1.

Tokens come from the environment (GITHUB_TOKEN or GH_TOKEN; VERCEL_TOKEN) or else the OS keyring (service
"neon-tui", user GITHUB_TOKEN / VERCEL_TOKEN); never from argv. Base URLs: GITHUB_API_URL (GitHub Enterprise
sets it too) and VERCEL_API_URL; https anywhere, plain http only to a loopback address (tests).

Each sink holds one secret, so it takes one target per run: a second, different target is refused rather than
silently overwriting the first one's string. Confirmation is read back from metadata (GitHub: the secret's
updated_at; Vercel: the upsert's updatedAt), never by reading the value back (neither API returns it).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from neon_tui import __version__
from neon_tui.neon.client import _BearerAuth, _is_loopback  # one Bearer auth, one loopback rule
from neon_tui.neon.secret import Secret
from neon_tui.rotation.events import RotationResult
from neon_tui.rotation.sinks import Receipt, SinkError

GITHUB_API = "https://api.github.com"
VERCEL_API = "https://api.vercel.com"
VALUES = ("direct", "pooled", "password")
VERCEL_TARGETS = ("production", "preview", "development")
SKEW = 60.0  # seconds of clock difference tolerated when confirming from a timestamp
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


# --------------------------------------------------------------------------- shared plumbing


def check_base_url(url: str, what: str) -> str:
    """https anywhere, plain http only to loopback, no credentials in the URL; no trailing '/'."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - a bad port raises ValueError
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host or any(not 0x21 <= ord(c) <= 0x7E for c in url):
        raise ValueError(f"{what} must be an http(s) URL")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not carry credentials")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(f"refusing to send a token over plain http to {host} ({what}); use https")
    return url.rstrip("/")


def _fingerprint(result: RotationResult) -> tuple:
    return result.target.key, hashlib.sha256(result.password.reveal().encode()).hexdigest()


def pick_value(result: RotationResult, value: str, database: str | None) -> tuple[Secret, str]:
    """(the value to deliver, a journal-safe description of it)."""
    if value == "password":
        return result.password, "password"
    c = result.connection(database)
    if c is None:
        if not result.connections:
            raise SinkError(f"{result.target.label} has no endpoint yet, so no connection string: deliver "
                            "its password with ?value=password, or add a compute first")
        raise SinkError(f"{result.target.label} has no database {database!r}")
    if value == "pooled":
        if c.pooled is None:
            raise SinkError(f"{result.target.label} has no pooled string for database {c.database}")
        return c.pooled, f"pooled string, database {c.database}"
    return c.direct, f"direct string, database {c.database}"


def _parse_time(text: Any) -> float | None:
    if isinstance(text, (int, float)):  # Vercel: milliseconds since the epoch
        return float(text) / 1000.0
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Platform:
    """A token, a base URL and an httpx client per call (TLS verification always on)."""

    automatic = True
    one_target = True  # one secret holds one value: a run with several targets is refused up front
    service = ""
    token_env: tuple[str, ...] = ()
    keyring_user = ""
    token_hint = ""

    def __init__(self, *, token: Secret | None, base_url: str, keyring_allow: Iterable[str] = ()) -> None:
        self.base_url = base_url
        self._token = token
        self.keyring_allow = tuple(keyring_allow)
        self._taken: tuple | None = None  # the (target key) this sink holds in this run
        self._done: dict[tuple, Receipt] = {}

    def _token_or_fail(self) -> Secret:
        if self._token is not None and self._token.reveal().strip():
            return Secret(self._token.reveal().strip())
        from neon_tui import secrets

        try:
            saved = secrets.load_token(self.keyring_user, allow=self.keyring_allow)
        except secrets.KeyringUnavailable:
            saved = None
        if saved is None or not saved.reveal().strip():
            raise SinkError(f"no {self.service} token: set {' or '.join(self.token_env)} in the environment, or save "
                            f"one in the keyring (service neon-tui, user {self.keyring_user}); it needs "
                            f"{self.token_hint}")
        self._token = Secret(saved.reveal().strip())
        return self._token

    def _client(self) -> httpx.AsyncClient:
        token = self._token_or_fail()
        return httpx.AsyncClient(base_url=self.base_url, auth=_BearerAuth(token), verify=True, timeout=_TIMEOUT,
                                 follow_redirects=False, headers=self._headers())

    def _headers(self) -> dict[str, str]:
        return {"User-Agent": f"neon-tui/{__version__}"}

    async def _call(self, client: httpx.AsyncClient, method: str, path: str, what: str, **kw) -> httpx.Response:
        try:
            return await client.request(method, path, **kw)
        except httpx.HTTPError as e:
            host = urlsplit(self.base_url).hostname
            raise SinkError(f"{self.service}: {what}: cannot reach {host} ({type(e).__name__})") from None

    def _refused(self, resp: httpx.Response, what: str, *, secrets_: Iterable[Secret] = ()) -> SinkError:
        s = resp.status_code
        if s == 401:
            why = "the token was refused (401): it is wrong, expired or revoked"
        elif s == 403:
            why = f"the token may not do this (403): it needs {self.token_hint}"
        elif s == 404:
            why = "not found, or not visible to this token (404)"
        elif s == 429:
            why = "rate limited (429): try again later"
        else:
            why = f"HTTP {s}"
            msg = self._message(resp)
            if msg:
                for sec in (*secrets_, self._token):
                    if sec is not None and sec.reveal():
                        msg = msg.replace(sec.reveal(), "********")
                why += f": {msg[:200]}"
        return SinkError(f"{self.service}: {what}: {why}")

    @staticmethod
    def _message(resp: httpx.Response) -> str:
        try:
            body = resp.json()
        except ValueError:
            return ""
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                return str(err.get("message") or err.get("code") or "")
            return str(body.get("message") or "")
        return ""

    def _take(self, result: RotationResult) -> None:
        key = result.target.key
        if self._taken is not None and self._taken != key:
            raise SinkError(f"{self.name} holds one value and already took another target's in this run; "
                            "give each target its own secret (one --deliver per target)")
        self._taken = key


# --------------------------------------------------------------------------- GitHub Actions secrets


class GitHubSecretSink(_Platform):
    """One GitHub Actions secret (repository, environment or organization scope)."""

    service = "GitHub"
    token_env = ("GITHUB_TOKEN", "GH_TOKEN")
    keyring_user = "GITHUB_TOKEN"

    def __init__(self, scope: str, owner: str, repo: str | None = None, environment: str | None = None, *,
                 name: str = "DATABASE_URL", value: str = "direct", database: str | None = None,
                 token: Secret | None = None, base_url: str = GITHUB_API, visibility: str = "private",
                 keyring_allow: Iterable[str] = ()) -> None:
        super().__init__(token=token, base_url=check_base_url(base_url, "GITHUB_API_URL"),
                         keyring_allow=keyring_allow)
        if scope not in ("repo", "env", "org"):
            raise ValueError(f"unknown GitHub secret scope {scope!r}")
        if scope != "org" and not repo:
            raise ValueError("a repository or environment secret needs OWNER/REPO")
        if scope == "env" and not environment:
            raise ValueError("an environment secret needs @ENVIRONMENT")
        if value not in VALUES:
            raise ValueError(f"value={value}: use direct, pooled or password")
        if visibility not in ("all", "private"):
            raise ValueError(f"visibility={visibility}: use all or private (selected repositories are not supported)")
        if not _valid_secret_name(name):
            raise ValueError(f"{name!r} is not a valid GitHub secret name (letters, digits and _, not GITHUB_*)")
        self.scope, self.owner, self.repo, self.environment = scope, owner, repo, environment
        self.secret_name, self.value, self.database, self.visibility = name, value, database, visibility
        self.token_hint = ("a fine-grained token with \"Secrets: write\" on the repository"
                           if scope == "repo" else
                           "a fine-grained token with \"Environments: write\" on the repository" if scope == "env"
                           else "a token with the organization permission \"Secrets: write\" (admin:org)")
        if scope == "org":
            self.where = f"organization {owner}"
            self.prefix = f"/orgs/{quote(owner, safe='')}/actions/secrets"
            self.name = f"github-org:{owner}:{name}"
        else:
            self.where = f"{owner}/{repo}" + (f" environment {environment}" if scope == "env" else "")
            base = f"/repos/{quote(owner, safe='')}/{quote(repo or '', safe='')}"
            self.prefix = (f"{base}/environments/{quote(environment or '', safe='')}/secrets" if scope == "env"
                           else f"{base}/actions/secrets")
            self.name = f"github:{owner}/{repo}" + (f"@{environment}" if scope == "env" else "") + f":{name}"

    def _headers(self) -> dict[str, str]:
        return {**super()._headers(), "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}

    async def _public_key(self, client: httpx.AsyncClient) -> tuple[str, str]:
        resp = await self._call(client, "GET", f"{self.prefix}/public-key", f"read the public key of {self.where}")
        if resp.status_code != 200:
            raise self._refused(resp, f"read the secrets public key of {self.where}")
        body = resp.json()
        if not isinstance(body, dict) or not body.get("key_id") or not body.get("key"):
            raise SinkError(f"GitHub: the public key of {self.where} came without key_id or key")
        return str(body["key_id"]), str(body["key"])

    async def _updated_at(self, client: httpx.AsyncClient) -> str | None:
        resp = await self._call(client, "GET", f"{self.prefix}/{quote(self.secret_name, safe='')}",
                                f"read secret {self.secret_name} of {self.where}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._refused(resp, f"read secret {self.secret_name} of {self.where}")
        body = resp.json()
        return str(body.get("updated_at")) if isinstance(body, dict) and body.get("updated_at") else None

    async def preflight(self) -> str:
        async with self._client() as client:
            await self._public_key(client)  # proves the token works and can see this scope's secrets
        return f"GitHub Actions secret {self.secret_name} of {self.where}"

    async def deliver(self, result: RotationResult) -> Receipt:
        fp = _fingerprint(result)
        if fp in self._done:
            return self._done[fp]
        self._take(result)
        value, what = pick_value(result, self.value, self.database)
        from nacl.encoding import Base64Encoder
        from nacl.public import PublicKey, SealedBox

        async with self._client() as client:
            before = await self._updated_at(client)
            key_id, key = await self._public_key(client)
            try:
                box = SealedBox(PublicKey(key.encode(), encoder=Base64Encoder))
            except Exception:
                raise SinkError(f"GitHub: the public key of {self.where} is not a valid key") from None
            sealed = base64.b64encode(box.encrypt(value.reveal().encode())).decode()
            body: dict[str, Any] = {"encrypted_value": sealed, "key_id": key_id}
            if self.scope == "org":
                body["visibility"] = self.visibility
            started = time.time()
            resp = await self._call(client, "PUT", f"{self.prefix}/{quote(self.secret_name, safe='')}",
                                    f"write secret {self.secret_name} of {self.where}", json=body)
            if resp.status_code not in (201, 204):
                raise self._refused(resp, f"write secret {self.secret_name} of {self.where}", secrets_=[value])
            created = resp.status_code == 201
            after = await self._updated_at(client)
        ts = _parse_time(after)
        moved = after is not None and (after != before or (ts is not None and ts >= started - SKEW))
        if not moved:
            raise SinkError(f"GitHub took secret {self.secret_name} of {self.where} (HTTP {resp.status_code}) "
                            f"but its updated_at did not change ({after or 'missing'}): not confirmed")
        receipt = Receipt(self.name, f"github {self.where} {self.secret_name} {'created' if created else 'updated'} "
                                     f"{after} ({what})")
        self._done[fp] = receipt
        return receipt


def _valid_secret_name(name: str) -> bool:
    return (bool(name) and name.replace("_", "a").isalnum() and name.isascii() and not name[0].isdigit()
            and not name.upper().startswith("GITHUB_"))


# --------------------------------------------------------------------------- Vercel environment variables


class VercelEnvSink(_Platform):
    """One Vercel environment variable, upserted per target environment, with an opt-in redeploy.

    Type `sensitive` (the default) is not allowed for the development target: a variable for development is
    written as a separate `encrypted` one (two upserts), so production and preview stay sensitive.
    """

    service = "Vercel"
    token_env = ("VERCEL_TOKEN",)
    keyring_user = "VERCEL_TOKEN"
    token_hint = "a Vercel access token scoped to the project's team"

    def __init__(self, project: str, key: str = "DATABASE_URL", *, targets: Iterable[str] = ("production", "preview"),
                 team_id: str | None = None, type: str = "sensitive", value: str = "direct",
                 database: str | None = None, git_branch: str | None = None, token: Secret | None = None,
                 base_url: str = VERCEL_API, redeploy: bool = False, keyring_allow: Iterable[str] = ()) -> None:
        super().__init__(token=token, base_url=check_base_url(base_url, "VERCEL_API_URL"),
                         keyring_allow=keyring_allow)
        targets = tuple(dict.fromkeys(t.strip() for t in targets if t.strip()))
        if not targets or any(t not in VERCEL_TARGETS for t in targets):
            raise ValueError("targets= takes production, preview and/or development")
        if type not in ("sensitive", "encrypted"):
            raise ValueError(f"type={type}: use sensitive or encrypted")
        if value not in VALUES:
            raise ValueError(f"value={value}: use direct, pooled or password")
        if git_branch and targets != ("preview",):
            raise ValueError("branch= applies to the preview target only (targets=preview)")
        if not key or not key.replace("_", "a").isalnum() or not key.isascii():
            raise ValueError(f"{key!r} is not a valid environment variable name")
        self.project, self.key, self.targets, self.team_id = project, key, targets, team_id
        self.type, self.value, self.database, self.git_branch = type, value, database, git_branch
        self.redeploy = redeploy
        self.name = f"vercel:{project}:{key}"
        self._project_id: str | None = None
        self._project_name: str | None = None
        self._redeployed: set[tuple] = set()

    def _params(self, **extra: str) -> dict[str, str]:
        params = dict(extra)
        if self.team_id:
            params["teamId"] = self.team_id
        return params

    def groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """(type, targets) per upsert: sensitive is not allowed for development, which gets encrypted."""
        if self.type != "sensitive" or "development" not in self.targets:
            return [(self.type, self.targets)]
        rest = tuple(t for t in self.targets if t != "development")
        return ([("sensitive", rest)] if rest else []) + [("encrypted", ("development",))]

    async def _project(self, client: httpx.AsyncClient) -> None:
        resp = await self._call(client, "GET", f"/v9/projects/{quote(self.project, safe='')}",
                                f"read project {self.project}", params=self._params())
        if resp.status_code != 200:
            raise self._refused(resp, f"read project {self.project}")
        body = resp.json()
        self._project_id = str(body.get("id") or self.project)
        self._project_name = str(body.get("name") or self.project)

    async def preflight(self) -> str:
        async with self._client() as client:
            await self._project(client)
        kinds = ", ".join(f"{'+'.join(t)} ({ty})" for ty, t in self.groups())
        return (f"Vercel project {self._project_name} variable {self.key}: {kinds}"
                + (", then a production redeploy" if self.redeploy else ""))

    async def deliver(self, result: RotationResult) -> Receipt:
        fp = _fingerprint(result)
        if fp in self._done:
            return self._done[fp]
        self._take(result)
        value, what = pick_value(result, self.value, self.database)
        parts: list[str] = []
        async with self._client() as client:
            if self._project_id is None:
                await self._project(client)
            for ty, targets in self.groups():
                body: dict[str, Any] = {"key": self.key, "value": value.reveal(), "type": ty, "target": list(targets)}
                if self.git_branch:
                    body["gitBranch"] = self.git_branch
                started = time.time()
                what_call = f"upsert {self.key} ({'+'.join(targets)}) in project {self._project_name}"
                resp = await self._call(client, "POST", f"/v10/projects/{quote(self.project, safe='')}/env",
                                        what_call, params=self._params(upsert="true"), json=body)
                if resp.status_code not in (200, 201):
                    raise self._refused(resp, what_call, secrets_=[value])
                out = resp.json() if resp.content else {}
                failed = out.get("failed") if isinstance(out, dict) else None
                if failed:
                    err = failed[0].get("error", {}) if isinstance(failed[0], dict) else {}
                    code = str(err.get("code") or "failed") if isinstance(err, dict) else "failed"
                    raise SinkError(f"Vercel: {what_call}: refused ({code})")
                created = out.get("created") if isinstance(out, dict) else None
                env = created[0] if isinstance(created, list) and created else created
                ts = _parse_time(env.get("updatedAt")) if isinstance(env, dict) else None
                if ts is None or ts < started - SKEW:
                    raise SinkError(f"Vercel took {what_call} but its updatedAt is "
                                    f"{'missing' if ts is None else _iso(ts)}: not confirmed")
                parts.append(f"{'+'.join(targets)} {ty} updated {_iso(ts)}")
            if self.redeploy and "production" in self.targets and fp not in self._redeployed:
                parts.append(await self._redeploy(client))
                self._redeployed.add(fp)
        receipt = Receipt(self.name, f"vercel {self._project_name} {self.key}: {'; '.join(parts)} ({what})")
        self._done[fp] = receipt
        return receipt

    async def _redeploy(self, client: httpx.AsyncClient) -> str:
        """Redeploy the latest production deployment, so the new value takes effect."""
        what = f"list production deployments of {self._project_name}"
        resp = await self._call(client, "GET", "/v6/deployments", what,
                                params=self._params(projectId=self._project_id or self.project,
                                                    target="production", limit="1"))
        if resp.status_code != 200:
            raise self._refused(resp, what)
        deployments = resp.json().get("deployments") or []
        if not deployments:
            return "no production deployment to redeploy (the next deployment takes the new value)"
        latest = deployments[0]
        uid = str(latest.get("uid") or latest.get("id") or "")
        what = f"redeploy {uid} of {self._project_name}"
        resp = await self._call(client, "POST", "/v13/deployments", what, params=self._params(),
                                json={"name": latest.get("name") or self._project_name, "deploymentId": uid,
                                      "target": "production"})
        if resp.status_code not in (200, 201):
            raise self._refused(resp, what)
        new = resp.json()
        return f"redeploy {new.get('id', '?')} of {uid} started ({new.get('readyState', 'QUEUED')})"


# --------------------------------------------------------------------------- --deliver specs


def _options(query: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if k in opts:
            raise ValueError(f"option {k}= given twice")
        opts[k] = v
    return opts


def _flag(text: str, key: str) -> bool:
    if text.lower() in ("1", "true", "yes", ""):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"{key}={text}: use 1 or 0")


def parse_platform(spec: str, *, environ: Mapping[str, str] | None = None,
                   keyring_allow: Iterable[str] = ()) -> GitHubSecretSink | VercelEnvSink | None:
    """A platform sink from a --deliver value, or None when the spec is not one. Raises ValueError."""
    env = os.environ if environ is None else environ
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("github", "github-org", "vercel"):
        return None
    rest, _, query = rest.partition("?")
    opts = _options(query)

    def take(key: str, default: str | None = None) -> str | None:
        return opts.pop(key, default)

    value = take("value", "direct") or "direct"
    database = take("database") or None
    usage = {"github": "github:OWNER/REPO[@ENV][:NAME]", "github-org": "github-org:ORG[:NAME]",
             "vercel": "vercel:PROJECT[:KEY]"}[kind]
    where, _, name = rest.partition(":")
    name = name or "DATABASE_URL"
    if not where or ":" in name:
        raise ValueError(f"--deliver {usage}: got {spec!r}")
    if kind == "vercel":
        token = env.get("VERCEL_TOKEN")
        sink: GitHubSecretSink | VercelEnvSink = VercelEnvSink(
            where, name, targets=(take("targets") or "production,preview").split(","), team_id=take("team") or None,
            type=take("type") or "sensitive", value=value, database=database, git_branch=take("branch") or None,
            redeploy=_flag(take("redeploy", "0") or "0", "redeploy"),
            token=Secret(token) if token else None, base_url=env.get("VERCEL_API_URL") or VERCEL_API,
            keyring_allow=keyring_allow)
    else:
        token = env.get("GITHUB_TOKEN") or env.get("GH_TOKEN")
        common = dict(name=name, value=value, database=database, token=Secret(token) if token else None,
                      base_url=env.get("GITHUB_API_URL") or GITHUB_API, keyring_allow=keyring_allow)
        if kind == "github-org":
            if "/" in where:
                raise ValueError(f"--deliver {usage}: got {spec!r}")
            sink = GitHubSecretSink("org", where, visibility=take("visibility") or "private", **common)
        else:
            repo_part, at, environment = where.partition("@")
            owner, slash, repo = repo_part.partition("/")
            if not slash or not owner or not repo or "/" in repo or (at and not environment):
                raise ValueError(f"--deliver {usage}: got {spec!r}")
            sink = GitHubSecretSink("env" if at else "repo", owner, repo, environment or None, **common)
    if opts:
        raise ValueError(f"--deliver {kind}: unknown option(s) {', '.join(sorted(opts))}")
    return sink
