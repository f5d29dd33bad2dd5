"""Bad input: every answer is Neon's JSON error shape with a request id, and requests are checked against rules
derived from the official spec (never a hand-written copy)."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
from sim_helpers import SPEC_PATH, client_for, role_path

from neon_tui.simulator import specgen


def _plain(sim) -> httpx.AsyncClient:
    """A client without the spec validator: unknown paths and methods are not in the spec by definition."""
    return client_for(sim)


def _is_neon_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    rid = r.headers["x-neon-ret-request-id"]
    body = r.json()
    assert set(body) == {"code", "message", "request_id"} and body["request_id"] == rid and body["message"]
    return body


def test_rules_are_what_the_vendored_spec_says():
    """spec_rules.json is generated (python -m neon_tui.simulator.specgen SPEC); regenerate when this fails."""
    derived = specgen.derive(json.loads(SPEC_PATH.read_text()), specgen.served_routes())
    assert specgen.RULES_PATH.read_text() == specgen.render(derived)
    # every served route has rules, and the ones with bodies carry the spec's body schema
    assert derived["POST /projects/{project_id}/branches/{branch_id}/roles"]["body"]["properties"]["role"][
        "properties"]["no_login"] == {"type": "boolean"}


@pytest.mark.parametrize("path", ["/nope", "/nope%0Ax", "/projects/x/%0A/y", "/%0A", "/projects/%2F/branches/x/y/z"])
async def test_unknown_paths_get_a_json_404_with_request_id(sim, path):
    async with _plain(sim) as c:
        body = _is_neon_error(await c.get(path), 404)
    assert body["message"] == "not found"


async def test_outside_the_api_prefix_too(sim):
    async with httpx.AsyncClient(transport=sim.transport(), base_url="http://neon-sim.invalid") as c:
        _is_neon_error(await c.get("/robots.txt"), 404)
        _is_neon_error(await c.get("/api/v2"), 404)


async def test_newline_in_an_id_is_a_json_400(sim):
    async with _plain(sim) as c:
        body = _is_neon_error(await c.get("/projects/%0A"), 400)
    assert "project_id" in body["message"]


async def test_405_names_the_allowed_methods(sim):
    pid = sim.inspect.project_by_name("acme-prod").id
    main = sim.inspect.default_branch_id(pid)
    async with _plain(sim) as c:
        r = await c.put(f"/projects/{pid}")
        _is_neon_error(r, 405)
        assert r.headers["allow"] == "GET, PATCH"
        r = await c.get(role_path(pid, main, "app", "/reset_password"))
        _is_neon_error(r, 405)
        assert r.headers["allow"] == "POST"
        r = await c.request("PATCH", f"/projects/{pid}/branches/{main}/roles/app")
        assert r.headers["allow"] == "GET, DELETE"
        _is_neon_error(await c.request("TRACE", "/auth"), 405)
        # a literal segment wins over a parameter: these are not a project called "shared" nor a branch "count"
        r = await c.patch("/projects/shared", json={})
        assert (r.status_code, r.headers["allow"]) == (405, "GET")
        r = await c.delete(f"/projects/{pid}/branches/count")
        assert (r.status_code, r.headers["allow"]) == (405, "GET")
        assert len(sim.inspect.branch_ids(pid)) == 5


BAD_BODIES = [
    ("POST", "/branches", {"branch": {"parent_id": ["x"]}}, "branch.parent_id (string expected)"),
    ("POST", "/branches", {"branch": {"protected": "yes"}}, "branch.protected (boolean expected)"),
    ("POST", "/branches", {"endpoints": [{"type": "read_mostly"}]}, "endpoints[0].type (must be one of"),
    ("POST", "/branches", {"endpoints": [{}]}, "endpoints[0].type (field required)"),
    ("POST", "/branches", [], "request body (object expected)"),
    ("POST", "/branches", None, "request body (object expected)"),  # JSON null is a body, not an absent one
    ("POST", "/branches/{main}/roles", {"role": {"name": "zz", "no_login": "yes"}}, "role.no_login (boolean expected)"),
    ("POST", "/branches/{main}/roles", {"role": {"name": 7}}, "role.name (string expected)"),
    ("POST", "/branches/{main}/roles", {"role": {}}, "role.name (field required)"),
    ("PATCH", "", {"project": {"settings": {"allowed_ips": {"ips": ["1.2.3.4"], "protected_branches_only": {}}}}},
     "project.settings.allowed_ips.protected_branches_only (boolean expected)"),
    ("PATCH", "", {"project": {"settings": {"allowed_ips": {"ips": "1.2.3.4"}}}},
     "project.settings.allowed_ips.ips (array expected)"),
    ("PATCH", "", {"project": {"settings": {"allowed_ips": {"ips": ["not-an-ip"]}}}}, '"not-an-ip" is not a valid IP'),
    ("PATCH", "", {"project": {"name": ["x"]}}, "project.name (string expected)"),
]


@pytest.mark.parametrize("method,tail,body,why", BAD_BODIES)
async def test_bad_bodies_get_a_400_naming_the_field_before_any_lock(sim, client, method, tail, body, why):
    pid = sim.inspect.project_by_name("acme-prod").id
    main = sim.inspect.default_branch_id(pid)
    # a running reset locks the project: the body is still judged first (decoding precedes scheduling)
    assert (await client.post(role_path(pid, main, "app", "/reset_password"))).status_code == 200
    before = len(sim.inspect.projects[pid].operations)
    r = await client.request(method, f"/projects/{pid}{tail.format(main=main)}", content=json.dumps(body),
                               headers={"content-type": "application/json"})
    assert why in _is_neon_error(r, 400)["message"]
    assert len(sim.inspect.projects[pid].operations) == before  # nothing scheduled


BAD_QUERIES = [
    ("/projects", {"limit": "abc"}, "limit (integer expected)"),
    ("/projects", {"limit": "0"}, "limit (must be at least 1)"),
    ("/projects", {"org_id": "ORG!"}, "org_id (does not match pattern"),
    ("/projects", {"recoverable": "maybe"}, "recoverable (boolean expected)"),
    ("/projects/shared", {"timeout": "5"}, "timeout (must be at least 100)"),
    ("/projects/{pid}/branches", {"sort_by": "size"}, "sort_by (must be one of"),
    ("/projects/{pid}/branches", {"include_deleted": "perhaps"}, "include_deleted (boolean expected)"),
    ("/projects/{pid}/connection_uri", {"role_name": "app"}, "database_name (field required)"),
    ("/projects/{pid}/connection_uri", {"role_name": "app", "database_name": "neondb", "pooled": "2"},
     "pooled (boolean expected)"),
    ("/projects/{pid}/operations", {"limit": "1001"}, "limit (must be at most 1000)"),
    ("/projects/{pid}/operations/not-a-uuid", {}, "operation_id (uuid expected)"),
]


@pytest.mark.parametrize("path,params,why", BAD_QUERIES)
async def test_bad_parameters_get_a_400_naming_them(sim, client, path, params, why):
    pid = sim.inspect.project_by_name("acme-prod").id
    r = await client.get(path.format(pid=pid), params=params)
    assert why in _is_neon_error(r, 400)["message"]


async def test_a_handler_bug_is_a_json_500_with_request_id(sim):
    def boom(ctx):
        raise RuntimeError("simulated bug")

    routes = sim.api.routes
    i = next(n for n, r in enumerate(routes) if r.name == "GET /auth")
    routes[i] = dataclasses.replace(routes[i], handler=boom)
    async with _plain(sim) as c:
        body = _is_neon_error(await c.get("/auth"), 500)
    assert body["message"] == "internal server error" and "simulated bug" not in body["message"]
    assert sim.inspect.requests[-1].status == 500


async def test_valid_input_still_works(sim, client, clock):
    pid = sim.inspect.project_by_name("acme-prod").id
    main = sim.inspect.default_branch_id(pid)
    r = await client.post(f"/projects/{pid}/branches/{main}/roles", json={"role": {"name": "ok", "no_login": True}})
    assert r.status_code == 201 and r.json()["role"]["authentication_method"] == "no_login"
    clock.advance(5)
    r = await client.patch(f"/projects/{pid}", json={"project": {"settings": {"allowed_ips": {
        "ips": ["10.0.0.0/8"], "protected_branches_only": False}}}})
    assert r.status_code == 200
