"""Selectors never widen a run: an empty part is an error, `*` is the only way to say "every"."""

from __future__ import annotations

import pytest
from rotation_helpers import org_of

from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.plan import Selector, other_org_matches, parse_selectors, plan_from_selectors


@pytest.mark.parametrize("text", [
    "//",                 # "$P/$B/$R" with all three unset
    "/",
    "/app",               # "$P/app" with P unset
    "acme-prod//app",     # doubled slash: was "every branch"
    "acme-prod/",         # trailing slash
    "acme-prod/main/",
    "/acme-prod/main",
    "acme-prod/ /app",    # an all-whitespace part
    "acme-prod/main/\t",
    " /main/app",
    "acme-prod/dev//alice/*",
])
def test_empty_part_is_an_error_naming_the_selector_and_star(text):
    with pytest.raises(ValueError) as info:
        Selector.parse(text)
    msg = str(info.value)
    assert repr(text) in msg
    assert "empty part" in msg and "'*'" in msg


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_selector_is_an_error(text):
    with pytest.raises(ValueError, match=r"empty selector.*'\*'"):
        Selector.parse(text)


def test_star_and_globs_and_slashed_branch_names_still_parse():
    assert Selector.parse("*") == Selector("*", ())
    assert Selector.parse(" p/*/r ") == Selector("p", ("*", "r"))
    assert Selector.parse("p/*") == Selector("p", ("*",))
    assert Selector.parse("*/*/*") == Selector("*", ("*", "*"))
    assert Selector.parse("acme-*/dev/alice/*") == Selector("acme-*", ("dev", "alice", "*"))
    assert Selector.parse("p/main/data team") == Selector("p", ("main", "data team"))


def test_a_selector_built_directly_cannot_hold_an_empty_part():
    with pytest.raises(ValueError, match="empty part"):
        Selector("", ())
    with pytest.raises(ValueError, match="empty part"):
        Selector("p", ("", "app"))
    # and an empty pattern matches nothing (no silent "*")
    assert not Selector._match("", "main", "br-1")


def test_parse_selectors_reports_every_bad_one_at_once():
    with pytest.raises(ValueError) as info:
        parse_selectors(["ok/main", "//", "p//r"])
    assert "'//'" in str(info.value) and "'p//r'" in str(info.value)
    with pytest.raises(ValueError, match="no selector"):
        parse_selectors([])
    assert parse_selectors(["*"]) == [Selector("*", ())]


async def test_unset_variables_do_not_rotate_the_organization(demo):
    sim, client = demo
    org = org_of(sim, "acme-prod")
    sim.inspect.clear_requests()
    for text in ("//", "/", "acme-prod//app"):
        with pytest.raises(ValueError, match="empty part"):
            await plan_from_selectors(Inventory(client), [text], org)
    with pytest.raises(ValueError, match="empty part"):
        await plan_from_selectors(Inventory(client), ["acme-prod/main/app", "acme-prod/"], org)
    assert sim.inspect.requests == []  # refused before any API call


async def test_star_alone_is_still_everything_in_the_organization(demo):
    sim, client = demo
    org = org_of(sim, "acme-prod")
    plan = await plan_from_selectors(Inventory(client), ["*"], org)
    expected = {k for k in sim.inspect.login_roles() if sim.inspect.org_of(k[0]) == org}
    assert {t.key for t in plan.targets} == expected and expected


# ---------------------------------------------------------------- other organizations


def _other_org_project(sim, org):
    """A project of another organization (the demo account has several)."""
    for pid, p in sim.inspect.projects.items():
        if sim.inspect.org_of(pid) != org:
            return p
    raise AssertionError("the demo account has one organization only")


async def test_selector_unmatched_here_is_found_in_another_org(demo):
    sim, client = demo
    home = org_of(sim, "acme-prod")
    other = _other_org_project(sim, home)
    other_org = sim.inspect.org_of(other.id)
    inv = Inventory(client)
    plan = await plan_from_selectors(inv, [other.name, f"{other.name}/*/neondb_owner", "no-such-project"], home)
    assert plan.unmatched == [other.name, f"{other.name}/*/neondb_owner", "no-such-project"]
    found = await other_org_matches(inv, plan.unmatched, home)
    assert [o.id for o in found[other.name]] == [other_org]
    assert [o.id for o in found[f"{other.name}/*/neondb_owner"]] == [other_org]
    assert found["no-such-project"] == []
    # the plan was not widened by looking elsewhere
    assert plan.targets == [] and plan.org_id == home


async def test_other_org_needs_a_role_match_not_only_a_project_match(demo):
    sim, client = demo
    home = org_of(sim, "acme-prod")
    other = _other_org_project(sim, home)
    found = await other_org_matches(Inventory(client), [f"{other.name}/*/no-such-role",
                                                        f"{other.name}/no-such-branch"], home)
    assert found == {f"{other.name}/*/no-such-role": [], f"{other.name}/no-such-branch": []}


async def test_other_org_loads_only_matching_projects_branches(demo):
    sim, client = demo
    home = org_of(sim, "acme-prod")
    other = _other_org_project(sim, home)
    sim.inspect.clear_requests()
    found = await other_org_matches(Inventory(client), [f"{other.id}/*/neondb_owner"], home)
    assert found[f"{other.id}/*/neondb_owner"]
    paths = [r.path for r in sim.inspect.requests]
    branch_reads = {p.split("/")[4] for p in paths if "/branches" in p}
    assert branch_reads == {other.id}  # no other project's branches or roles were read
    assert not any(f"/projects/{pid}/" in p for p in paths for pid in sim.inspect.project_ids(home))


async def test_other_org_excludes_the_chosen_org_and_handles_no_selectors(demo):
    sim, client = demo
    home = org_of(sim, "acme-prod")
    found = await other_org_matches(Inventory(client), ["acme-prod"], home)
    assert found == {"acme-prod": []}  # matches only in the chosen org: no hint
    assert await other_org_matches(Inventory(client), [], home) == {}
    with pytest.raises(ValueError, match="empty part"):
        await other_org_matches(Inventory(client), ["a//b"], home)


async def test_an_exact_id_names_that_project_or_branch_only(demo):
    """Ids (what `neon-tui exposure` prints) never also match a project or branch NAMED like that id."""
    sim, client = demo
    org = org_of(sim, "acme-prod")
    prod = sim.inspect.project_by_name("acme-prod")
    other = sim.inspect.project_by_name("acme-analytics")
    staging = sim.inspect.branch_by_name(prod.id, "staging")
    alice = sim.inspect.branch_by_name(prod.id, "dev/alice")
    with sim.lock:
        other.name = prod.id            # a project whose NAME is acme-prod's id
        alice.name = staging.id         # a branch whose NAME is staging's id
    plan = await plan_from_selectors(Inventory(client), [f"{prod.id}/{staging.id}/app"], org)
    assert {t.key for t in plan.targets} == {(prod.id, staging.id, "app")}
    # a glob still matches names and ids alike
    plan = await plan_from_selectors(Inventory(client), [f"{prod.id}/*/app"], org)
    assert (prod.id, alice.id, "app") in {t.key for t in plan.targets}
    assert all(t.key[0] == prod.id for t in plan.targets)
