"""IP Allow review and edit against the simulator: flags, validation, the own-address warning, apply waiting
for operations, 423 retry, the paid-plan refusal, and the journal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "simulator"))
from sim_helpers import FakeClock, make_sim  # noqa: E402

from neon_tui.incident.actions import list_action_journals, read_action_journal  # noqa: E402
from neon_tui.incident.ipallow import (  # noqa: E402
    AllowList,
    IpAllowError,
    MyAddress,
    apply,
    covers,
    find_my_address,
    latest_exposure,
    open_journal,
    parse_entries,
    plan_allows,
    plan_change,
    review,
    validate,
)
from neon_tui.neon.client import NeonClient, RetryPolicy  # noqa: E402

HOST = "https://neon-sim.invalid/api/v2"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sim(clock):
    return make_sim(clock, op_seconds=2.0, rate_limit="off")


def client_for(sim, clock, attempts: int = 6) -> NeonClient:
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    c = NeonClient(sim.api_key, host=HOST, transport=sim.transport(), limiter=False, sleep=sleep,
                   retry=RetryPolicy(max_attempts=attempts, base_delay=0.1))
    c.test_sleep = sleep
    return c


async def _all_projects(c):
    return [p for o in await c.list_organizations() for p in await c.list_projects(o.id)]


# ------------------------------------------------------------------------------------------ validation

def test_validate_accepts_neon_formats_and_names_each_bad_entry():
    good = ["203.0.113.7", "2001:db8::1", "203.0.113.0/24", "2001:db8::/32", "192.0.2.1-192.0.2.20"]
    assert validate(good) == []
    bad = validate(["10.0.0.300", "10.0.0.0/33", "192.0.2.9-192.0.2.1", "10.0.0.1-2001:db8::1", "office", "",
                    "203.0.113.7", "203.0.113.7"])
    messages = [str(p) for p in bad]
    assert len(bad) == 7
    assert messages[0] == "'10.0.0.300': not an IP address, CIDR range or address range"
    assert "CIDR" in messages[1] and "starts after it ends" in messages[2] and "mix IPv4 and IPv6" in messages[3]
    assert messages[4].startswith("'office'") and "empty" in messages[5] and "listed twice" in messages[6]


def test_parse_and_covers():
    assert parse_entries(" 203.0.113.0/24, 192.0.2.1-192.0.2.5\n2001:db8::1 ,,") == [
        "203.0.113.0/24", "192.0.2.1-192.0.2.5", "2001:db8::1"]
    entries = ["203.0.113.0/24", "192.0.2.1-192.0.2.5", "2001:db8::1"]
    assert covers(entries, "203.0.113.200") and covers(entries, "192.0.2.5") and covers(entries, "2001:db8::1")
    assert not covers(entries, "192.0.2.6") and not covers(entries, "198.51.100.1") and not covers(entries, "junk")


def test_plan_allows():
    assert plan_allows("scale") is True and plan_allows("business") is True
    assert plan_allows("free") is False and plan_allows("free_v2") is False and plan_allows("launch") is False
    assert plan_allows("something_new") is None and plan_allows(None) is None


# ------------------------------------------------------------------------------------------ review

async def test_review_flags_open_projects_and_the_protected_only_gap(sim, clock):
    insp = sim.inspect
    prod = insp.project_by_name("acme-prod")
    staging = insp.branch_by_name(prod.id, "staging").id
    main = insp.default_branch_id(prod.id)
    exposed = [[prod.id, staging, "app"], [prod.id, main, "app"]]
    async with client_for(sim, clock) as c:
        projects = await _all_projects(c)
        r = await review(c, projects, exposed=exposed)
    by_name = {p.name: p for p in r.projects}
    assert r.complete and r.exposed_known
    # acme-prod: the demo list covers the protected main only; staging is unprotected and exposed.
    p = by_name["acme-prod"]
    assert p.current == AllowList(("203.0.113.0/24", "127.0.0.1"), True) and p.plan == "scale"
    gaps = [f for f in p.findings if f.kind == "protected_only_gap"]
    assert len(gaps) == 1 and f"staging ({staging})" in gaps[0].message and "(app)" in gaps[0].message
    assert p.flagged
    # acme-analytics: a list on all branches; its loopback entry is only noted, so not flagged.
    a = by_name["acme-analytics"]
    assert not a.flagged and a.current.ips[-1] == "127.0.0.1"
    assert [f.kind for f in a.findings] == ["odd_entry"]
    # Free-plan projects are open, and the finding says the plan is why it cannot be fixed here.
    blog = by_name["blog"]
    assert blog.plan_allows is False and blog.flagged
    assert blog.findings[0].kind == "open" and "on free" in blog.findings[0].message
    assert {x.name for x in r.flagged} == {"acme-prod", "acme-legacy-billing", "acme-ml-features", "side-project",
                                           "blog", "acme-storefront", "acme-storefront-staging"}


async def test_review_without_exposure_notes_open_branches_without_flagging(sim, clock):
    async with client_for(sim, clock) as c:
        prod = [p for p in await _all_projects(c) if p.name == "acme-prod"]
        r = await review(c, prod, exposed=None)
    (p,) = r.projects
    assert not r.exposed_known and not p.flagged
    assert [f.kind for f in p.findings] == ["odd_entry", "protected_only"]
    assert "4 other branch(es) accept every address" in p.findings[1].message


# ------------------------------------------------------------------------------------------ own address

async def test_my_address_given(sim, clock):
    async with client_for(sim, clock) as c:
        given = await find_my_address(c, given="198.51.100.9")
        with pytest.raises(ValueError, match="not an IP address"):
            await find_my_address(c, given="my laptop")
    assert given == MyAddress("198.51.100.9", "given with --my-ip")


async def test_my_address_is_the_key_in_uses_never_a_more_recently_used_other_key():
    """After a leak the most recently used key may be the attacker's: the address is the key in use's."""
    from neon_tui.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(op_seconds=0.05))  # a real clock: list_keys finds the key in use by its last use
    other = next(k for k in sim.account.keys.values() if k.key != sim.api_key and not k.revoked)
    other.last_used_t, other.last_used_from_addr = sim.clock() + 3600, "203.0.113.66"
    async with NeonClient(sim.api_key, host=HOST, transport=sim.transport()) as c:
        mine = await find_my_address(c)
    assert mine.addr == "127.0.0.1" and "the key in use" in mine.source, mine


def test_plan_change_warns_before_excluding_my_address():
    before = AllowList(("203.0.113.0/24",), False)
    me = MyAddress("203.0.113.5", "test")
    c = plan_change(before, AllowList(("198.51.100.0/24",), False), me, project_id="p", name="n", plan="scale")
    assert c.added == ["198.51.100.0/24"] and c.removed == ["203.0.113.0/24"] and c.ok
    assert c.excludes_me
    assert c.warnings[0] == "YOUR ADDRESS 203.0.113.5 would be excluded: you can connect now and would lose access"
    keep = plan_change(before, AllowList(("203.0.113.0/24", "198.51.100.0/24"), False), me, plan="scale")
    assert not keep.excludes_me and keep.warnings == []
    unknown = plan_change(before, AllowList(("198.51.100.0/24",), True), MyAddress(None, "x"), plan="free")
    assert any("free plan" in w for w in unknown.warnings)
    assert any("own address is unknown" in w for w in unknown.warnings)
    assert any("unprotected branches stay open" in w for w in unknown.warnings)
    opened = plan_change(before, AllowList((), False), me)
    assert opened.warnings == ["an empty list opens the project to every address"]
    bad = plan_change(before, AllowList(("10.0.0.300",), False), me)
    assert not bad.ok and "invalid: '10.0.0.300'" in "\n".join(bad.lines())


# ------------------------------------------------------------------------------------------ apply

async def test_apply_waits_for_operations_and_journals(sim, clock, tmp_path):
    insp = sim.inspect
    prod = insp.project_by_name("acme-prod")
    new = AllowList(("203.0.113.0/24", "198.51.100.7", "127.0.0.1"), False)
    states: list[str] = []
    async with client_for(sim, clock) as c:
        before = AllowList.of(await c.get_project(prod.id))
        change = plan_change(before, new, MyAddress("127.0.0.1", "test"), project_id=prod.id, name=prod.name,
                             plan="scale")
        j = open_journal(c, account="acct", key_kind="api_key_user", directory=tmp_path)
        sent = c.requests_sent
        done = await apply(c, change, j, sleep=c.test_sleep, on_state=states.append)
        j.close()
        # Neon still reports the new list afterwards, and the project is idle again.
        assert AllowList.of(await c.get_project(prod.id)) == new
        requests = c.requests_sent - sent
    assert len(done.operations) == len(prod.endpoints) and all(o.status == "finished" for o in done.operations)
    assert prod.allowed_ips == list(new.ips) and prod.protected_branches_only is False
    assert states[0] == "sending the new list" and states[-1] == "applied"
    assert f"waiting for {len(prod.endpoints)} operation(s)" in states
    assert 3 <= requests <= 12
    (path,) = list_action_journals("ipallow", directory=tmp_path)
    log = read_action_journal(path)
    assert log.kind == "ipallow" and log.header["account"] == "acct"
    changed, applied = log.events("ipallow_changed"), log.events("ipallow_applied")
    assert [r["event"] for r in log.records] == ["ipallow_changed", "ipallow_applied"]
    assert changed[0]["before"] == {"ips": ["203.0.113.0/24", "127.0.0.1"], "protected_branches_only": True}
    assert changed[0]["after"] == new.to_json()
    assert changed[0]["operations"] == [o.id for o in done.operations] == applied[0]["operations"]
    assert changed[0]["request_id"]
    assert sim.api_key not in path.read_text()


async def test_apply_waits_out_a_busy_project(sim, clock):
    insp = sim.inspect
    prod = insp.project_by_name("acme-prod")
    main = insp.default_branch_id(prod.id)
    async with client_for(sim, clock, attempts=1) as c:
        await c.reset_role_password(prod.id, main, "app")  # its operations lock the project
        states: list[str] = []
        change = plan_change(AllowList.of(await c.get_project(prod.id)), AllowList(("127.0.0.1",), False),
                             MyAddress("127.0.0.1", "t"), project_id=prod.id, name=prod.name, plan="scale")
        done = await apply(c, change, sleep=c.test_sleep, on_state=states.append)
    assert "project busy (423): waiting for its running operations" in states
    assert done.waited_for_lock >= 0 and prod.allowed_ips == ["127.0.0.1"]
    assert [r.status for r in c.history if r.method == "PATCH"] == [423, 200]


async def test_paid_plan_refusal_is_clear_and_journaled(sim, clock, tmp_path):
    blog = sim.inspect.project_by_name("blog")
    async with client_for(sim, clock) as c:
        change = plan_change(AllowList((), False), AllowList(("203.0.113.0/24",), False),
                             MyAddress("203.0.113.1", "t"), project_id=blog.id, name="blog", plan="free")
        j = open_journal(c, account="a", key_kind=None, directory=tmp_path)
        with pytest.raises(IpAllowError) as e:
            await apply(c, change, j, sleep=c.test_sleep)
        j.close()
    assert e.value.kind == "plan"
    assert e.value.message.startswith("IP Allow needs a paid plan (Scale); Neon refused: IP Allow is not "
                                      "available on the free plan")
    assert "\n" not in e.value.message and blog.allowed_ips == []
    log = read_action_journal(j.path)
    assert [r["event"] for r in log.records] == ["ipallow_failed"]
    assert log.records[0]["reason"] == e.value.message


async def test_simulator_refuses_bad_entries_and_non_boolean_scope(sim, clock):
    import httpx

    pid = sim.inspect.project_by_name("acme-ml-features").id
    async with httpx.AsyncClient(transport=sim.transport(), base_url=HOST,
                                 headers={"Authorization": f"Bearer {sim.api_key}"}) as h:
        r = await h.patch(f"/projects/{pid}", json={"project": {"settings": {"allowed_ips": {
            "ips": ["203.0.113.1", "10.0.0.300"], "protected_branches_only": False}}}})
        assert r.status_code == 400
        assert r.json()["message"] == ('invalid request: project.settings.allowed_ips.ips[1]: "10.0.0.300" is not '
                                       'a valid IP address, CIDR range or IP range')
        r = await h.patch(f"/projects/{pid}", json={"project": {"settings": {"allowed_ips": {
            "ips": ["203.0.113.1"], "protected_branches_only": "yes"}}}})
        assert r.status_code == 400 and r.json()["message"] == (
            "invalid request: decode application/json: invalid: project.settings.allowed_ips.protected_branches_only "
            "(boolean expected)")
        assert json.loads(r.text)["code"] == ""


async def test_invalid_change_is_not_sent(sim, clock):
    pid = sim.inspect.project_by_name("acme-ml-features").id
    async with client_for(sim, clock) as c:
        change = plan_change(AllowList((), False), AllowList(("nope",), False), None, project_id=pid, plan="scale")
        sent = c.requests_sent
        with pytest.raises(IpAllowError, match="invalid entries: 'nope'"):
            await apply(c, change, sleep=c.test_sleep)
        assert c.requests_sent == sent


def test_latest_exposure_reads_the_newest_scan(tmp_path):
    from neon_tui.incident.actions import create_action_journal

    assert latest_exposure(tmp_path) is None
    j = create_action_journal("exposure", host="h", account="a", directory=tmp_path)
    j.write("exposure_scanned", source="leak.env", exposed=[["p1", "br-1", "app"]], unchecked=[], counts={})
    j.close()
    got = latest_exposure(tmp_path)
    assert got is not None and got.exposed == frozenset({("p1", "br-1", "app")}) and got.source == j.path.stem


def test_entry_notes_private_everything_and_host_bits():
    from neon_tui.incident.ipallow import entry_notes

    notes = entry_notes(["10.1.0.0/16", "0.0.0.0/0", "203.0.113.5/24", "198.51.100.7"])
    assert notes == [
        ("10.1.0.0/16 is a private range: Neon sees clients' public addresses, so it never matches", False),
        ("0.0.0.0/0 covers every address: the list restricts nothing", True),
        ("203.0.113.5/24 has host bits set; Neon reads it as 203.0.113.0/24", False),
    ]


def test_the_core_module_never_imports_textual():
    import subprocess

    code = ("import sys; sys.modules['httpx._main'] = None\n"
            "import neon_tui.incident.ipallow, neon_tui.incident.actions\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == ""


async def test_a_lost_answer_is_read_back_then_sent_again(sim, clock):
    prod = sim.inspect.project_by_name("acme-ml-features")
    async with client_for(sim, clock) as c:
        def heal(rec):
            if rec.method == "PATCH":
                sim.set_faults(0)  # only the first PATCH loses its connection (before Neon applied it)

        c.on_request = heal
        change = plan_change(AllowList((), False), AllowList(("127.0.0.1",), False), MyAddress("127.0.0.1", "t"),
                             project_id=prod.id, name=prod.name, plan="scale")
        states: list[str] = []
        sim.set_faults(1.0, ["reset"])
        done = await apply(c, change, sleep=c.test_sleep, on_state=states.append)
    assert "answer lost: reading the project back" in states
    assert [r.status for r in c.history if r.method == "PATCH"] == [None, 200]
    assert prod.allowed_ips == ["127.0.0.1"] and len(done.operations) == len(prod.endpoints)


def test_a_single_private_address_is_named_as_such():
    from neon_tui.incident.ipallow import entry_notes

    assert entry_notes(["192.168.1.10"]) == [
        ("192.168.1.10 is a private address: Neon sees clients' public addresses, so it never matches", False)]
