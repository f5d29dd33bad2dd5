"""Discovery waits out transient failures (429, 5xx, network, 423) that outlast the client's own retries."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from rotation_helpers import org_of

from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.neon.errors import (
    AuthenticationError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)
from neon_tui.rotation.inventory import BACKOFF_CAP, Inventory
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.simulator import SimConfig, Simulator

# The client alone gives up after two quick tries.
IMPATIENT = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02, max_retry_after=0.05)
HOST = "https://neon-sim.invalid/api/v2"


class FakeTime:
    """A clock that moves only when someone sleeps; `outage_until` ends the simulator's faults."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_advance = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_advance is not None:
            self.on_advance(self.now)
        await asyncio.sleep(0)


def sim_with_outage(kinds, until: float, ft: FakeTime):
    sim = Simulator(SimConfig(op_seconds=0.05), clock=ft.clock)

    def advance(now):
        if now >= until:
            sim.inspect.set_faults(0.0)

    ft.on_advance = advance
    client = NeonClient(sim.api_key, host=HOST, transport=sim.transport(), retry=IMPATIENT, limiter=False,
                        sleep=ft.sleep)

    async def start_outage():
        await client.get_auth()  # the API answered once: the host is right
        sim.inspect.set_faults(1.0, kinds)

    return sim, client, start_outage


@pytest.mark.parametrize("kind,error", [("503", ServerError), ("500", ServerError), ("429", RateLimitedError),
                                        ("reset", NetworkError)])
async def test_planning_survives_an_outage_the_client_alone_does_not(kind, error):
    ft = FakeTime()
    sim, client, start_outage = sim_with_outage([kind], until=20.0, ft=ft)
    async with client:
        await start_outage()
        # The client on its own gives up at once...
        with pytest.raises(error):
            await client.list_organizations()
        assert ft.now < 1.0
        # ...the inventory keeps trying through every kind of listing until the outage ends.
        inv = Inventory(client, patience=60.0, sleep=ft.sleep, clock=ft.clock)
        orgs = await inv.load_organizations()
        assert [o.id for o in orgs] == sim.inspect.org_ids
        assert ft.now >= 20.0
        org = org_of(sim, "acme-prod")
        plan = await plan_from_selectors(inv, ["acme-prod"], org)
    p = sim.inspect.project_by_name("acme-prod")
    expected = {k for k in sim.inspect.login_roles() if k[0] == p.id}
    assert {t.key for t in plan.targets} == expected and expected
    # databases were loaded too, where they feed connection strings (branches with a compute)
    assert all(t.databases for t in plan.targets if t.endpoints) and any(t.endpoints for t in plan.targets)
    assert any(t.endpoints for t in plan.targets)  # and endpoints
    assert ft.now < 20.0 + 2 * BACKOFF_CAP  # it did not wait much longer than the outage


async def test_planning_survives_random_429_and_503_bursts():
    ft = FakeTime()
    sim = Simulator(SimConfig(op_seconds=0.05), clock=ft.clock)
    client = NeonClient(sim.api_key, host=HOST, transport=sim.transport(), retry=IMPATIENT, limiter=False,
                        sleep=ft.sleep)
    async with client:
        org = org_of(sim, "acme-prod")
        clean = await plan_from_selectors(Inventory(client), ["*"], org)
        sim.inspect.set_faults(0.4, ["429", "503"])
        sim.inspect.clear_requests()
        inv = Inventory(client, patience=600.0, sleep=ft.sleep, clock=ft.clock)
        await inv.load_organizations()
        faulty = await plan_from_selectors(inv, ["*"], org)
    assert sum(1 for r in sim.inspect.requests if r.status in (429, 503)) > 5  # faults really happened
    assert [t.key for t in faulty.targets] == [t.key for t in clean.targets]
    assert [s.label for s in faulty.skipped] == [s.label for s in clean.skipped]


class Script:
    def __init__(self, handler):
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request, len(self.requests))


def err(status, headers=None):
    return httpx.Response(status, json={"code": "", "message": "nope", "request_id": "rid"}, headers=headers or {})


def scripted(handler, ft, *, patience=30.0):
    script = Script(handler)
    client = NeonClient("napi_test", host="https://neon.example/api/v2", transport=httpx.MockTransport(script),
                        retry=RetryPolicy(max_attempts=1), limiter=False, sleep=ft.sleep)
    return script, client, Inventory(client, patience=patience, sleep=ft.sleep, clock=ft.clock)


