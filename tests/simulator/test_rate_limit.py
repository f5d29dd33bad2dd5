"""Neon's documented rate limits: 40 requests per second per route and 700 per sliding minute."""

from __future__ import annotations

from sim_helpers import client_for, make_sim


async def test_per_route_burst_limit(clock, validator):
    sim = make_sim(clock, rate_limit="neon")
    pid = sim.inspect.project_ids()[0]
    async with client_for(sim, validator=validator) as c:
        ok = [(await c.get(f"/projects/{pid}")).status_code for _ in range(40)]
        assert ok == [200] * 40
        r = await c.get(f"/projects/{pid}")
        assert r.status_code == 429 and r.json()["message"] == "rate limit exceeded"
        assert "retry-after" not in r.headers
        # Same template, other project id: still the same route.
        other = sim.inspect.project_ids()[1]
        assert (await c.get(f"/projects/{other}")).status_code == 429
        assert (await c.get(f"/projects/{pid}/branches")).status_code == 200  # another route
        clock.advance(1.0)
        assert (await c.get(f"/projects/{pid}")).status_code == 200


async def test_account_limit_per_sliding_minute(clock):
    sim = make_sim(clock, rate_limit="neon")
    async with client_for(sim) as c:
        for i in range(700):
            assert (await c.get("/auth")).status_code == 200, i
            clock.advance(0.05)  # 20/s: under the per-route burst limit
        assert (await c.get("/auth")).status_code == 429
        assert (await c.get("/users/me")).status_code == 429  # the minute budget is account-wide
        clock.advance(60 - 700 * 0.05 + 0.01)  # the first request leaves the window
        assert (await c.get("/auth")).status_code == 200
        assert (await c.get("/auth")).status_code == 429
    assert sum(1 for r in sim.inspect.requests if r.status == 429) == 3


async def test_rate_limit_off_by_default(sim, clock):
    async with client_for(sim) as c:
        for _ in range(60):
            assert (await c.get("/auth")).status_code == 200
