"""Stateful behaviour: password resets and their operations, locks, inheritance, keys and access."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sim_helpers import client_for, make_sim, role_path

ODD_NAMES = ("data team", "café_rw", "etl/loader", "o'brien")


def _names(sim):
    insp = sim.inspect
    prod = insp.project_by_name("acme-prod").id
    return insp, prod, insp.default_branch_id(prod)


async def test_reset_applies_when_operations_finish(sim, client, clock):
    insp, pid, main = _names(sim)
    old = insp.password(pid, main, "app")
    uri_params = {"database_name": "neondb", "role_name": "app"}
    r = await client.post(role_path(pid, main, "app", "/reset_password"))
    assert r.status_code == 200
    role, ops = r.json()["role"], r.json()["operations"]
    new = role["password"]
    assert new.startswith("npg_") and len(new) == 16 and new != old
    assert role["updated_at"] > role["created_at"]  # changed on reset
    rw = sim.account.projects[pid].rw_endpoint(main).id
    assert [(o["action"], o["status"], o["endpoint_id"]) for o in ops] == [
        ("apply_config", "running", rw), ("suspend_compute", "scheduling", rw)]
    assert insp.accepts(pid, main, "app", old) and not insp.accepts(pid, main, "app", new)
    assert insp.pending_password(pid, main, "app") == new
    assert old in (await client.get(f"/projects/{pid}/connection_uri", params=uri_params)).json()["uri"]

    async def statuses():
        return [(await client.get(f"/projects/{pid}/operations/{o['id']}")).json()["operation"]["status"] for o in ops]

    clock.advance(1.3)  # past 0.6 * op_seconds
    assert await statuses() == ["finished", "running"]
    assert insp.password(pid, main, "app") == old
    clock.advance(0.7)
    assert await statuses() == ["finished", "finished"]
    assert insp.password(pid, main, "app") == new and not insp.accepts(pid, main, "app", old)
    assert insp.pending_password(pid, main, "app") is None
    assert insp.reset_count(pid, main, "app") == 1
    assert (await client.get(role_path(pid, main, "app", "/reveal_password"))).json() == {"password": new}
    uri = (await client.get(f"/projects/{pid}/connection_uri", params={**uri_params, "pooled": "true"})).json()["uri"]
    host = sim.account.projects[pid].endpoints[rw].pooler_host
    assert uri == f"postgresql://app:{new}@{host}/neondb?sslmode=require&channel_binding=require"
    # Other branches keep their passwords: a reset is per branch.
    staging = insp.branch_by_name(pid, "staging").id
    assert insp.reset_count(pid, staging, "app") == 0


async def test_branch_without_compute_changes_at_once(sim, client):
    insp, pid, _ = _names(sim)
    bare = insp.branch_by_name(pid, "preview/pr-157").id
    r = await client.post(role_path(pid, bare, "app", "/reset_password"))
    assert r.json()["operations"] == []
    assert insp.password(pid, bare, "app") == r.json()["role"]["password"]
    assert not insp.locked(pid)


async def test_mutations_locked_while_operations_run(sim, client, clock):
    insp, pid, main = _names(sim)
    assert (await client.post(role_path(pid, main, "app", "/reset_password"))).status_code == 200
    locked = [
        client.post(role_path(pid, main, "app", "/reset_password")),
        client.post(f"/projects/{pid}/branches/{main}/roles", json={"role": {"name": "x"}}),
        client.delete(role_path(pid, main, "migrator")),
        client.post(f"/projects/{pid}/branches", json={"branch": {"parent_id": main}}),
        client.patch(f"/projects/{pid}", json={"project": {"name": "renamed"}}),
    ]
    for call in locked:
        r = await call
        assert r.status_code == 423
        assert r.json()["message"] == ("project already has running conflicting operations, scheduling of new ones is "
                                     "prohibited")
    assert (await client.get(f"/projects/{pid}/branches/{main}/roles")).status_code == 200
    other = insp.project_by_name("acme-analytics").id
    other_main = insp.default_branch_id(other)
    assert (await client.post(role_path(other, other_main, "readonly", "/reset_password"))).status_code == 200
    clock.advance(2.0)
    assert (await client.post(role_path(pid, main, "readonly", "/reset_password"))).status_code == 200


async def test_branch_creation_copies_passwords(sim, client, clock):
    insp, pid, main = _names(sim)
    staging = insp.branch_by_name(pid, "staging").id
    pr142 = insp.branch_by_name(pid, "preview/pr-142").id
    # The account was built the same way: staging came from protected main, pr-142 from staging.
    assert insp.password(pid, staging, "app") != insp.password(pid, main, "app")
    assert insp.password(pid, pr142, "app") == insp.password(pid, staging, "app")
    assert "svc_billing" in insp.role_names(pid, main) and "svc_billing" not in insp.role_names(pid, staging)

    r = await client.post(f"/projects/{pid}/branches", json={"branch": {"parent_id": staging, "name": "preview/x"}})
    assert r.status_code == 201 and r.json()["endpoints"] == []
    child = r.json()["branch"]
    assert child["parent_id"] == staging and child["current_state"] == "init"
    for role in insp.role_names(pid, staging):
        assert insp.password(pid, child["id"], role) == insp.password(pid, staging, role)
    clock.advance(2)
    r = await client.post(f"/projects/{pid}/branches", json={"branch": {"parent_id": main, "name": "dev/new"},
                                                              "endpoints": [{"type": "read_write"}]})
    child2 = r.json()["branch"]["id"]
    assert len(r.json()["endpoints"]) == 1
    for role in insp.role_names(pid, main):
        if insp.password(pid, main, role) is not None:
            assert insp.password(pid, child2, role) != insp.password(pid, main, role)
    clock.advance(2)
    got = (await client.get(f"/projects/{pid}/branches/{child['id']}")).json()["branch"]
    assert got["current_state"] == "ready"


async def test_store_passwords_false(sim, client):
    insp = sim.inspect
    pid = insp.project_by_name("acme-legacy-billing").id
    main = insp.default_branch_id(pid)
    r = await client.get(role_path(pid, main, "app", "/reveal_password"))
    assert r.status_code == 412 and r.json()["code"] == ""
    # Resetting still works and returns the new password once.
    r = await client.post(role_path(pid, main, "app", "/reset_password"))
    assert r.status_code == 200 and r.json()["role"]["password"].startswith("npg_")


async def test_demo_account_shape(sim):
    insp = sim.inspect
    acct = sim.account
    assert len(acct.orgs) == 3 and {o.managed_by for o in acct.orgs} == {"console", "vercel"}
    assert 6 <= len(acct.projects) <= 10
    roles = [r for p in acct.projects.values() for b in p.branches.values() for r in b.roles.values()]
    assert any(r.no_login for r in roles) and any(r.protected for r in roles)
    assert set(ODD_NAMES) <= {r.name for r in roles}
    assert any(not p.store_passwords for p in acct.projects.values())
    branches = [b for p in acct.projects.values() for b in p.branches.values()]
    assert any(b.protected for b in branches)
    assert any(not p.branch_endpoints(b.id) for p in acct.projects.values() for b in p.branches.values())
    assert any(e.type == "read_only" for p in acct.projects.values() for e in p.endpoints.values())

    def depth(p, b):
        return 0 if b.parent_id is None else 1 + depth(p, p.branches[b.parent_id])

    assert max(depth(p, b) for p in acct.projects.values() for b in p.branches.values()) == 2
    for p in acct.projects.values():
        assert sum(b.default for b in p.branches.values()) == 1
        assert all(e.host.startswith(e.id + ".c-") and e.host.endswith(".aws.neon.tech") for e in p.endpoints.values())
    assert len(insp.login_roles()) > 40


async def test_odd_role_names_round_trip(sim, client, clock):
    insp = sim.inspect
    found = 0
    for pid in insp.project_ids():
        for branch in insp.branches(pid):
            for name in ODD_NAMES:
                if name not in branch.roles:
                    continue
                found += 1
                got = (await client.get(role_path(pid, branch.id, name))).json()["role"]
                assert got["name"] == name
                clock.advance(5)
                r = await client.post(role_path(pid, branch.id, name, "/reset_password"))
                assert r.status_code == 200 and r.json()["role"]["name"] == name
                clock.advance(5)
                assert insp.password(pid, branch.id, name) == r.json()["role"]["password"]
                assert insp.reset_count(pid, branch.id, name) == 1
    assert found >= 4
    assert any("/roles/etl%2Floader/reset_password" in rec.path for rec in insp.requests)
    pid = insp.project_by_name("acme-analytics").id
    main = insp.default_branch_id(pid)
    uri = (await client.get(f"/projects/{pid}/connection_uri",
                            params={"database_name": "warehouse", "role_name": "café_rw"})).json()["uri"]
    assert uri.startswith("postgresql://caf%C3%A9_rw:npg_") and "/warehouse?" in uri
    assert insp.accepts(pid, main, "café_rw", uri.split(":")[2].split("@")[0])


async def test_personal_key_needs_org_id(sim, client):
    r = await client.get("/projects")
    assert r.status_code == 400
    assert r.json()["message"] == "org_id is required, you can find it on your organization settings page"


async def test_org_key_infers_org(sim, validator):
    insp = sim.inspect
    org = insp.org_ids[1]
    key = sim.org_api_key(org)
    assert sim.org_api_key(org) == key
    async with client_for(sim, key=key, validator=validator) as c:
        assert (await c.get("/auth")).json()["auth_method"] == "api_key_org"
        listed = (await c.get("/projects")).json()["projects"]
        assert sorted(p["id"] for p in listed) == sorted(insp.project_ids(org))
        assert (await c.get("/projects", params={"org_id": org})).status_code == 200
        assert (await c.get("/projects", params={"org_id": insp.org_ids[0]})).status_code == 403
        foreign = insp.project_ids(insp.org_ids[0])[0]
        assert (await c.get(f"/projects/{foreign}")).status_code == 403
        assert (await c.get("/users/me/organizations")).json()["organizations"][0]["id"] == org
        scoped = (await c.post(f"/organizations/{org}/api_keys",
                               json={"key_name": "one-project", "project_id": listed[0]["id"]})).json()
    async with client_for(sim, key=scoped["key"], validator=validator) as c:
        assert [p["id"] for p in (await c.get("/projects")).json()["projects"]] == [listed[0]["id"]]
        if len(listed) > 1:
            assert (await c.get(f"/projects/{listed[1]['id']}")).status_code == 403


async def test_revoked_key_is_rejected_at_once(sim, client, validator):
    created = (await client.post("/api_keys", json={"key_name": "leaked"})).json()
    async with client_for(sim, key=created["key"], validator=validator) as c:
        assert (await c.get("/auth")).status_code == 200
        assert (await client.delete(f"/api_keys/{created['id']}")).status_code == 200
        assert (await c.get("/auth")).status_code == 401
    listed = (await client.get("/api_keys")).json()
    assert created["id"] not in [k["id"] for k in listed]
    org_key = sim.org_api_key(sim.inspect.primary_org_id)
    sim.inspect.revoke_key(org_key)
    async with client_for(sim, key=org_key, validator=validator) as c:
        assert (await c.get("/auth")).status_code == 401
    assert sim.org_api_key(sim.inspect.primary_org_id) != org_key  # a fresh one is minted


async def test_missing_bearer_and_request_id(sim, client, validator):
    async with client_for(sim, validator=validator) as c:
        r = await c.get("/auth", headers={"Authorization": ""})
        assert r.status_code == 401
    r = await client.get("/auth", headers={"X-Request-ID": "trace-123"})
    assert r.headers["x-neon-ret-request-id"] == "trace-123"
    r = await client.get("/projects", headers={"X-Request-ID": "trace-456"})
    assert r.json()["request_id"] == "trace-456"
    rec = sim.inspect.requests[-1]
    assert (rec.method, rec.route, rec.status, rec.key_id) == ("GET", "GET /projects", 400, rec.key_id)
    assert rec.key_id is not None


async def test_operation_failure_keeps_old_password(sim, client, clock):
    insp, pid, main = _names(sim)
    old = insp.password(pid, main, "app")
    insp.set_faults(1.0, ["op_failed"])
    r = await client.post(role_path(pid, main, "app", "/reset_password"))
    insp.set_faults(0.0)
    assert r.status_code == 200 and insp.requests[-1].fault == "op_failed"
    clock.advance(5)
    ops = [(await client.get(f"/projects/{pid}/operations/{o['id']}")).json()["operation"]
           for o in r.json()["operations"]]
    assert ops[0]["status"] == "failed" and ops[0]["error"]
    assert ops[1]["status"] == "cancelled"
    assert insp.password(pid, main, "app") == old and insp.pending_password(pid, main, "app") is None
    assert insp.reset_count(pid, main, "app") == 1


def _fingerprint(sim):
    acct = sim.account
    return [(o.id, o.name) for o in acct.orgs] + [sim.api_key] + [
        (p.id, p.name, b.id, b.name, b.parent_id, r.name, r.password, tuple(sorted(p.endpoints)))
        for p in acct.projects.values() for b in p.branches.values() for r in b.roles.values()]


def test_same_seed_same_account(clock):
    assert _fingerprint(make_sim(clock, seed=3)) == _fingerprint(make_sim(clock, seed=3))
    assert _fingerprint(make_sim(clock, seed=3)) != _fingerprint(make_sim(clock, seed=4))
    sized = dict(seed=11, projects=6, branches=5, roles=3)
    assert _fingerprint(make_sim(clock, **sized)) == _fingerprint(make_sim(clock, **sized))


def test_explicit_sizes(clock):
    sim = make_sim(clock, projects=12, branches=6, roles=4, api_key="napi_fixed")
    insp = sim.inspect
    assert sim.api_key == "napi_fixed"
    primary = insp.project_ids(insp.primary_org_id)
    assert len(primary) == 12
    for pid in primary:
        branches = insp.branches(pid)
        assert len(branches) == 6
        seen = set()
        for b in branches:
            assert b.parent_id is None or b.parent_id in seen
            seen.add(b.id)
            assert insp.role_names(pid, b.id) == ["neondb_owner", "app", "readonly", "migrator", "analytics"]
    assert all(1 <= len(insp.project_ids(org)) <= 2 for org in insp.org_ids[1:])


def test_config_validation():
    from neon_tui.simulator import SimConfig

    with pytest.raises(ValueError):
        SimConfig(rate_limit="sometimes")
    with pytest.raises(ValueError):
        SimConfig(faults=("boom",))
    assert "etl%2Floader" == quote("etl/loader", safe="")


async def test_latency_is_added_per_request(clock):
    import time

    sim = make_sim(clock, latency_ms=40)
    async with client_for(sim) as c:
        started = time.perf_counter()
        assert (await c.get("/auth")).status_code == 200
        assert time.perf_counter() - started >= 0.04


LOCKED = "project already has running conflicting operations, scheduling of new ones is prohibited"
TRANSITIVE = "endpoint is in some transitive state, could not suspend"


async def test_branch_not_ready_then_locked_then_accepted(sim, client, clock):
    insp, pid, main = _names(sim)
    r = await client.post(f"/projects/{pid}/branches", json={"branch": {"parent_id": main, "name": "dev/fresh"},
                                                             "endpoints": [{"type": "read_write"}]})
    fresh = r.json()["branch"]["id"]
    assert r.json()["branch"]["current_state"] == "init"
    # the branch is still being created: its own state is refused first, with 422
    for call in (client.post(role_path(pid, fresh, "app", "/reset_password")),
                 client.post(f"/projects/{pid}/branches/{fresh}/roles", json={"role": {"name": "x"}}),
                 client.delete(role_path(pid, fresh, "readonly"))):
        r = await call
        assert (r.status_code, r.json()["message"]) == (422, "branch not ready yet")
    # another branch of the same project is not "not ready", it is locked by the running operations
    r = await client.post(role_path(pid, main, "app", "/reset_password"))
    assert (r.status_code, r.json()["message"]) == (423, LOCKED)
    clock.advance(1.0)  # create_branch done (ready), start_compute still running: the project lock answers
    assert (await client.get(f"/projects/{pid}/branches/{fresh}")).json()["branch"]["current_state"] == "ready"
    r = await client.post(role_path(pid, fresh, "app", "/reset_password"))
    assert (r.status_code, r.json()["message"]) == (423, LOCKED)
    clock.advance(1.0)
    assert (await client.post(role_path(pid, fresh, "app", "/reset_password"))).status_code == 200
    assert insp.reset_count(pid, fresh, "app") == 1


async def test_starting_compute_cannot_be_suspended(sim, client, clock):
    insp, pid, _ = _names(sim)
    staging = insp.branch_by_name(pid, "staging").id
    ep = sim.account.projects[pid].rw_endpoint(staging).id
    assert not insp.locked(pid)
    insp.wake_endpoint(ep)  # a connection reached the idle compute: it is starting (no project operation)
    body = (await client.get(f"/projects/{pid}/endpoints/{ep}")).json()["endpoint"]
    assert (body["current_state"], body["pending_state"]) == ("init", "active")
    r = await client.post(role_path(pid, staging, "app", "/reset_password"))
    assert (r.status_code, r.json()["message"]) == (423, TRANSITIVE)
    r = await client.post(f"/projects/{pid}/branches/{staging}/roles", json={"role": {"name": "newbie"}})
    assert (r.status_code, r.json()["message"]) == (423, TRANSITIVE)
    assert insp.reset_count(pid, staging, "app") == 0 and "newbie" not in insp.role_names(pid, staging)
    clock.advance(0.5)  # started (0.25 * op_seconds)
    body = (await client.get(f"/projects/{pid}/endpoints/{ep}")).json()["endpoint"]
    assert body["current_state"] == "active" and "pending_state" not in body
    assert (await client.post(role_path(pid, staging, "app", "/reset_password"))).status_code == 200


async def test_reset_on_an_active_compute_drops_its_connections_and_suspends_it(sim, client, clock):
    insp = sim.inspect
    pid = insp.project_by_name("acme-analytics").id
    main = insp.default_branch_id(pid)
    ep = sim.account.projects[pid].rw_endpoint(main).id
    state = lambda: client.get(f"/projects/{pid}/endpoints/{ep}")  # noqa: E731
    assert (await state()).json()["endpoint"]["current_state"] == "active"  # serving at rest (seeded)
    r = await client.post(role_path(pid, main, "readonly", "/reset_password"))
    assert [o["action"] for o in r.json()["operations"]] == ["apply_config", "suspend_compute"]
    assert (await state()).json()["endpoint"]["current_state"] == "active"
    assert insp.endpoint(ep).sessions_dropped == 0
    clock.advance(2.0)
    assert (await state()).json()["endpoint"]["current_state"] == "idle"
    assert insp.endpoint(ep).sessions_dropped == 1  # suspend_compute ended while it was active
    # an idle compute wakes for the reset and is suspended again: no session to drop
    staging = insp.branch_by_name(insp.project_by_name("acme-prod").id, "staging")
    idle = sim.account.projects[staging.project_id].rw_endpoint(staging.id).id
    r = await client.post(role_path(staging.project_id, staging.id, "app", "/reset_password"))
    assert (await client.get(f"/projects/{staging.project_id}/endpoints/{idle}")).json()["endpoint"][
        "current_state"] == "active"
    clock.advance(2.0)
    assert (await client.get(f"/projects/{staging.project_id}/endpoints/{idle}")).json()["endpoint"][
        "current_state"] == "idle"
    assert insp.endpoint(idle).sessions_dropped == 0


def test_some_computes_are_active_at_rest_deterministically(clock):
    def active(sim):
        return sorted((p.name, e.id) for p in sim.account.projects.values() for e in p.endpoints.values()
                      if e.current_state == "active")

    demo = make_sim(clock)
    assert [n for n, _ in active(demo)] == ["acme-analytics", "acme-storefront"]
    sized = make_sim(clock, projects=30, branches=2, roles=1)
    assert active(sized) == active(make_sim(clock, projects=30, branches=2, roles=1))
    assert 3 <= len(active(sized)) <= 20
    assert all(sized.account.projects[sized.inspect.project_by_name(n).id].endpoints[e].branch_id
               == sized.inspect.default_branch_id(sized.inspect.project_by_name(n).id) for n, e in active(sized))


async def test_role_create_and_delete_answer_the_resets_operations_pair(sim, client, clock):
    insp, pid, main = _names(sim)
    rw = sim.account.projects[pid].rw_endpoint(main).id
    r = await client.post(f"/projects/{pid}/branches/{main}/roles", json={"role": {"name": "auditor"}})
    assert r.status_code == 201
    assert [(o["action"], o["endpoint_id"]) for o in r.json()["operations"]] == [
        ("apply_config", rw), ("suspend_compute", rw)]
    clock.advance(2.0)
    r = await client.delete(role_path(pid, main, "auditor"))
    assert r.status_code == 200
    assert [o["action"] for o in r.json()["operations"]] == ["apply_config", "suspend_compute"]


async def test_branch_creation_answers_connection_uris_as_the_spec_says(sim, client, clock):
    insp = sim.inspect
    blog = insp.project_by_name("blog").id  # one role, one database: the spec's case for a URI
    r = await client.post(f"/projects/{blog}/branches", json={"endpoints": [{"type": "read_write"}]})
    body = r.json()
    (details,) = body["connection_uris"]
    params = details["connection_parameters"]
    ep = body["endpoints"][0]
    assert (params["role"], params["database"], params["host"]) == ("neondb_owner", "neondb", ep["host"])
    assert params["pooler_host"] == ep["host"].replace(ep["id"], ep["id"] + "-pooler")
    assert params["password"] == insp.password(blog, body["branch"]["id"], "neondb_owner")
    assert details["connection_uri"] == (f"postgresql://neondb_owner:{params['password']}@{ep['host']}/neondb"
                                         "?sslmode=require&channel_binding=require")
    # more than one role: no URI (spec ConnectionDetails); no compute: nothing to connect to
    pid = insp.project_by_name("acme-prod").id
    r = await client.post(f"/projects/{pid}/branches", json={"endpoints": [{"type": "read_write"}]})
    assert r.json()["connection_uris"] == []
    clock.advance(5)
    r = await client.post(f"/projects/{pid}/branches", json={})
    assert "connection_uris" not in r.json()


async def test_ip_allow_needs_a_scale_plan(sim, client, clock):
    insp = sim.inspect

    def allow(ips, only=False):
        return {"project": {"settings": {"allowed_ips": {"ips": ips, "protected_branches_only": only}}}}

    for name, plan in (("side-project", "free"), ("acme-storefront", "launch")):
        pid = insp.project_by_name(name).id
        r = await client.patch(f"/projects/{pid}", json=allow(["203.0.113.7"]))
        assert r.status_code == 403 and r.json()["message"] == (
            f"IP Allow is not available on the {plan} plan; upgrade to the Scale plan to restrict access by IP address")
        assert insp.projects[pid].allowed_ips == []
        r = await client.patch(f"/projects/{pid}", json=allow([], True))
        assert r.status_code == 403  # protected_branches_only alone is IP Allow too
        assert (await client.patch(f"/projects/{pid}", json=allow([]))).status_code == 200  # clearing is allowed
    scale = insp.project_by_name("acme-ml-features").id
    r = await client.patch(f"/projects/{scale}", json=allow(["203.0.113.7"]))
    assert r.status_code == 200 and insp.projects[scale].allowed_ips == ["203.0.113.7"]
