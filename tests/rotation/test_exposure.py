"""The exposure scan against the in-process simulator: inherited copies found, others not, no-store honest."""

from __future__ import annotations

from rotation_helpers import sim_client

from neon_tui.neon.secret import Secret
from neon_tui.rotation.exposure import NOT_STORED, scan
from neon_tui.rotation.leak import parse_leak
from neon_tui.rotation.logins import Login, LoginOutcome
from neon_tui.rotation.plan import parse_selectors, selector_for

LEAKED = "Leak3d/p@ss w0rd"


def _ids(sim, project, branch):
    pid = sim.inspect.project_by_name(project).id
    return pid, sim.inspect.branch_by_name(pid, branch).id


def _set(sim, project, branch, role, password):
    pid, bid = _ids(sim, project, branch)
    sim.inspect.role(pid, bid, role).password = password
    return (pid, bid, role)


def _leak_uri(role="app"):
    from urllib.parse import quote

    return parse_leak(f"DATABASE_URL=postgresql://{role}:{quote(LEAKED, safe='')}@ep-x-1.aws.neon.tech/neondb\n")


async def test_parent_and_inherited_child_found_other_branches_not():
    async with sim_client() as (sim, client):
        # staging and the branch created from it (which inherited the password) hold the leaked one
        staging = _set(sim, "acme-prod", "staging", "app", LEAKED)
        child = _set(sim, "acme-prod", "preview/pr-142", "app", LEAKED)
        other = _set(sim, "acme-prod", "preview/pr-157", "app", "something else")
        reuse = _set(sim, "acme-analytics", "dev/carol", "etl/loader", LEAKED)  # a reuse elsewhere
        report = await scan(client, _leak_uri())
        assert set(report.keys) == {staging, child, reuse}
        assert other not in report.keys
        assert all(e.how == "revealed" for e in report.exposed)
        e = next(e for e in report.exposed if e.key == reuse)
        assert e.leaked[0].line == 1 and e.leaked[0].kind == "uri"
        assert report.old_passwords()[staging] == [Secret(LEAKED)]
        # the no-store project is never called clean
        legacy = sim.inspect.project_by_name("acme-legacy-billing").id
        nots = [u for u in report.unchecked if u.project_id == legacy]
        assert nots and all(u.reason == NOT_STORED for u in nots)
        assert {u.key for u in report.unchecked} == {u.key for u in nots}
        assert not report.complete
        assert report.requests > 0 and report.clean == report.roles - len(report.exposed) - len(report.unchecked)
        # nothing in the report shows the value
        assert LEAKED not in repr(report) and LEAKED not in report.summary()


async def test_probe_logins_with_injected_login():
    async with sim_client() as (sim, client):
        leaked_key = _set(sim, "acme-legacy-billing", "main", "o'brien", LEAKED)
        tried = []

        async def login(uri, password=None, *, route=None, timeout=10.0):
            from urllib.parse import unquote, urlsplit

            parts = urlsplit(uri.reveal())
            user, pw = unquote(parts.username), unquote(parts.password)
            host = parts.hostname
            tried.append((user, host))
            ep = host.split(".")[0]
            proj = next(p for p in sim.inspect.projects.values() if ep in p.endpoints)
            branch = proj.endpoints[ep].branch_id
            if proj.branches[branch].name == "hotfix":
                return LoginOutcome(Login.UNKNOWN, "timed out")
            ok = sim.inspect.accepts(proj.id, branch, user, pw)
            return LoginOutcome(Login.OK if ok else Login.REJECTED, "x")

        report = await scan(client, _leak_uri("o'brien"), probe_logins=True, login=login)
        assert [e.key for e in report.exposed if e.how == "login"] == [leaked_key], report.reasons()
        legacy = leaked_key[0]
        left = [u for u in report.unchecked if u.project_id == legacy]
        # hotfix has no compute in the demo: nothing to log in to, said so; never "clean"
        assert left and all(u.branch_name == "hotfix" for u in left)
        assert all("no compute" in u.reason for u in left)
        assert report.logins == len(tried) > 0


async def test_unreadable_project_is_unchecked_not_clean(monkeypatch):
    async with sim_client() as (sim, client):
        from neon_tui.neon.errors import PermissionDeniedError

        analytics = sim.inspect.project_by_name("acme-analytics").id
        real = client.list_branches

        async def flaky(pid):
            if pid == analytics:
                raise PermissionDeniedError("forbidden", status=403)
            return await real(pid)

        monkeypatch.setattr(client, "list_branches", flaky)
        _set(sim, "acme-analytics", "main", "readonly", LEAKED)
        report = await scan(client, _leak_uri())
        assert [u.project_id for u in report.unchecked if u.scope == "project"] == [analytics]
        assert "could not check" in report.unchecked[0].reason or any(
            "could not check" in u.reason for u in report.unchecked)
        assert not any(e.key[0] == analytics for e in report.exposed)


async def test_org_restricts_and_selectors_round_trip():
    async with sim_client() as (sim, client):
        key = _set(sim, "acme-analytics", "main", "etl/loader", LEAKED)
        org = sim.inspect.org_of(key[0])
        report = await scan(client, _leak_uri(), org=org)
        assert report.organizations == 1 and report.keys == [key]
        sel = selector_for(key)
        assert sel.endswith("/etl[/]loader")
        [s] = parse_selectors([sel])
        from neon_tui.rotation.inventory import Inventory
        from neon_tui.rotation.plan import plan_from_selectors

        plan = await plan_from_selectors(Inventory(client), [sel], org)
        assert [t.key for t in plan.targets] == [key]


def test_quote_selector_part_odd_names():
    from fnmatch import fnmatchcase

    from neon_tui.rotation.plan import Selector, quote_selector_part

    for name in ("etl/loader", "data team", "o'brien", "a//b", "/x", "x/", " lead", "tail ", "*", "a?b", "[x]",
                 "café_rw"):
        q = quote_selector_part(name)
        sel = Selector.parse(f"proj-1/br-1/{q}")  # never an empty part
        assert fnmatchcase(name, "/".join(sel.rest[1:])) if len(sel.rest) > 1 else True
        assert fnmatchcase(name, q)
        assert not fnmatchcase(name + "x", q)
    assert quote_selector_part("app") == "app"
