"""The client against the simulator, in-process and over loopback HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from neon_tui.neon import (
    LockedError,
    NeonClient,
    NetworkError,
    OutcomeUnknownError,
    RateLimitedError,
    RateLimiter,
    RateLimits,
    RetryPolicy,
    ServerError,
)
from neon_tui.neon.errors import AuthenticationError, BadRequestError, PasswordsNotStoredError
from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.serve import serve_in_thread

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01, max_retry_after=0.05)
IN_PROCESS = "https://neon-sim.invalid/api/v2"


def client_for(sim: Simulator, host: str = IN_PROCESS, **kw) -> NeonClient:
    kw.setdefault("retry", FAST)
    kw.setdefault("limiter", None)
    transport = sim.transport() if host == IN_PROCESS else None
    return NeonClient(sim.api_key, host=host, transport=transport, **kw)


async def test_many_page_project_listing_cursor_style():
    sim = Simulator(SimConfig(projects=25, branches=1, roles=0))
    org = sim.inspect.primary_org_id
    async with client_for(sim) as c:
        pages = [p async for p in c.iter_project_pages(org, page_size=4)]
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 4, 1]
    ids = [p.id for page in pages for p in page]
    assert len(ids) == len(set(ids)) == 25 and set(ids) == set(sim.inspect.project_ids(org))


async def test_many_page_branch_listing_next_style():
    sim = Simulator(SimConfig(projects=1, branches=30, roles=0))
    pid = sim.inspect.project_ids(sim.inspect.primary_org_id)[0]
    async with client_for(sim) as c:
        pages = [p async for p in c.iter_branch_pages(pid, page_size=7)]
    ids = [b.id for page in pages for b in page]
    assert len(pages) == 5 and len(ids) == len(set(ids)) == len(sim.inspect.branch_ids(pid)) == 30


async def test_branch_listing_across_neons_100_cap():
    """250 branches: Neon serves 100 a page whatever the limit and sends `next` after the short last page too;
    the client and the inventory see every branch exactly once."""
    from neon_tui.rotation.inventory import Inventory

    sim = Simulator(SimConfig(projects=1, branches=250, roles=0))
    pid = sim.inspect.project_ids(sim.inspect.primary_org_id)[0]
    async with client_for(sim) as c:
        sim.inspect.clear_requests()
        pages = [p async for p in c.iter_branch_pages(pid, page_size=100)]
        assert [len(p) for p in pages] == [100, 100, 50]
        # the short page still carried `next`: one more request finds the empty page that ends the walk
        listed = [r for r in sim.inspect.requests if r.route == "GET /projects/{project_id}/branches"]
        assert len(listed) == 4
        ids = [b.id for b in await c.list_branches(pid)]
        assert len(ids) == len(set(ids)) == 250 and set(ids) == set(sim.inspect.branch_ids(pid))
        # asking for more than the cap still gets 100 a page, and nothing is lost
        big = [p async for p in c.iter_branch_pages(pid, page_size=1000)]
        assert [len(p) for p in big] == [100, 100, 50]
        inv = Inventory(c)
        project = next(p for p in await inv.load_projects(sim.inspect.primary_org_id) if p.project.id == pid)
        branches = await inv.load_branches(project)
        assert set(branches) == set(ids)

        def walk(parent):
            for child in project.children(parent):
                yield child.branch.id
                yield from walk(child.branch.id)

        tree = list(walk(None))
        assert len(tree) == len(set(tree)) == 250


async def test_personal_key_needs_org_id_with_neons_message():
    sim = Simulator(SimConfig())
    async with client_for(sim) as c:
        with pytest.raises(BadRequestError, match="org_id is required"):
            await c.list_projects()
        org_key = sim.org_api_key(sim.inspect.primary_org_id)
    async with NeonClient(org_key, host=IN_PROCESS, transport=sim.transport(), limiter=None, retry=FAST) as oc:
        assert (await oc.get_auth()).is_org_key
        assert {p.id for p in await oc.list_projects()} == set(sim.inspect.project_ids(sim.inspect.primary_org_id))


async def test_odd_role_names_round_trip():
    sim = Simulator(SimConfig(op_seconds=0))
    odd = [k for k in sim.inspect.login_roles() if any(ch in k[2] for ch in " /'é")]
    assert {k[2] for k in odd} >= {"etl/loader", "café_rw", "o'brien"}
    async with client_for(sim) as c:
        for pid, bid, name in odd:
            role = await c.get_role(pid, bid, name)
            assert role.name == name
            result = await c.reset_role_password(pid, bid, name)
            assert result.role.name == name
            # op_seconds=0: the reset's operations are already done, so the new password is the live one
            assert sim.inspect.pending_password(pid, bid, name) is None
            assert sim.inspect.accepts(pid, bid, name, result.role.password.reveal())
            assert sim.inspect.reset_count(pid, bid, name) == 1


async def test_reveal_412_when_passwords_not_stored():
    sim = Simulator(SimConfig())
    legacy = sim.inspect.project_by_name("acme-legacy-billing")
    bid = sim.inspect.default_branch_id(legacy.id)
    async with client_for(sim) as c:
        with pytest.raises(PasswordsNotStoredError):
            await c.reveal_role_password(legacy.id, bid, "app")


@pytest.mark.parametrize(
    "kind,get_error,reset_error,applied",
    [
        ("500", ServerError, ServerError, False),
        ("503", ServerError, ServerError, False),
        ("429", RateLimitedError, RateLimitedError, False),
        ("reset", NetworkError, OutcomeUnknownError, False),
        ("drop_reset", None, OutcomeUnknownError, True),
        ("423", None, LockedError, False),
    ],
)
async def test_every_injected_fault_maps_to_its_typed_error(kind, get_error, reset_error, applied):
    sim = Simulator(SimConfig(op_seconds=0))
    pid, bid, name = next(k for k in sim.inspect.login_roles() if k[2] == "app")
    async with client_for(sim) as c:
        sim.inspect.set_faults(1.0, (kind,))
        if get_error is not None:
            with pytest.raises(get_error):
                await c.get_role(pid, bid, name)
        sim.inspect.clear_requests()
        with pytest.raises(reset_error):
            await c.reset_role_password(pid, bid, name)
        sim.inspect.set_faults(0.0)
        sent = [r for r in sim.inspect.requests if r.route.endswith("reset_password")]
        # mutations are resent only on 423/429/503; a lost answer is never resent
        expected = FAST.max_attempts if kind in ("423", "429", "503") else 1
        assert len(sent) == expected, [r.fault for r in sent]
        assert sim.inspect.reset_count(pid, bid, name) == (1 if applied else 0)


@pytest.mark.slow
async def test_reads_survive_a_fault_rate():
    sim = Simulator(SimConfig(projects=12, branches=3, roles=1, fault_rate=0.3,
                              faults=("500", "503", "429", "reset")))
    org = sim.inspect.primary_org_id
    # 429 bursts last up to a second: the backoff must be able to outlast one
    async with client_for(sim, retry=RetryPolicy(max_attempts=12, base_delay=0.05, max_delay=0.4,
                                                 max_retry_after=1.2)) as c:
        projects = await c.list_projects(org)
        branches = await asyncio.gather(*(c.list_branches(p.id) for p in projects))
    assert len(projects) == 12 and all(len(b) == 3 for b in branches)
    assert any(r.fault for r in sim.inspect.requests)


@pytest.mark.slow
async def test_limiter_keeps_the_account_under_neons_limit():
    sim = Simulator(SimConfig(rate_limit="neon"))
    pid = sim.inspect.project_by_name("acme-prod").id
    bid = sim.inspect.default_branch_id(pid)
    # a burst of 100 reads on one route: Neon allows 40 per second per route
    async with client_for(sim, limiter=RateLimiter(RateLimits(margin_seconds=0.05)),
                          retry=RetryPolicy(max_attempts=1)) as c:
        t0 = time.monotonic()
        await asyncio.gather(*(c.list_roles(pid, bid) for _ in range(100)))
        took = time.monotonic() - t0
    assert not [r for r in sim.inspect.requests if r.status == 429]
    assert 2.0 <= took < 4.0  # 100 requests at 40/s: two full windows of waiting, no more
    # the same burst without the limiter is refused by the simulated Neon
    sim2 = Simulator(SimConfig(rate_limit="neon"))
    async with client_for(sim2, retry=RetryPolicy(max_attempts=1)) as c:
        results = await asyncio.gather(*(c.list_roles(pid, bid) for _ in range(100)), return_exceptions=True)
    assert sum(isinstance(r, RateLimitedError) for r in results) == 60


async def test_revoked_key_is_refused_at_once():
    sim = Simulator(SimConfig())
    async with client_for(sim) as c:
        await c.get_auth()
        sim.inspect.revoke_key(sim.api_key)
        with pytest.raises(AuthenticationError):
            await c.get_auth()


async def test_api_keys_personal_and_org():
    sim = Simulator(SimConfig())
    org = sim.inspect.primary_org_id
    async with client_for(sim) as c:
        before = await c.list_api_keys()
        created = await c.create_api_key("ci-deploy")
        assert created.key.reveal().startswith("napi_") and "napi_" not in repr(created)
        assert {k.id for k in await c.list_api_keys()} == {k.id for k in before} | {created.id}
        revoked = await c.revoke_api_key(created.id)
        assert revoked.revoked
        org_key = await c.create_org_api_key(org, "org-ci")
        assert any(k.id == org_key.id for k in await c.list_org_api_keys(org))
        assert (await c.revoke_org_api_key(org, org_key.id)).revoked


async def test_endpoints_databases_uri_and_allowed_ips():
    sim = Simulator(SimConfig(op_seconds=0))
    pid = sim.inspect.project_by_name("acme-prod").id
    bid = sim.inspect.default_branch_id(pid)
    async with client_for(sim) as c:
        eps = await c.list_endpoints(pid)
        branch_eps = await c.list_endpoints(pid, bid)
        assert {e.id for e in branch_eps} <= {e.id for e in eps}
        dbs = await c.list_databases(pid, bid)
        uri = await c.get_connection_uri(pid, database_name=dbs[0].name, role_name="app", branch_id=bid)
        pooled = await c.get_connection_uri(pid, database_name=dbs[0].name, role_name="app", branch_id=bid,
                                            pooled=True)
        assert sim.inspect.password(pid, bid, "app") in uri.reveal()
        assert "-pooler." in pooled.reveal() and "-pooler." not in uri.reveal()
        project, _ = await c.set_allowed_ips(pid, ["203.0.113.0/24"])
        assert project.allowed_ips == ("203.0.113.0/24",)
        assert (await c.get_project(pid)).allowed_ips == ("203.0.113.0/24",)
        op_page, _ = await c.list_operations(pid)
        assert isinstance(op_page, list)


async def test_over_loopback_http():
    sim = Simulator(SimConfig(op_seconds=0.05))
    pid, bid, name = next(k for k in sim.inspect.login_roles() if k[2] == "etl/loader")
    with serve_in_thread(sim) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api/v2")
        async with client_for(sim, host=url) as c:
            orgs = await c.list_organizations()
            assert orgs
            result = await c.reset_role_password(pid, bid, name)
            assert result.operations or result.role.password
            await asyncio.sleep(0.1)
            sim.inspect.set_faults(1.0, ("drop_reset",))
            with pytest.raises(OutcomeUnknownError):
                await c.reset_role_password(pid, bid, name)
            sim.inspect.set_faults(1.0, ("reset",))
            with pytest.raises(NetworkError):
                await c.get_role(pid, bid, name)
            sim.inspect.set_faults(0.0)
    assert sim.inspect.reset_count(pid, bid, name) == 2


async def test_unreachable_api_is_a_clear_network_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    async with NeonClient("napi_x", host=f"http://127.0.0.1:{port}/api/v2", limiter=None, retry=FAST) as c:
        with pytest.raises(NetworkError, match="could not reach"):
            await c.get_auth()


async def test_client_waits_out_not_ready_lock_and_starting_compute():
    """A reset on a branch still being created meets 422 "branch not ready yet", then the project's 423; one on
    a compute that is starting meets 423 "endpoint is in some transitive state": the client backs off through
    all of them and the reset happens exactly once."""
    sim = Simulator(SimConfig(op_seconds=0.4))
    insp = sim.inspect
    pid = insp.project_by_name("acme-prod").id
    main = insp.default_branch_id(pid)
    patient = RetryPolicy(max_attempts=12, base_delay=0.05, max_delay=0.2)
    async with client_for(sim, retry=patient) as c:
        # the client has no create_branch: create it with a plain HTTP request to the same simulator
        async with httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url,
                                     headers={"Authorization": f"Bearer {sim.api_key}"}) as http:
            r = await http.post(f"/projects/{pid}/branches", json={"branch": {"parent_id": main},
                                                                   "endpoints": [{"type": "read_write"}]})
        fresh = r.json()["branch"]["id"]
        result = await c.reset_role_password(pid, fresh, "app")
        statuses = [(rec.status, rec.path.endswith("reset_password")) for rec in c.history]
        assert (422, True) in statuses and (423, True) in statuses and statuses[-1] == (200, True)
        assert insp.reset_count(pid, fresh, "app") == 1 and result.role.password is not None
        await asyncio.sleep(0.5)  # the reset's operations finish
        staging = insp.branch_by_name(pid, "staging").id
        insp.wake_endpoint(sim.account.projects[pid].rw_endpoint(staging).id)
        c.history.clear()
        await c.reset_role_password(pid, staging, "app")
        assert [rec.status for rec in c.history][0] == 423 and c.history[-1].status == 200
        assert insp.reset_count(pid, staging, "app") == 1
