"""Verification: the verdict logic (an injected login function, deterministic) and the session running it
in the background (never delaying delivery, stopped by cancel, old passwords held in memory only)."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlsplit

import pytest
from rotation_helpers import ListSink, drain, fast_session, org_of, sim_client

from neon_tui.neon.models import Database, Endpoint
from neon_tui.neon.secret import Secret
from neon_tui.rotation.events import RunFinished, TargetVerified
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import read_journal
from neon_tui.rotation.logins import Login, LoginOutcome, Route
from neon_tui.rotation.plan import Target, connection_uri, plan_from_selectors
from neon_tui.rotation.verify import NewVerdict, OldVerdict, Verification, Verifier, summarize, summary_line

# ---------------------------------------------------------------------------------------------- verdicts


def _target(endpoint: bool = True, store: bool = True) -> Target:
    ep = Endpoint("ep-x", "p-1", "br-1", "ep-x.c-2.us-east-2.aws.neon.tech", "read_write", "idle", True, False,
                  None, None) if endpoint else None
    db = Database(1, "br-1", "neondb", "app", None, None)
    return Target("p-1", "proj", "br-1", "main", "app", None, store, False, (ep,) if ep else (), (db,))


NEW = Secret("new-Pw-1")


def _uris(t: Target) -> list[tuple[str, Secret]]:
    ep = t.connect_endpoint
    return [("direct", connection_uri("app", NEW, ep.host, "neondb")),
            ("pooled", connection_uri("app", NEW, ep.pooler_host, "neondb"))]


def scripted(answers: dict[tuple[str, str], Login], calls: list | None = None):
    """A login function: (kind of host, password) -> answer; kind is 'pooled' for a -pooler host."""

    async def login(uri, password=None, *, route=None, timeout=10):
        raw = uri.reveal() if isinstance(uri, Secret) else uri
        parts = urlsplit(raw)
        pw = password.reveal() if password is not None else unquote(parts.password or "")
        kind = "pooled" if "-pooler." in parts.hostname else "direct"
        if calls is not None:
            calls.append((kind, pw, route, timeout))
        result = answers.get((kind, pw), Login.REJECTED)
        return LoginOutcome(result, {Login.OK: "logged in", Login.REJECTED: "password authentication failed",
                                     Login.UNKNOWN: "timed out"}[result])

    return login


async def test_new_ok_on_both_strings_and_every_old_password_rejected():
    calls = []
    v = Verifier(route=Route("127.0.0.1", 5432), timeout=3,
                 login=scripted({("direct", "new-Pw-1"): Login.OK, ("pooled", "new-Pw-1"): Login.OK}, calls))
    out = await v.verify(_target(), _uris(_target()), [Secret("old-1"), Secret("old-2")])
    assert (out.new, out.old) == (NewVerdict.OK, OldVerdict.REJECTED) and out.verified and not out.alarm
    assert [c.kind for c in out.new_checks] == ["direct", "pooled"]
    assert len(out.old_checks) == 2
    assert all(route == Route("127.0.0.1", 5432) and timeout == 3 for *_, route, timeout in calls)
    assert out.short() == "✓ new · old dead"


async def test_a_rejected_new_password_is_failed_and_an_unreachable_one_unknown():
    t = _target()
    failed = await Verifier(login=scripted({("direct", "new-Pw-1"): Login.OK})).verify(t, _uris(t))
    assert failed.new is NewVerdict.FAILED and "pooled" in failed.new_reason and failed.short().startswith("new ✗")
    unknown = await Verifier(login=scripted({("direct", "new-Pw-1"): Login.OK,
                                             ("pooled", "new-Pw-1"): Login.UNKNOWN})).verify(t, _uris(t))
    assert unknown.new is NewVerdict.UNKNOWN and "timed out" in unknown.new_reason


async def test_old_verdicts_any_accepted_is_an_alarm_all_rejected_is_dead_otherwise_unknown():
    t = _target()
    ok = {("direct", "new-Pw-1"): Login.OK, ("pooled", "new-Pw-1"): Login.OK}
    calls = []
    alarm = await Verifier(login=scripted({**ok, ("direct", "old-2"): Login.OK}, calls),
                           recheck_delays=(0.01, 0.02)).verify(t, _uris(t), [Secret("old-1"), Secret("old-2")])
    assert alarm.old is OldVerdict.STILL_ACCEPTED and alarm.alarm and alarm.short() == "OLD STILL WORKS"
    assert [c[1] for c in calls].count("old-2") == 3  # checked again twice before the alarm
    assert "0.03s after the first check" in alarm.old_reason
    mixed = await Verifier(login=scripted({**ok, ("direct", "old-2"): Login.UNKNOWN})).verify(
        t, _uris(t), [Secret("old-1"), Secret("old-2")])
    assert mixed.old is OldVerdict.UNKNOWN and not mixed.alarm
    none = await Verifier(login=scripted(ok)).verify(t, _uris(t), [], old_missing="no old password: because")
    assert none.old is OldVerdict.NOT_CHECKED and none.old_reason == "no old password: because"
    # the new password given again as an "old" one (a leaked list that already has it) is not an alarm
    same = await Verifier(login=scripted(ok)).verify(t, _uris(t), [Secret("new-Pw-1")])
    assert same.old is OldVerdict.NOT_CHECKED


async def test_an_old_password_accepted_once_then_refused_is_no_alarm():
    """Right after the operations finish a compute may still be taking its new configuration: look again."""
    t = _target()
    answers = {("direct", "new-Pw-1"): Login.OK, ("pooled", "new-Pw-1"): Login.OK, ("direct", "old-1"): Login.OK}
    login = scripted(answers)

    async def flipping(uri, password=None, **kw):
        out = await login(uri, password, **kw)
        if password is not None and password.reveal() == "old-1":
            answers[("direct", "old-1")] = Login.REJECTED  # the server caught up
        return out

    out = await Verifier(login=flipping, recheck_delays=(0.01, 0.01)).verify(t, _uris(t), [Secret("old-1")])
    assert out.old is OldVerdict.REJECTED and not out.alarm


async def test_no_endpoint_is_skipped_and_no_postgres_is_not_verified_without_a_login():
    calls = []
    login = scripted({}, calls)
    out = await Verifier(login=login).verify(_target(endpoint=False), [], [Secret("old")])
    assert (out.new, out.old) == (NewVerdict.SKIPPED, OldVerdict.NOT_CHECKED) and out.new_reason == "no endpoint"
    out = await Verifier(login=login, unavailable="no PostgreSQL here").verify(_target(), _uris(_target()))
    assert out.describe() == "not verified: no PostgreSQL here" and not out.verified
    assert calls == []


async def test_a_login_function_that_raises_proves_nothing():
    async def broken(uri, password=None, **kw):
        raise RuntimeError("boom " + (password.reveal() if password else ""))

    out = await Verifier(login=broken).verify(_target(), _uris(_target()), [Secret("old-secret")])
    assert (out.new, out.old) == (NewVerdict.UNKNOWN, OldVerdict.UNKNOWN)
    assert "old-secret" not in repr(out) and "boom" not in repr(out)


async def test_concurrency_is_bounded():
    running, peak = 0, 0

    async def slow(uri, password=None, **kw):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return LoginOutcome(Login.REJECTED, "password authentication failed")

    v = Verifier(login=slow, concurrency=2)
    t = _target()
    await asyncio.gather(*(v.verify(t, _uris(t), [Secret(f"o{i}") for i in range(3)]) for _ in range(3)))
    assert peak == 2


def test_json_round_trip_and_summary():
    v = Verification(NewVerdict.OK, OldVerdict.STILL_ACCEPTED, "", "an old password still logs in", "neondb")
    assert Verification.from_json(v.to_json()) == v
    counts = summarize([v, Verification.not_verified("no PostgreSQL here"), None])
    assert counts == {"new ok": 1, "old still-accepted": 1, "not verified": 1}
    assert "OLD PASSWORD STILL ACCEPTED on 1" in summary_line(counts)


# ---------------------------------------------------------------------------------------------- the session


def sim_login(sim, plan, *, gate: asyncio.Event | None = None, calls: list | None = None, extra_ok=()):
    """Logs in against the simulator's own idea of each role's password (no PostgreSQL needed)."""
    hosts = {}
    for t in plan.targets:
        ep = t.connect_endpoint
        if ep is not None:
            hosts[ep.host] = hosts[ep.pooler_host] = (t.project_id, t.branch_id)

    async def login(uri, password=None, *, route=None, timeout=10):
        if gate is not None:
            await gate.wait()
        raw = uri.reveal() if isinstance(uri, Secret) else uri
        parts = urlsplit(raw)
        pw = password.reveal() if password is not None else unquote(parts.password or "")
        if calls is not None:
            calls.append(pw)
        if pw in extra_ok:
            return LoginOutcome(Login.OK, "logged in")
        project, branch = hosts[parts.hostname]
        ok = sim.inspect.accepts(project, branch, unquote(parts.username), pw)
        return LoginOutcome(Login.OK if ok else Login.REJECTED, "logged in" if ok else "password authentication failed")

    return login


async def plan_for(sim, client, selector, project):
    return await plan_from_selectors(Inventory(client), [selector], org_of(sim, project))


async def test_new_password_works_and_the_revealed_old_one_is_rejected_and_never_journaled(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/*", "acme-prod")
        before = {t.key: sim.inspect.password(*t.key) for t in plan.targets}
        sink = ListSink()
        session = fast_session(client, plan, tmp_path, sinks=[sink], verify=True,
                               verifier=Verifier(login=sim_login(sim, plan)))
        events = await drain(session)
        await session.close()
        finished = events[-1]
        assert isinstance(finished, RunFinished) and finished.complete
        verified = {e.key: e.verification for e in events if isinstance(e, TargetVerified)}
        assert set(verified) == {t.key for t in plan.targets}
        for t in plan.targets:
            v = session.view(t.key).verification
            assert v is verified[t.key]
            if t.endpoints:
                assert v.verified, v.describe()
            else:
                assert v.new is NewVerdict.SKIPPED and v.new_reason == "no endpoint"
        assert finished.verification.get("old still-accepted") is None
        assert not session.alarms()
        # one reveal per target, each before its reset
        reqs = [(r.method, r.route) for r in sim.inspect.requests if r.route and "/roles/" in r.route]
        assert sum(1 for m, r in reqs if r.endswith("reveal_password")) == len(plan.targets)
        text = (tmp_path / "run-session.jsonl").read_text()
        for t in plan.targets:
            assert before[t.key] not in text and sim.inspect.password(*t.key) not in text
            assert before[t.key] not in repr(events)
        state = read_journal(tmp_path / "run-session.jsonl")  # tolerates (and keeps) the verified records
        assert all(state.targets[t.key].verified["new"] in ("ok", "skipped") for t in plan.targets)


@pytest.mark.slow
async def test_a_leaked_password_that_still_logs_in_is_an_alarm(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", "acme-prod")
        leaked = Secret("leaked-and-still-good")
        session = fast_session(client, plan, tmp_path, sinks=[ListSink()], verify=True, leaked=[leaked],
                               verifier=Verifier(login=sim_login(sim, plan, extra_ok={"leaked-and-still-good"})))
        events = await drain(session)
        (t,) = plan.targets
        assert session.alarms() == [t.key]
        assert events[-1].verification["old still-accepted"] == 1
        assert "leaked-and-still-good" not in (tmp_path / "run-session.jsonl").read_text()


async def test_an_old_password_given_for_a_target_is_not_read_again(tmp_path):
    """The exposure scan already matched the target's current password: no reveal before its reset."""
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/*", "acme-prod")
        given = {t.key: [Secret(sim.inspect.password(*t.key))] for t in plan.targets[:2]}
        session = fast_session(client, plan, tmp_path, sinks=[ListSink()], verify=True, old_passwords=given,
                               verifier=Verifier(login=sim_login(sim, plan)))
        await drain(session)
        reveals = [r for r in sim.inspect.requests if r.route and r.route.endswith("reveal_password")]
        assert len(reveals) == len(plan.targets) - 2
        for key in given:
            v = session.view(key).verification
            assert (v.new, v.old) == (NewVerdict.OK, OldVerdict.REJECTED)  # proven with the given password


async def test_without_stored_passwords_the_old_password_is_not_checked_and_not_read(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-legacy-billing/*/*", "acme-legacy-billing")
        assert plan.targets and not any(t.store_passwords for t in plan.targets)
        session = fast_session(client, plan, tmp_path, sinks=[ListSink()], verify=True,
                               verifier=Verifier(login=sim_login(sim, plan)))
        await drain(session)
        assert not any(r.route and r.route.endswith("reveal_password") for r in sim.inspect.requests)
        assert any(t.endpoints for t in plan.targets)
        for t in plan.targets:
            v = session.view(t.key).verification
            assert v.old is OldVerdict.NOT_CHECKED
            assert ("does not store passwords" if t.endpoints else "no endpoint") in v.old_reason


