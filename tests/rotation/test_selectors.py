"""Selectors never widen a run: an empty part is an error, `*` is the only way to say "every"."""

from __future__ import annotations

import pytest
from rotation_helpers import org_of

from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.plan import Selector, parse_selectors, plan_from_selectors


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
