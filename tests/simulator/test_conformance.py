"""Every simulator response, including errors and every page of both pagination styles, matches the spec."""

from __future__ import annotations

from urllib.parse import quote

from sim_helpers import client_for, role_path


async def _walk_projects(client, org_id: str, limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params = {"org_id": org_id, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/projects", params=params)
        assert r.status_code == 200
        body = r.json()
        assert body["applications"] == {} and body["integrations"] == {}
        if not body["projects"]:
            assert "pagination" not in body
            return ids
        ids += [p["id"] for p in body["projects"]]
        cursor = body["pagination"]["cursor"]
        assert cursor == body["projects"][-1]["id"]


async def _walk_branches(client, project_id: str, sort_by: str, sort_order: str, limit: int) -> list[str]:
    ids: list[str] = []
    params = {"sort_by": sort_by, "sort_order": sort_order, "limit": limit}
    while True:
        r = await client.get(f"/projects/{project_id}/branches", params=params)
        assert r.status_code == 200
        body = r.json()
        assert body["pagination"]["sort_by"] == sort_by
        assert body["pagination"]["sort_order"] == sort_order.upper()
        ids += [b["id"] for b in body["branches"]]
        if "next" not in body["pagination"]:
            return ids
        params = {**params, "cursor": body["pagination"]["next"]}


async def test_read_endpoints_conform(sim, client, validator):
    insp = sim.inspect
    assert (await client.get("/auth")).json()["auth_method"] == "api_key_user"
    me = (await client.get("/users/me")).json()
    assert me["billing_account"]["subscription_type"] == "scale_v3" and me["billing_account"]["email"] == me["email"]
    assert (await client.get("/projects/shared")).json() == {"projects": [], "applications": {}, "integrations": {}}
    orgs = (await client.get("/users/me/organizations")).json()["organizations"]
    assert {o["id"] for o in orgs} == set(insp.org_ids)
    assert {o["managed_by"] for o in orgs} == {"console", "vercel"}
    for org in orgs:
        assert (await client.get(f"/organizations/{org['id']}")).json()["id"] == org["id"]
        listed = await _walk_projects(client, org["id"], limit=1)
        assert sorted(listed) == sorted(insp.project_ids(org["id"]))
        assert await _walk_projects(client, org["id"], limit=400) == listed
        members = (await client.get(f"/organizations/{org['id']}/members")).json()
        assert "next" not in members["pagination"]
        emails = [m["user"]["email"] for m in members["members"]]
        assert len(emails) == len(insp.org(org["id"]).members) >= 1
        paged, params = [], {"limit": 1, "sort_by": "email", "sort_order": "asc"}
        while True:
            body = (await client.get(f"/organizations/{org['id']}/members", params=params)).json()
            paged += [m["user"]["email"] for m in body["members"]]
            if "next" not in body["pagination"]:
                break
            params = {**params, "cursor": body["pagination"]["next"]}
        assert paged == sorted(emails)
    assert isinstance((await client.get("/api_keys")).json(), list)
    assert isinstance((await client.get(f"/organizations/{insp.primary_org_id}/api_keys")).json(), list)
    r = await client.get("/projects", params={"org_id": insp.primary_org_id, "search": "acme-prod"})
    assert [p["name"] for p in r.json()["projects"]] == ["acme-prod"]

    for project_id in insp.project_ids():
        project = (await client.get(f"/projects/{project_id}")).json()["project"]
        assert project["id"] == project_id
        granted = (await client.get(f"/projects/{project_id}/permissions")).json()["project_permissions"]
        assert len(granted) == len(insp.projects[project_id].permissions)
        everything = (await client.get(f"/projects/{project_id}/branches")).json()
        # Neon hands out `next` even after a short page; following it gives the empty page that ends the list
        assert set(everything["pagination"]) == {"next", "sort_by", "sort_order"}
        assert (everything["pagination"]["sort_by"], everything["pagination"]["sort_order"]) == ("updated_at", "DESC")
        after = (await client.get(f"/projects/{project_id}/branches",
                                  params={"cursor": everything["pagination"]["next"]})).json()
        assert after["branches"] == [] and after["pagination"] == {"sort_by": "updated_at", "sort_order": "DESC"}
        assert everything["annotations"] == {}
        all_ids = [b["id"] for b in everything["branches"]]
        for sort_by in ("name", "created_at", "updated_at"):
            for order in ("asc", "desc"):
                paged = await _walk_branches(client, project_id, sort_by, order, limit=1)
                assert sorted(paged) == sorted(all_ids) and len(paged) == len(all_ids)
        for branch_id in all_ids:
            base = f"/projects/{project_id}/branches/{branch_id}"
            got = (await client.get(base)).json()
            assert got["branch"]["id"] == branch_id and got["annotation"]["object"]["id"] == branch_id
            roles = (await client.get(base + "/roles")).json()["roles"]
            assert all("password" not in r for r in roles)
            for role in roles:
                assert (await client.get(role_path(project_id, branch_id, role["name"]))).json()["role"] == role
                r = await client.get(role_path(project_id, branch_id, role["name"], "/reveal_password"))
                assert r.status_code in (200, 400, 412)
            for db in (await client.get(base + "/databases")).json()["databases"]:
                r = await client.get(f"{base}/databases/{quote(db['name'], safe='')}")
                assert r.json()["database"] == db
            await client.get(base + "/endpoints")
        endpoints = (await client.get(f"/projects/{project_id}/endpoints")).json()["endpoints"]
        assert {e["type"] for e in endpoints} <= {"read_write", "read_only"}
        for e in endpoints:
            assert (await client.get(f"/projects/{project_id}/endpoints/{e['id']}")).json()["endpoint"] == e
        count = (await client.get(f"/projects/{project_id}/branches/count")).json()
        assert count == {"count": len(all_ids)}
        r = await client.get(f"/projects/{project_id}/connection_uri",
                             params={"database_name": next(iter(insp.projects[project_id].default_branch().databases)),
                                     "role_name": "neondb_owner", "pooled": "true"})
        assert r.status_code in (200, 412)
        # Operations: newest first, timestamp cursor, two per page until an empty page.
        seen_ops: list[str] = []
        params = {"limit": 2}
        while True:
            body = (await client.get(f"/projects/{project_id}/operations", params=params)).json()
            if not body["operations"]:
                assert "pagination" not in body
                break
            seen_ops += [op["id"] for op in body["operations"]]
            params = {"limit": 2, "cursor": body["pagination"]["cursor"]}
        assert sorted(seen_ops) == sorted(op.id for op in insp.projects[project_id].operations)
        for op_id in seen_ops[:3]:
            assert (await client.get(f"/projects/{project_id}/operations/{op_id}")).json()["operation"]["id"] == op_id

    # Every read route of the simulator answered at least once, and was validated.
    gets = {route.name for route in sim.api.routes if route.method == "GET"}
    assert gets - {route for _, route, _ in validator.seen} == set()


async def test_mutations_and_errors_conform(sim, client, validator, clock):
    insp = sim.inspect
    project = insp.project_by_name("acme-prod")
    pid, main = project.id, insp.default_branch_id(project.id)
    staging = insp.branch_by_name(pid, "staging").id

    r = await client.patch(f"/projects/{pid}", json={"project": {"settings": {"allowed_ips": {"ips": ["10.0.0.1"]}}}})
    assert r.json()["project"]["settings"]["allowed_ips"]["ips"] == ["10.0.0.1"]
    # A new allowlist is pushed to every compute: one apply_config per endpoint, and the project is busy.
    assert {op["action"] for op in r.json()["operations"]} == {"apply_config"}
    assert len(r.json()["operations"]) == len(insp.project_by_name("acme-prod").endpoints)
    clock.advance(5)
    assert (await client.patch(f"/projects/{pid}", json={"nope": 1})).status_code == 400

    r = await client.post(f"/projects/{pid}/branches",
                          json={"branch": {"parent_id": staging, "name": "preview/pr-200"},
                                "endpoints": [{"type": "read_write"}]})
    assert r.status_code == 201
    assert [op["action"] for op in r.json()["operations"]] == ["create_branch", "start_compute"]
    new_branch = r.json()["branch"]["id"]
    assert (await client.post(role_path(pid, main, "app", "/reset_password"))).status_code == 423
    clock.advance(5)

    r = await client.post(f"/projects/{pid}/branches/{new_branch}/roles", json={"role": {"name": "temp user"}})
    assert r.status_code == 201 and r.json()["role"]["password"].startswith("npg_")
    clock.advance(5)
    r = await client.delete(role_path(pid, new_branch, "temp user"))
    assert r.status_code == 200 and r.json()["role"]["name"] == "temp user"
    clock.advance(5)
    assert (await client.delete(role_path(pid, new_branch, "temp user"))).status_code == 204
    assert (await client.delete(role_path(pid, new_branch, "neondb_owner"))).status_code == 400
    assert (await client.get(f"/projects/{pid}/branches/count", params={"search": "pr-200"})).json() == {"count": 1}
    # A branch with a child, or the default branch, cannot be deleted; a leaf can, and then it is gone (204).
    assert (await client.delete(f"/projects/{pid}/branches/{staging}")).status_code == 400
    assert (await client.delete(f"/projects/{pid}/branches/{main}")).status_code == 400
    clock.advance(5)
    r = await client.delete(f"/projects/{pid}/branches/{new_branch}")
    assert r.status_code == 200 and r.json()["branch"]["id"] == new_branch
    assert [op["action"] for op in r.json()["operations"]] == ["suspend_compute", "delete_timeline"]
    assert new_branch not in insp.branch_ids(pid)
    assert (await client.get(f"/projects/{pid}/branches/{new_branch}")).status_code == 404
    assert (await client.delete(f"/projects/{pid}/branches/{new_branch}")).status_code == 204
    assert (await client.get(f"/projects/{pid}/endpoints/ep-missing-a1234567")).status_code == 404
    clock.advance(5)

    r = await client.post(role_path(pid, main, "app", "/reset_password"))
    assert r.status_code == 200
    assert [(op["action"], op["status"]) for op in r.json()["operations"]] == [
        ("apply_config", "running"), ("suspend_compute", "scheduling")]
    assert (await client.post(role_path(pid, main, "readonly", "/reset_password"))).status_code == 423
    for op in r.json()["operations"]:
        assert (await client.get(f"/projects/{pid}/operations/{op['id']}")).status_code == 200
    clock.advance(5)
    assert (await client.post(role_path(pid, main, "authenticator", "/reset_password"))).status_code == 400
    assert (await client.post(role_path(pid, main, "reporting", "/reset_password"))).status_code == 400
    assert (await client.post(role_path(pid, main, "ghost", "/reset_password"))).status_code == 404
    assert (await client.get(role_path(pid, main, "ghost", "/reveal_password"))).status_code == 404
    legacy = insp.project_by_name("acme-legacy-billing").id
    legacy_main = insp.default_branch_id(legacy)
    assert (await client.get(role_path(legacy, legacy_main, "app", "/reveal_password"))).status_code == 412
    uri = f"/projects/{legacy}/connection_uri"
    assert (await client.get(uri, params={"database_name": "billing", "role_name": "app"})).status_code == 412
    uri = f"/projects/{pid}/connection_uri"
    assert (await client.get(uri, params={"database_name": "nope", "role_name": "app"})).status_code == 404
    assert (await client.get(uri, params={"role_name": "app"})).status_code == 400
    no_compute = insp.branch_by_name(pid, "preview/pr-157").id
    r = await client.get(uri, params={"database_name": "neondb", "role_name": "app", "branch_id": no_compute})
    assert r.status_code == 400

    # API keys, personal and organization.
    listed = (await client.get("/api_keys")).json()
    assert isinstance(listed, list) and all(isinstance(k["created_by"], dict) for k in listed)
    created = (await client.post("/api_keys", json={"key_name": "rotation-test"})).json()
    assert created["key"].startswith("napi_") and isinstance(created["created_by"], str)
    assert (await client.delete(f"/api_keys/{created['id']}")).json()["revoked"] is True
    assert (await client.delete("/api_keys/1")).status_code == 404
    assert (await client.post("/api_keys", json={})).status_code == 400
    org = insp.primary_org_id
    assert isinstance((await client.get(f"/organizations/{org}/api_keys")).json(), list)
    created = (await client.post(f"/organizations/{org}/api_keys",
                                 json={"key_name": "scoped", "project_id": pid})).json()
    assert created["project_id"] == pid
    listed = (await client.get(f"/organizations/{org}/api_keys")).json()
    assert any(k.get("project_id") == pid for k in listed)
    r = await client.delete(f"/organizations/{org}/api_keys/{created['id']}")
    assert r.json()["revoked"] is True and r.json()["project_id"] == pid
    assert (await client.delete(f"/organizations/{org}/api_keys/{created['id'] + 1}")).status_code == 404

    # Generic errors.
    assert (await client.get("/projects")).status_code == 400
    assert (await client.get("/projects", params={"org_id": org, "limit": 401})).status_code == 400
    assert (await client.get(f"/projects/{pid}/branches", params={"cursor": "!!"})).status_code == 400
    assert (await client.get("/projects/no-such-project-1")).status_code == 404
    assert (await client.get(f"/projects/{pid}/branches/br-missing-a1234567")).status_code == 404
    assert (await client.get(f"/projects/{pid}/operations/{'0' * 8}-0000-4000-8000-{'0' * 12}")).status_code == 404
    assert (await client.get("/organizations/org-missing-1")).status_code == 404
    async with client_for(sim, key="napi_wrong", validator=validator) as bad:
        assert (await bad.get("/auth")).status_code == 401

    # Every mutating route answered at least once and was validated (reads: the test below).
    mutations = {route.name for route in sim.api.routes if route.method != "GET"}
    assert mutations - {route for _, route, _ in validator.seen} == set()
    statuses = {status for _, _, status in validator.seen}
    assert {200, 201, 204, 400, 401, 404, 412, 423} <= statuses

