"""Planning lists what the rotation needs and no more, in as few round trips as it can."""

from __future__ import annotations

from rotation_helpers import Inventory, sim_client

from neon_tui.rotation.engine import build_result
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.neon.secret import Secret

DBS = "GET /projects/{project_id}/branches/{branch_id}/databases"
ROLES = "GET /projects/{project_id}/branches/{branch_id}/roles"


def _branch_of(path: str) -> str:
    return path.split("/")[6]


async def test_databases_are_listed_only_where_a_compute_can_use_them():
    async with sim_client(projects=3, branches=6, roles=1, seed=11) as (sim, client):
        org = sim.inspect.primary_org_id
        sim.inspect.clear_requests()
        plan = await plan_from_selectors(Inventory(client), ["*"], org)
        reqs = sim.inspect.requests
    projects = sim.inspect.projects
    computeless = {b.id for p in projects.values() for b in p.branches.values() if not p.branch_endpoints(b.id)}
    with_compute = {b.id for pid in {t.project_id for t in plan.targets}
                    for b in projects[pid].branches.values() if projects[pid].branch_endpoints(b.id)}
    assert computeless, "the seed must give some branches no compute"
    db_branches = [_branch_of(r.path) for r in reqs if r.route == DBS]
    assert sorted(db_branches) == sorted(with_compute)            # once each, and only these
    assert not computeless & set(db_branches)
    # targets on those branches get no connection strings (and never needed the databases)
    idle = [t for t in plan.targets if t.branch_id in computeless]
    assert idle and all(t.databases == () and not t.endpoints for t in idle)
    assert build_result(idle[0], Secret("x")).connections == ()


async def test_roles_and_databases_are_listed_in_one_phase():
    async with sim_client(projects=1, branches=8, roles=1, seed=11) as (sim, client):
        org = sim.inspect.primary_org_id
        sim.inspect.clear_requests()
        await plan_from_selectors(Inventory(client), ["*"], org)
        routes = [r.route for r in sim.inspect.requests]
    assert DBS in routes and ROLES in routes
    # Side by side: some databases listing leaves before the last roles listing (two phases would not).
    assert routes.index(DBS) < len(routes) - 1 - routes[::-1].index(ROLES)
    # and no branch's roles or databases are listed twice (branch lists are paged: the same path again, with
    # the next cursor, until Neon's empty page)
    paths = [r.path for r in sim.inspect.requests if r.route in (DBS, ROLES)]
    assert paths and len(paths) == len(set(paths))


async def test_a_narrow_selector_lists_databases_of_its_branch_only():
    async with sim_client(projects=1, branches=6, roles=1, seed=11) as (sim, client):
        org = sim.inspect.primary_org_id
        pid = sim.inspect.project_ids(org)[0]
        main = sim.inspect.default_branch_id(pid)
        sim.inspect.clear_requests()
        name = sim.inspect.projects[pid].name
        plan = await plan_from_selectors(Inventory(client), [f"{name}/main"], org)
        db_branches = [_branch_of(r.path) for r in sim.inspect.requests if r.route == DBS]
    assert {t.branch_id for t in plan.targets} == {main}
    assert db_branches == [main]
