"""The run session against the simulator: one sink protocol, the circuit breaker, passwords never dropped."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from rotation_helpers import ListSink, drain, fast_session, org_of, sim_client

from neon_tui.neon.errors import AuthenticationError, UnexpectedResponseError
from neon_tui.rotation.events import DeliveryFailed, Halted, RunFinished
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import read_journal
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.rotation.session import SessionError
from neon_tui.rotation.sinks import FileSink, SinkError


async def plan_for(sim, client, *selectors, org=None):
    return await plan_from_selectors(Inventory(client), list(selectors), org or sim.inspect.primary_org_id)


def resets(sim):
    return [r for r in sim.inspect.requests if r.route and r.route.endswith("reset_password") and r.method == "POST"]


async def test_a_branch_without_compute_hands_over_the_password_itself(tmp_path):
    async with sim_client() as (sim, client):
        org = org_of(sim, "acme-legacy-billing")
        plan = await plan_for(sim, client, "acme-legacy-billing/hotfix/*", org=org)
        assert plan.targets and all(not t.endpoints for t in plan.targets)
        assert all(not t.store_passwords for t in plan.targets)  # lost for good if not handed over
        sink = ListSink("test")
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        events = await drain(session)
        assert isinstance(events[-1], RunFinished) and events[-1].complete
        got = {r.target.key: r for r in sink.got}
        for t in plan.targets:
            r = got[t.key]
            assert not r.has_endpoint and r.connections == ()
            assert sim.inspect.accepts(*t.key, r.password.reveal())  # the password itself reached the sink
            assert session.view(t.key).state == "delivered"


async def test_no_endpoint_rows_are_labelled_in_the_file(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-legacy-billing/hotfix/app", org=org_of(sim, "acme-legacy-billing"))
        path = tmp_path / "creds.tsv"
        session = fast_session(client, plan, tmp_path, sinks=[FileSink(path)])
        await drain(session)
        await session.close()
        (t,) = plan.targets
        rows = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
        # No compute, so no connection strings: the branch's databases are not listed (issue 11: a request
        # per such branch bought nothing a string could use), and the row says "-" for the database.
        assert rows == [[t.label, "-", "password", sim.inspect.password(*t.key), "live,no-endpoint-yet"]]
        assert oct(path.stat().st_mode & 0o777) == "0o600"


async def test_delivered_only_when_every_chosen_sink_confirmed(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))
        a, b = ListSink("a"), ListSink("b", fail_after=0)
        session = fast_session(client, plan, tmp_path, sinks=[a, b])
        events = await drain(session)
        (t,) = plan.targets
        v = session.view(t.key)
        assert v.state == "rotated" and set(v.delivered) == {"a"} and "b" in v.delivery_failed
        assert sim.inspect.password(*t.key) not in v.delivery_failed["b"]  # a foreign error's text is not repeated
        assert any(isinstance(e, DeliveryFailed) for e in events) and any(isinstance(e, Halted) for e in events)
        assert not events[-1].complete
        assert session.undelivered() == [t.key]
        # retrying the sink once it works delivers what it lacks, and the target is then delivered
        b.fail_after = None
        await session.retry_sink("b")
        assert session.view(t.key).state == "delivered" and session.complete
        assert len(a.got) == 1 and len(b.got) == 1  # a was not given it twice


async def test_a_sink_failing_mid_run_stops_new_resets_everywhere(tmp_path):
    import asyncio

    async with sim_client(projects=6, branches=3, roles=2, op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "*")
        assert len(plan.targets) >= 50
        # The sink refuses one project only: every other project could go on delivering, and must not reset.
        bad = plan.targets[len(plan.targets) // 2].project_id
        sink = ListSink("keyring", fail_project=bad)
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        at_halt = None
        async for ev in session.run():
            if isinstance(ev, Halted) and at_halt is None:
                at_halt = len(resets(sim))
                await asyncio.sleep(0.5)  # the front end thinks; the engine must start nothing meanwhile
                after_wait = len(resets(sim))
                session.stop()
        assert at_halt is not None
        # Only resets already on their way when the sink failed go out: at most one per project.
        assert after_wait - at_halt <= len(plan.projects) and len(resets(sim)) == after_wait
        assert len(resets(sim)) < len(plan.targets) // 2 + len(plan.projects)
        states = session.counts()
        held = session.undelivered()
        # The breaker trips the whole sink, not one project: the refused project's password is held, and so is
        # each password whose reset was already in flight elsewhere when the sink tripped (at most one per
        # project, as one mutation runs per project). How many of those there are depends on timing.
        per_project = Counter(k[0] for k in held)
        assert per_project[bad] >= 1
        assert all(n == 1 for p, n in per_project.items() if p != bad), per_project
        delivered = {r.target.key for r in sink.got}
        assert not any(k[0] == bad for k in delivered) and not delivered & set(held)
        assert states.get("cancelled", 0) == len(plan.targets) - len(resets(sim))
        for key in held:  # held passwords are live and still in hand: nothing lost
            assert sim.inspect.accepts(*key, session.result(key).password.reveal())
        assert all(sim.inspect.reset_count(*t.key) <= 1 for t in plan.targets)
        await session.close()
        state = read_journal(session.journal_path)
        assert not state.ended  # resumable


async def test_replacing_a_failed_sink_delivers_the_held_passwords_and_continues(tmp_path):
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/*", "acme-prod/main/app", org=org_of(sim, "acme-prod"))
        broken, spare = ListSink("keyring", fail_after=1), ListSink("file")
        session = fast_session(client, plan, tmp_path, sinks=[broken])
        async for ev in session.run():
            if isinstance(ev, Halted):
                await session.replace_sink("keyring", spare)
        assert session.complete and set(session.counts()) == {"delivered"}
        assert len(broken.got) == 1 and len(spare.got) == len(plan.targets) - 1
        delivered_to = {k: set(session.view(k).delivered) for k in (t.key for t in plan.targets)}
        assert all(d & {"keyring", "file"} for d in delivered_to.values())
        assert all(sim.inspect.reset_count(*t.key) == 1 for t in plan.targets)


@pytest.mark.parametrize("trouble", ["revoked", "garbled"])
async def test_a_password_in_hand_is_handed_over_unconfirmed_and_the_project_halts(tmp_path, trouble):
    async with sim_client(op_seconds=0.2) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/*", org=org_of(sim, "acme-prod"))
        first = plan.targets[0]
        real = client.list_operations

        async def broken(*a, **kw):
            if trouble == "revoked":
                raise AuthenticationError("API key revoked", status=401)
            raise UnexpectedResponseError("Neon answered with something that is not JSON", status=200)

        client.list_operations = broken
        sink = ListSink("test")
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        await drain(session)
        v = session.view(first.key)
        assert v.state == "unconfirmed" and "test" in v.delivered
        (got,) = sink.got
        assert got.target.key == first.key and not got.confirmed
        # no further reset started in that project
        assert [t for t in plan.targets if sim.inspect.reset_count(*t.key)] == [first]
        assert all(session.view(t.key).state == "cancelled" for t in plan.targets[1:])
        assert not session.complete
        await session.close()
        # resume: the operations are checked first, the password delivered earlier is confirmed, the rest runs
        client.list_operations = real
        state = read_journal(session.journal_path)
        assert state.targets[first.key].state == "unconfirmed"
        sink2 = ListSink("test")
        session2 = fast_session(client, plan, sinks=[sink2], resume=state)
        await drain(session2)
        assert session2.view(first.key).state == "delivered"
        assert sim.inspect.accepts(*first.key, got.password.reveal())
        assert first.key not in {r.target.key for r in sink2.got}  # not handed over twice
        assert session2.complete and all(sim.inspect.reset_count(*t.key) == 1 for t in plan.targets)


async def test_abort_hands_over_passwords_in_hand_as_unconfirmed(tmp_path):
    async with sim_client(op_seconds=1.0) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))
        sink = ListSink("test")
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        async for ev in session.run():
            if getattr(ev, "state", None) == "applying":
                session.abort()  # e.g. the second Ctrl-C
        (t,) = plan.targets
        assert session.view(t.key).state == "unconfirmed"
        (got,) = sink.got
        assert not got.confirmed and sim.inspect.pending_password(*t.key) == got.password.reveal()


async def test_a_reset_answered_429_is_waited_out_like_423(tmp_path):
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))
        from neon_tui.neon.errors import RateLimitedError

        real = client.reset_role_password
        calls = {"n": 0}

        async def limited(*a, **kw):
            calls["n"] += 1
            if calls["n"] <= 2:
                raise RateLimitedError("rate limit exceeded", status=429, retry_after=0.01)
            return await real(*a, **kw)

        client.reset_role_password = limited
        sink = ListSink("test")
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        await drain(session)
        (t,) = plan.targets
        assert session.view(t.key).state == "delivered" and calls["n"] == 3


async def test_none_is_refused_for_projects_that_do_not_store_passwords(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-legacy-billing/main/app", org=org_of(sim, "acme-legacy-billing"))
        session = fast_session(client, plan, tmp_path)
        with pytest.raises(SessionError, match="do not store passwords|does not store passwords|do\\(es\\) not"):
            await session.prepare()
        assert not resets(sim)


async def test_preflight_failure_resets_nothing(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/*", org=org_of(sim, "acme-prod"))
        session = fast_session(client, plan, tmp_path, sinks=[ListSink("keyring", fail_preflight="locked")])
        with pytest.raises(SessionError, match="keyring: locked"):
            await drain(session)
        assert not resets(sim)


async def test_a_full_disk_mid_run_halts_resets_and_still_delivers(tmp_path):
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/*", org=org_of(sim, "acme-prod"))
        sink = ListSink("test")
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        await session.prepare()
        journal = session.journal
        halted = []
        async for ev in session.run():
            if getattr(ev, "state", None) == "applying" and journal._fh.name != "/dev/full":
                # The disk fills up while the first reset's operations run: every later write gets ENOSPC.
                journal._fh.close()
                journal._fh = open("/dev/full", "a", encoding="utf-8")
            if isinstance(ev, Halted):
                halted.append(ev)
                session.stop()
        assert halted and halted[0].source == "journal" and "No space left" in halted[0].reason
        first = plan.targets[0]
        assert [t for t in plan.targets if sim.inspect.reset_count(*t.key)] == [first]  # nothing new started
        (got,) = sink.got  # the password in hand still reached the sink
        assert sim.inspect.accepts(*first.key, got.password.reveal())


async def test_a_damaged_journal_is_resumed_conservatively(tmp_path):
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/*", org=org_of(sim, "acme-prod"))
        sink = ListSink("test", fail_after=1)
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        async for ev in session.run():
            if isinstance(ev, Halted):
                session.stop()
        await session.close()
        path = session.journal_path
        lines = path.read_text().splitlines()
        lines.insert(2, "{this is not json")
        path.write_text("\n".join(lines) + "\n")
        state = read_journal(path)
        assert state.problems and f"{path}:3" in state.problems[0]
        assert {t.state for t in state.targets.values()} <= {"unknown", "delivered", "rotated", "failed"}
        assert "unknown" in {t.state for t in state.targets.values()}
        session2 = fast_session(client, plan, sinks=[ListSink("test")], resume=state)
        await drain(session2)
        assert session2.complete
        assert all(sim.inspect.reset_count(*t.key) == 1 for t in plan.targets)  # reconciled, never reset twice


@pytest.mark.slow
async def test_journal_lines_never_hold_a_secret(tmp_path):
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod", org=org_of(sim, "acme-prod"))
        sink = ListSink("test")
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        await drain(session)
        await session.close()
        text = session.journal_path.read_text()
        assert len(sink.got) == len(plan.targets) > 0
        for r in sink.got:
            assert r.password.reveal() not in text
        assert sim.api_key not in text
        for line in text.splitlines():
            json.loads(line)


async def test_file_sink_refuses_an_existing_file_before_any_reset(tmp_path):
    async with sim_client() as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))
        path = tmp_path / "exists.txt"
        path.write_text("somebody's notes\n")
        session = fast_session(client, plan, tmp_path, sinks=[FileSink(path)])
        with pytest.raises(SessionError, match="exists"):
            await session.prepare()
        assert path.read_text() == "somebody's notes\n" and not resets(sim)
        with pytest.raises(SinkError):
            await FileSink(tmp_path / "no-such-dir" / "x").preflight()


async def test_retry_delivery_redelivers_one_target_to_one_sink_and_releases_the_breaker(tmp_path):
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", "acme-prod/main/app", org=org_of(sim, "acme-prod"))
        good, flaky = ListSink("memo"), ListSink("vault", fail_after=1)
        session = fast_session(client, plan, tmp_path, sinks=[good, flaky])
        async for ev in session.run():
            if isinstance(ev, Halted):
                session.stop()
        held = session.undelivered()
        assert len(held) == 1 and "vault" in session.view(held[0]).delivery_failed
        key = held[0]
        with pytest.raises(SinkError):  # still broken: journaled as failed again, the breaker stays open
            await session.retry_delivery(key, "vault")
        assert "vault" in session.halts
        flaky.fail_after = None
        receipt = await session.retry_delivery(key, "vault")
        assert receipt.sink == "vault" and session.view(key).state == "delivered"
        assert not session.view(key).delivery_failed and "vault" not in session.halts
        assert session.complete
        with pytest.raises(SinkError, match="not a sink"):
            await session.retry_delivery(key, "nowhere")
        await session.close()
        state = read_journal(session.journal_path)
        assert state.targets[key].delivered.get("vault") == receipt.detail
        text = session.journal_path.read_text()
        for t in plan.targets:
            assert sim.inspect.password(*t.key) not in text
