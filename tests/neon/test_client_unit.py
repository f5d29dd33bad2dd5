"""Client behaviour against scripted answers: retries, error typing, secrets, host checks."""

from __future__ import annotations

import json
import logging
import traceback

import httpx
import pytest

from neon_tui.neon import (
    ApiError,
    AuthenticationError,
    InsecureTransportError,
    LockedError,
    NeonClient,
    NetworkError,
    NotFoundError,
    OutcomeUnknownError,
    PasswordsNotStoredError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    RetryPolicy,
    Secret,
    ServerError,
    UnexpectedResponseError,
)

KEY = "napi_unit_test_key_0123456789abcdefghijklmnopqrstuvwxyz"
PASSWORD = "npg_SuperSecret123"
ROLE_JSON = {"branch_id": "br-a", "name": "app", "protected": False, "created_at": "2025-01-01T00:00:00Z",
             "updated_at": "2025-01-02T00:00:00Z"}


class Script:
    """A transport that answers from a list of callables/responses and records requests."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


def err(status, message="nope", headers=None):
    return httpx.Response(status, json={"code": "", "message": message, "request_id": "rid-1"}, headers=headers or {})


def make(script, **kw) -> NeonClient:
    sleeps = kw.pop("sleeps", [])

    async def fake_sleep(s):
        sleeps.append(s)

    return NeonClient(KEY, host="https://neon.example/api/v2", transport=httpx.MockTransport(script),
                      limiter=None, sleep=fake_sleep, **kw)


async def test_bearer_header_and_request_id_sent():
    script = Script(httpx.Response(200, json={"account_id": "u1", "auth_method": "api_key_user"}))
    async with make(script) as c:
        auth = await c.get_auth()
    assert auth.auth_method == "api_key_user" and not auth.is_org_key
    req = script.requests[0]
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["x-request-id"]
    assert str(req.url) == "https://neon.example/api/v2/auth"
    # httpx masks the header in reprs, so a traceback with locals cannot show the key.
    assert KEY not in repr(req.headers)


@pytest.mark.parametrize(
    "status,cls",
    [(400, Exception), (401, AuthenticationError), (403, PermissionDeniedError), (404, NotFoundError),
     (412, PasswordsNotStoredError), (423, LockedError), (429, RateLimitedError), (500, ServerError),
     (502, ServerError)],
)
async def test_typed_errors_carry_message_and_request_id(status, cls):
    script = Script(err(status, "role not found"))
    async with make(script, retry=RetryPolicy(max_attempts=1)) as c:
        with pytest.raises(cls) as info:
            await c.get_role("p-1", "br-1", "app")
    e = info.value
    assert e.status == status and e.message == "role not found" and e.request_id == "rid-1"
    assert "role not found" in str(e) and "rid-1" in str(e) and KEY not in str(e) + repr(e)


async def test_get_retries_5xx_423_429_and_network_then_succeeds():
    sleeps = []
    script = Script(err(500), err(423), err(429), httpx.ConnectError("boom"), httpx.ReadError("reset"),
                    httpx.Response(200, json={"role": ROLE_JSON}))
    async with make(script, sleeps=sleeps) as c:
        role = await c.get_role("p-1", "br-a", "app")
    assert role.name == "app"
    assert len(script.requests) == 6
    assert len(sleeps) == 5 and all(s > 0 for s in sleeps)
    # capped exponential with jitter: later waits are not shorter than the first cap allows
    policy = RetryPolicy()
    assert all(s <= policy.max_delay for s in sleeps)


async def test_get_gives_up_after_max_attempts():
    script = Script(err(503))
    async with make(script, retry=RetryPolicy(max_attempts=3)) as c:
        with pytest.raises(ServerError):
            await c.list_organizations()
    assert len(script.requests) == 3


async def test_retry_after_is_honoured():
    sleeps = []
    script = Script(err(429, "rate limit exceeded", {"Retry-After": "7"}), httpx.Response(200, json={"organizations": []}))
    async with make(script, sleeps=sleeps) as c:
        assert await c.list_organizations() == []
    assert 7.0 <= sleeps[0] <= 7.2


@pytest.mark.parametrize("status", [423, 429, 503])
async def test_mutation_retried_on_statuses_that_prove_nothing_happened(status):
    ok = httpx.Response(200, json={"role": dict(ROLE_JSON, password=PASSWORD), "operations": []})
    script = Script(err(status), ok)
    async with make(script) as c:
        result = await c.reset_role_password("p-1", "br-a", "app")
    assert result.role.password.reveal() == PASSWORD
    assert len(script.requests) == 2


@pytest.mark.parametrize("status,message", [
    (423, "project already has running conflicting operations, scheduling of new ones is prohibited"),
    (423, "endpoint is in some transitive state, could not suspend"),
    (422, "branch not ready yet"),
])
async def test_neons_not_now_answers_are_retried_with_backoff(status, message):
    ok = httpx.Response(200, json={"role": dict(ROLE_JSON, password=PASSWORD), "operations": []})
    sleeps = []
    script = Script(err(status, message), err(status, message), ok)
    async with make(script, sleeps=sleeps) as c:
        result = await c.reset_role_password("p-1", "br-a", "app")
    assert result.role.password.reveal() == PASSWORD
    assert len(script.requests) == 3 and len(sleeps) == 2 and 0 < sleeps[0] and sleeps[1] > RetryPolicy().base_delay / 2


@pytest.mark.parametrize("method", ["get", "reset"])
async def test_other_422_is_final(method):
    script = Script(err(422, "role name is not valid"))
    async with make(script) as c:
        with pytest.raises(ApiError) as info:
            if method == "get":
                await c.get_role("p-1", "br-a", "app")
            else:
                await c.reset_role_password("p-1", "br-a", "app")
    assert info.value.status == 422 and info.value.message == "role name is not valid"
    assert len(script.requests) == 1


async def test_branch_not_ready_gives_up_after_max_attempts():
    script = Script(err(422, "branch not ready yet"))
    async with make(script, retry=RetryPolicy(max_attempts=3)) as c:
        with pytest.raises(ApiError, match="branch not ready yet"):
            await c.create_role("p-1", "br-a", "x")
    assert len(script.requests) == 3


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_mutation_not_retried_on_other_5xx(status):
    script = Script(err(status))
    async with make(script) as c:
        with pytest.raises(ServerError):
            await c.reset_role_password("p-1", "br-a", "app")
    assert len(script.requests) == 1


@pytest.mark.parametrize("exc", [httpx.ReadError("x"), httpx.RemoteProtocolError("x"), httpx.ReadTimeout("x"),
                                 httpx.WriteError("x")])
async def test_lost_reset_answer_is_outcome_unknown_and_never_resent(exc):
    script = Script(exc, httpx.Response(200, json={"role": dict(ROLE_JSON, password=PASSWORD), "operations": []}))
    async with make(script) as c:
        with pytest.raises(OutcomeUnknownError) as info:
            await c.reset_role_password("p-1", "br-a", "app")
    assert len(script.requests) == 1
    assert isinstance(info.value, NetworkError)
    assert "may or may not" in str(info.value)


async def test_mutation_resent_when_connection_never_made():
    script = Script(httpx.ConnectError("refused"), httpx.Response(200, json={"role": dict(ROLE_JSON, password=PASSWORD),
                                                                             "operations": []}))
    async with make(script) as c:
        await c.reset_role_password("p-1", "br-a", "app")
    assert len(script.requests) == 2


async def test_unreachable_and_timeout_errors():
    async with make(Script(httpx.ConnectError("refused")), retry=RetryPolicy(max_attempts=2)) as c:
        with pytest.raises(NetworkError) as info:
            await c.get_auth()
    assert "could not reach" in str(info.value)
    async with make(Script(httpx.ReadTimeout("slow")), retry=RetryPolicy(max_attempts=2)) as c:
        with pytest.raises(RequestTimeoutError):
            await c.get_auth()


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(200, content=b"<html>oops</html>"), httpx.Response(200, json={"rolez": []}),
     httpx.Response(200, json={"roles": {"a": 1}}), httpx.Response(200, json={"roles": [{"name": 3}]}),
     httpx.Response(200, json={"roles": [dict(ROLE_JSON, created_at="yesterday")]})],
)
async def test_malformed_payloads_raise_unexpected_response(answer):
    async with make(Script(answer)) as c:
        with pytest.raises(UnexpectedResponseError):
            await c.list_roles("p-1", "br-a")


async def test_reset_without_password_is_unexpected():
    async with make(Script(httpx.Response(200, json={"role": ROLE_JSON, "operations": []}))) as c:
        with pytest.raises(UnexpectedResponseError):
            await c.reset_role_password("p-1", "br-a", "app")


@pytest.mark.parametrize("name", ["data team", "café_rw", "etl/loader", "o'brien", "50%off", "a?b#c"])
async def test_odd_names_are_one_encoded_path_segment(name):
    script = Script(httpx.Response(200, json={"role": dict(ROLE_JSON, name=name)}))
    async with make(script) as c:
        role = await c.get_role("p-1", "br-a", name)
    assert role.name == name
    raw = script.requests[0].url.raw_path.decode()
    last = raw.split("?")[0].rsplit("/", 1)[1]
    from urllib.parse import unquote

    assert unquote(last) == name and "/" not in last and "?" not in last and "#" not in last


def test_refuses_plain_http_to_non_loopback():
    with pytest.raises(InsecureTransportError):
        NeonClient(KEY, host="http://console.neon.tech/api/v2")
    with pytest.raises(InsecureTransportError):
        NeonClient(KEY, host="ftp://x/api/v2")
    for ok in ("http://127.0.0.1:8080/api/v2", "http://localhost:1/api/v2", "http://[::1]:9/api/v2",
               "https://console.neon.tech/api/v2"):
        NeonClient(KEY, host=ok)


def test_a_localhost_name_must_resolve_to_loopback_only(monkeypatch):
    """`*.localhost` is loopback only where the resolver follows RFC 6761; a name that resolves elsewhere (or
    not at all) gets no plain http, so the key never crosses a network unencrypted."""
    import socket

    real = socket.getaddrinfo

    def fake(host, *a, **kw):
        if host == "api.localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.7", 0))]
        if host == "gone.localhost":
            raise socket.gaierror("no such name")
        if host == "lo.localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
                    (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))]
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    for bad in ("http://api.localhost/api/v2", "http://gone.localhost:8/api/v2"):
        with pytest.raises(InsecureTransportError):
            NeonClient(KEY, host=bad)
    NeonClient(KEY, host="http://lo.localhost:8/api/v2")
    NeonClient(KEY, host="https://api.localhost/api/v2")  # TLS: no loopback needed


def test_env_names(monkeypatch):
    monkeypatch.setenv("NEON_API_KEY", KEY)
    monkeypatch.setenv("NEON_API_HOST", "http://127.0.0.1:9/api/v2/")
    c = NeonClient.from_env()
    assert c.base_url == "http://127.0.0.1:9/api/v2"
    assert KEY not in repr(c) and KEY not in repr(vars(c))
    monkeypatch.delenv("NEON_API_KEY")
    with pytest.raises(Exception, match="NEON_API_KEY"):
        NeonClient.from_env()


def test_default_host_is_neon_and_tls_verified():
    c = NeonClient(KEY)
    assert c.base_url == "https://console.neon.tech/api/v2"
    pool = c._http._transport._pool
    assert pool._ssl_context.verify_mode.name == "CERT_REQUIRED"


async def test_secrets_never_in_errors_logs_or_tracebacks(caplog):
    caplog.set_level(logging.DEBUG)
    answers = [
        httpx.Response(200, json={"role": dict(ROLE_JSON, password=PASSWORD), "operations": []}),
        httpx.Response(200, json={"password": PASSWORD}),
        httpx.Response(200, json={"uri": f"postgresql://app:{PASSWORD}@h/db"}),
        # an error body that echoes the password must not make it into exception text either way
        httpx.Response(500, json={"code": "", "message": "internal"}),
    ]
    async with make(Script(*answers), retry=RetryPolicy(max_attempts=1)) as c:
        r = await c.reset_role_password("p", "b", "app")
        pw = await c.reveal_role_password("p", "b", "app")
        uri = await c.get_connection_uri("p", database_name="db", role_name="app")
        try:
            await c.get_role("p", "b", "app")
        except ServerError:
            tb = traceback.format_exc()
    assert isinstance(r.role.password, Secret) and isinstance(pw, Secret) and isinstance(uri, Secret)
    assert pw.reveal() == PASSWORD and PASSWORD in uri.reveal()
    blob = caplog.text + tb + repr(r) + repr(pw) + repr(uri) + str(r) + f"{pw}" + json.dumps(
        [repr(x) for x in c.history])
    assert PASSWORD not in blob and KEY not in blob


def test_rich_traceback_with_locals_shows_no_secret():
    """Textual renders crashes with rich tracebacks that print locals; a Secret local must stay masked."""
    import io

    from rich.console import Console
    from rich.traceback import Traceback

    def explode(api_key: Secret, password: Secret):
        raise RuntimeError("boom")

    try:
        explode(Secret(KEY), Secret(PASSWORD))
    except RuntimeError:
        buf = io.StringIO()
        Console(file=buf, width=200).print(Traceback(show_locals=True))
    out = buf.getvalue()
    assert "Secret('********')" in out and KEY not in out and PASSWORD not in out


async def test_branch_creations_connection_uris_arrive_wrapped():
    uri = f"postgresql://neondb_owner:{PASSWORD}@ep-x.example/neondb"
    script = Script(httpx.Response(201, json={"connection_uris": [{"connection_uri": uri, "connection_parameters": {
        "database": "neondb", "password": PASSWORD, "role": "neondb_owner", "host": "h", "pooler_host": "p"}}]}))
    async with make(script) as c:
        data = await c.request("POST", "/projects/{project_id}/branches", "/projects/p-1/branches", body={})
    (details,) = data["connection_uris"]
    assert isinstance(details["connection_uri"], Secret) and details["connection_uri"].reveal() == uri
    assert isinstance(details["connection_parameters"]["password"], Secret)
    assert PASSWORD not in repr(data)
