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
    assert warned["preview/pr-142"].same_as == "staging"
    assert "same password as staging (branched from it after its last reset" in str(warned["preview/pr-142"])
    # main is staging's parent, but protected: staging got new passwords when it was created
    assert not warned["main"].likely_same_password and "its own password" in str(warned["main"])


async def test_a_copy_is_said_to_share_a_password_only_with_the_branch_it_shares_it_with(demo):
    """Selecting protected main: the preview branches share staging's password, not main's (the old text said
    "inherited from its parent" there); selecting a preview branch: its parent and sibling share its password."""
    sim, client = demo
    org = org_of(sim, "acme-prod")
    plan = await plan_from_selectors(Inventory(client), ["acme-prod/main/app"], org)
    warned = {w.branch_name: w for w in plan.warnings if w.role_name == "app"}
    assert warned and not any(w.likely_same_password for w in warned.values())
    plan = await plan_from_selectors(Inventory(client), ["acme-prod/preview/pr-142/app"], org)
    warned = {w.branch_name: w for w in plan.warnings if w.role_name == "app"}
    assert warned["staging"].same_as == "preview/pr-142" and "which was branched from this one" in warned["staging"].why
    assert warned["preview/pr-157"].same_as == "preview/pr-142"
    assert warned["preview/pr-157"].why == "both inherited from staging, neither reset since"
    assert not warned["main"].likely_same_password and not warned["dev/alice"].likely_same_password
    assert warned["dev/alice"].reason == "its own password (branched from protected main: Neon gave it new passwords)"


async def test_unselected_copies_group_by_branch_and_reason(demo):
    from neon_tui.rotation.plan import group_copies

    sim, client = demo
    org = org_of(sim, "acme-prod")
    plan = await plan_from_selectors(Inventory(client), ["acme-prod/staging/*"], org)
    groups = group_copies(plan.warnings)
    # one line per branch and reason, however many roles: fewer lines than copies
    assert len(groups) < len(plan.warnings)
    assert len({(g.branch_name, g.reason) for g in groups}) == len(groups)
    assert sum(len(g.keys) for g in groups) == len(plan.warnings)
    pr142 = next(g for g in groups if g.branch_name == "preview/pr-142" and g.flagged)
    assert len(pr142.roles) > 1 and str(pr142).startswith("acme-prod/preview/pr-142: same password as staging")
    assert groups[0].flagged and not groups[-1].flagged  # flagged first
    # a leak scan's proof settles it for that copy, whatever the inventory says
    own = next(w for w in plan.warnings if not w.likely_same_password)
    proven = [g for g in group_copies(plan.warnings, exposed=[own.key]) if own.key in g.keys]
    assert proven[0].flagged and proven[0].reason == "the leak scan found the leaked password here"


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