@pytest.mark.slow
async def test_verification_never_delays_delivery_and_stops_on_cancel(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/*/*", "acme-prod")
        gate = asyncio.Event()  # every login hangs until the test says so
        sink = ListSink()
        session = fast_session(client, plan, tmp_path, sinks=[sink], verify=True,
                               verifier=Verifier(login=sim_login(sim, plan, gate=gate)))
        events = []

        async def consume():
            async for ev in session.run():
                events.append(ev)

        await session.prepare()
        task = asyncio.create_task(consume())
        for _ in range(400):
            if all(session.view(t.key).state in ("delivered", "failed") for t in plan.targets):
                break
            await asyncio.sleep(0.02)
        # every password reached the sink while every login was still blocked
        assert {r.target.key for r in sink.got} == {t.key for t in plan.targets}
        assert all(session.view(t.key).state == "delivered" for t in plan.targets)
        assert not task.done() and session.running  # the run waits for its verifications...
        session.cancel()  # ...and a cancel stops them
        await asyncio.wait_for(task, 5)
        assert isinstance(events[-1], RunFinished)
        for t in plan.targets:
            v = session.view(t.key).verification
            assert v is not None and not v.verified
            assert ("cancelled" if t.endpoints else "no endpoint") in v.describe()
        assert not any(v.verifying for v in session.views())  # no verification left running


async def test_no_postgres_here_is_said_and_reads_no_old_password(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", "acme-prod")
        session = fast_session(client, plan, tmp_path, sinks=[ListSink()], verify=True,
                               verify_unavailable="no PostgreSQL here")
        await drain(session)
        (t,) = plan.targets
        assert session.view(t.key).verification.describe() == "not verified: no PostgreSQL here"
        assert not any(r.route and r.route.endswith("reveal_password") for r in sim.inspect.requests)


async def test_old_passwords_must_be_secrets(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", "acme-prod")
        with pytest.raises(TypeError):
            fast_session(client, plan, tmp_path, verify=True, leaked=["plain"])
        with pytest.raises(TypeError):
            fast_session(client, plan, tmp_path, verify=True, old_passwords={plan.targets[0].key: ["plain"]})


async def test_a_refusal_proves_nothing_when_the_new_password_is_refused_too():
    """A wrong route (stray PGHOSTADDR) or a stale compute refuses everything: that is no proof of death."""
    t = _target()
    out = await Verifier(login=scripted({})).verify(t, _uris(t), [Secret("old-1")])
    assert out.new is NewVerdict.FAILED
    assert out.old is OldVerdict.UNKNOWN and "proves nothing" in out.old_reason and not out.verified
    # the pooled string working is not enough: old passwords are tried on the direct host
    out = await Verifier(login=scripted({("pooled", "new-Pw-1"): Login.OK})).verify(t, _uris(t), [Secret("old-1")])
    assert out.old is OldVerdict.UNKNOWN


async def test_a_timeout_on_the_recheck_does_not_erase_a_login_with_the_old_password():
    t = _target()
    answers = {("direct", "new-Pw-1"): Login.OK, ("pooled", "new-Pw-1"): Login.OK, ("direct", "old-1"): Login.OK}
    login = scripted(answers)

    async def then_silent(uri, password=None, **kw):
        out = await login(uri, password, **kw)
        if password is not None and password.reveal() == "old-1":
            answers[("direct", "old-1")] = Login.UNKNOWN  # the compute stops answering
        return out

    out = await Verifier(login=then_silent, recheck_delays=(0.01, 0.01)).verify(t, _uris(t), [Secret("old-1")])
    assert out.old is OldVerdict.STILL_ACCEPTED and out.alarm