def project_json(i: int) -> dict:
    return {"id": f"p-{i:04d}", "name": f"proj-{i}", "region_id": "aws-us-east-2", "pg_version": 17,
            "store_passwords": True, "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}


async def test_retry_after_is_honoured():
    ft = FakeTime()

    def handler(request, n):
        if n == 1:
            return err(429, {"Retry-After": "7"})
        return httpx.Response(200, json={"projects": []})

    script, client, inv = scripted(handler, ft)
    async with client:
        assert await inv.load_projects("org-1") == []
    assert len(script.requests) == 2
    assert len(ft.sleeps) == 1 and 7.0 <= ft.sleeps[0] <= 7.3


@pytest.mark.parametrize("answer,error", [
    (lambda: err(401), AuthenticationError),
    (lambda: err(403), PermissionDeniedError),
    (lambda: err(404), NotFoundError),
    (lambda: httpx.Response(200, content=b"<html>not json</html>"), UnexpectedResponseError),
    (lambda: httpx.Response(200, json={"nothing": []}), UnexpectedResponseError),
])
async def test_non_transient_errors_propagate_at_once(answer, error):
    ft = FakeTime()
    script, client, inv = scripted(lambda request, n: answer(), ft)
    async with client:
        with pytest.raises(error):
            await inv.load_projects("org-1")
    assert len(script.requests) == 1 and ft.sleeps == []


async def test_patience_is_bounded_and_backoff_capped():
    ft = FakeTime()
    script, client, inv = scripted(lambda request, n: err(503), ft, patience=100.0)
    async with client:
        with pytest.raises(ServerError):
            await inv.load_projects("org-1")
    assert ft.now <= 100.0 + 1e-9
    assert len(script.requests) >= 8  # it kept trying...
    assert max(ft.sleeps) <= BACKOFF_CAP  # ...with capped backoff
    assert ft.sleeps[0] < ft.sleeps[3]  # that grows


async def test_a_failed_project_page_is_retried_alone():
    ft = FakeTime()
    first = [project_json(i) for i in range(400)]
    second = [project_json(i) for i in range(400, 403)]
    failures = {"c1": 2}

    def handler(request, n):
        cursor = request.url.params.get("cursor")
        if cursor is None:
            return httpx.Response(200, json={"projects": first, "pagination": {"cursor": "c1"}})
        if failures[cursor]:
            failures[cursor] -= 1
            return err(503)
        return httpx.Response(200, json={"projects": second, "pagination": {"cursor": "p-0402"}})

    script, client, inv = scripted(handler, ft)
    pages = []
    async with client:
        found = await inv.load_projects("org-1", on_page=pages.append)
    assert [len(p) for p in pages] == [400, 3] and len(found) == 403 and len(inv.projects) == 403
    cursors = [r.url.params.get("cursor") for r in script.requests]
    assert cursors == [None, "c1", "c1", "c1"]


async def test_an_api_that_never_answered_is_not_waited_for():
    """Connection refused from the first request on is a wrong NEON_API_HOST: report it, don't wait 2 minutes."""
    ft = FakeTime()
    refused = []

    def handler(request, n):
        refused.append(request)
        raise httpx.ConnectError("connection refused")

    script, client, inv = scripted(handler, ft, patience=120.0)
    async with client:
        with pytest.raises(NetworkError, match="could not reach"):
            await inv.load_organizations()
    assert ft.sleeps == [] and len(refused) == 1  # the client's own single attempt, no inventory retries


async def test_network_errors_after_the_api_answered_are_waited_out():
    ft = FakeTime()

    def handler(request, n):
        if n == 1:
            return httpx.Response(200, json={"projects": [project_json(1)]})
        if n < 6:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json={"projects": [project_json(2)]})

    script, client, inv = scripted(handler, ft)
    async with client:
        assert [p.project.id for p in await inv.load_projects("org-1")] == ["p-0001"]
        assert [p.project.id for p in await inv.load_projects("org-2")] == ["p-0002"]
    assert len(ft.sleeps) == 4 and len(script.requests) == 6


async def test_an_org_key_is_not_kept_waiting_on_the_organizations_list():
    ft = FakeTime()

    def handler(request, n):
        if request.url.path.endswith("/auth"):
            return httpx.Response(200, json={"account_id": "a", "auth_method": "api_key_org"})
        return err(503)

    script, client, inv = scripted(handler, ft)
    async with client:
        assert await inv.load_organizations() == []
    assert ft.sleeps == []
