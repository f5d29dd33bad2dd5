"""Selections expand to concrete targets; skipped roles carry reasons; unselected copies are warned about."""

from __future__ import annotations

import pytest
from rotation_helpers import org_of

from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.plan import Selector, plan_from_selectors


def test_selector_parsing():
    s = Selector.parse("acme-*/main/etl/loader")
    assert (s.project, s.rest) == ("acme-*", ("main", "etl", "loader"))
    assert Selector.parse("p") == Selector("p", ())
    with pytest.raises(ValueError):
        Selector.parse("  ")


async def test_project_selector_expands_to_every_login_role_on_every_branch(demo):
    sim, client = demo
    p = sim.inspect.project_by_name("acme-prod")
    plan = await plan_from_selectors(Inventory(client), ["acme-prod"], org_of(sim, "acme-prod"))
    expected = {k for k in sim.inspect.login_roles() if k[0] == p.id}
    assert {t.key for t in plan.targets} == expected and expected
    # protected system roles and no_login roles are listed as skipped, with the reason
    reasons = {s.role_name: s.reason for s in plan.skipped}
    assert "system-protected" in reasons["authenticator"]
    assert "no_login" in reasons["reporting"]
    assert plan.touches_protected_branch
    assert not plan.warnings  # every branch is selected


async def test_branch_and_role_globs_match_names_or_ids(demo):
    sim, client = demo
    p = sim.inspect.project_by_name("acme-prod")
    staging = sim.inspect.branch_by_name(p.id, "staging")
    org = org_of(sim, "acme-prod")
    by_name = await plan_from_selectors(Inventory(client), ["acme-prod/staging/app"], org)
    by_id = await plan_from_selectors(Inventory(client), [f"{p.id}/{staging.id}/app"], org)
    assert [t.key for t in by_name.targets] == [t.key for t in by_id.targets] == [(p.id, staging.id, "app")]
    # branch names with slashes: every BRANCH/ROLE split is tried
    star = await plan_from_selectors(Inventory(client), ["acme-prod/preview/*/data*"], org)
    assert {t.branch_name for t in star.targets} == {"preview/pr-142", "preview/pr-157"}
    assert {t.role_name for t in star.targets} == {"data team"}
    whole = await plan_from_selectors(Inventory(client), ["acme-prod/dev/alice/*"], org)
    assert {t.branch_name for t in whole.targets} == {"dev/alice"} and len(whole.targets) > 3
    every_branch = await plan_from_selectors(Inventory(client), ["acme-prod/*/migrator"], org)
    assert {t.role_name for t in every_branch.targets} == {"migrator"}
    assert len(every_branch.targets) == len(sim.inspect.branches(p.id))
    # an empty part is an error, never "every branch"
    with pytest.raises(ValueError, match="empty part"):
        await plan_from_selectors(Inventory(client), ["acme-prod//migrator"], org)


async def test_unselected_copies_are_warned_about_with_inheritance(demo):
    sim, client = demo
    org = org_of(sim, "acme-prod")
    plan = await plan_from_selectors(Inventory(client), ["acme-prod/staging/app"], org)
    warned = {w.branch_name: w for w in plan.warnings if w.role_name == "app"}
    assert set(warned) == {"main", "dev/alice", "preview/pr-142", "preview/pr-157"}
    # preview branches were created from staging (not protected): they hold the same password
    assert warned["preview/pr-142"].likely_same_password
    assert "same (leaked) password" in str(warned["preview/pr-142"])


async def test_odd_role_names_and_slash_selectors(demo):
    sim, client = demo
    org = org_of(sim, "acme-analytics")
    plan = await plan_from_selectors(Inventory(client), ["acme-analytics/main/etl/loader", "acme-analytics/main/caf*"],
                                     org)
    assert sorted(t.role_name for t in plan.targets) == ["café_rw", "etl/loader"]


async def test_target_facts_for_the_plan(demo):
    sim, client = demo
    org = org_of(sim, "acme-analytics")
    plan = await plan_from_selectors(Inventory(client), ["acme-analytics/*/readonly"], org)
    by_branch = {t.branch_name: t for t in plan.targets}
    assert by_branch["main"].read_write_endpoints and by_branch["main"].databases
    no_compute = by_branch["backfill-2025"]
    assert not no_compute.endpoints
    assert any("no compute" in c for c in no_compute.consequences())
    assert any("old password keeps working" in c for c in by_branch["main"].consequences())
