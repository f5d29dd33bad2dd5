"""Lost answers, crashes and partial failures: reconcile, never reset twice, never hand out a dead password."""

from __future__ import annotations

import pytest
from rotation_helpers import fast_engine, run_all, sim_client

from neon_tui.neon.errors import ServerError
from neon_tui.rotation.events import TargetChanged
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import Journal, read_journal
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.rotation.resume import plan_for_resume


async def one_target(sim, client, selector="acme-prod/staging/app"):
    org = sim.inspect.org_of(sim.inspect.project_by_name(selector.split("/")[0]).id)
    plan = await plan_from_selectors(Inventory(client), [selector], org)
    assert len(plan.targets) == 1
    return plan, plan.targets[0]


async def test_gateway_error_after_an_applied_reset_is_reconciled():
    async with sim_client() as (sim, client):
        plan, t = await one_target(sim, client)
        sim.inspect.set_faults(1.0, ("502_applied",))
        engine = fast_engine(client)
        async for ev in engine.run(plan):
            if isinstance(ev, TargetChanged) and ev.state == "unknown":
                sim.inspect.set_faults(0.0)
        assert engine.states[t.key] == "rotated"
        assert sim.inspect.reset_count(*t.key) == 1
        assert sim.inspect.accepts(*t.key, engine.results[t.key].password.reveal())


async def test_a_reset_still_in_flight_is_seen_by_the_second_look():
    async with sim_client() as (sim, client):
        plan, t = await one_target(sim, client)
        sim.inspect.set_faults(1.0, ("drop_reset_late",))
        engine = fast_engine(client, reconcile_pause=0.3)
        async for ev in engine.run(plan):
            if isinstance(ev, TargetChanged) and ev.state == "unknown":
                sim.inspect.set_faults(0.0)
        assert engine.states[t.key] == "rotated"
        assert sim.inspect.reset_count(*t.key) == 1, "reset again before the first one landed"


async def test_resend_only_after_proof_and_only_a_few_times():
    from neon_tui.neon.errors import OutcomeUnknownError

    async with sim_client() as (sim, client):
        plan, t = await one_target(sim, client)
        sent = []

        async def lost(*key, **kw):
            sent.append(key)  # the answer is lost and nothing was applied
            raise OutcomeUnknownError("the answer was lost")

        client.reset_role_password = lost
        engine = fast_engine(client, reconcile_pause=0.01, max_resends=2)
        await run_all(engine, plan)
        assert engine.states[t.key] == "failed"
        assert "none landed" in engine.record(t.key).reason
        assert len(sent) == 3  # the first try and two resends, each after proof that nothing landed
        looks = [r for r in sim.inspect.requests if r.route and r.route.endswith("{role_name}") and r.method == "GET"]
        assert len(looks) >= 9  # three looks at the role before each resend


async def test_resume_after_a_reset_whose_operations_failed_does_not_report_the_old_password(tmp_path):
    async with sim_client() as (sim, client):
        plan, t = await one_target(sim, client)
        old = sim.inspect.password(*t.key)
        journal = Journal(tmp_path / "run-a.jsonl")
        engine = fast_engine(client, journal=journal)
        # journal the reset as sent, then "crash": the reset lands but its apply_config fails
        await engine.prepare(plan)
        await engine.set_state(t.key, "resetting", before=t.role_updated_at, wall=0)
        journal.close()
        sim.inspect.set_faults(1.0, ("op_failed",))
        await client.reset_role_password(*t.key)
        sim.inspect.set_faults(0.0)
        state = read_journal(journal.path)
        engine2 = fast_engine(client, journal=Journal(journal.path))
        await run_all(engine2, plan, resume=state)
        assert engine2.states[t.key] == "failed"
        assert "never took effect" in engine2.record(t.key).reason
        assert t.key not in engine2.results
        assert sim.inspect.accepts(*t.key, old)
        assert sim.inspect.reset_count(*t.key) == 1


async def test_passing_errors_while_waiting_do_not_lose_the_password():
    async with sim_client() as (sim, client):
        plan, t = await one_target(sim, client)
        real = client.list_operations
        calls = {"n": 0}

        async def flaky(*a, **kw):
            calls["n"] += 1
            if calls["n"] <= 3:
                raise ServerError("bad gateway", status=502)
            return await real(*a, **kw)

        client.list_operations = flaky
        engine = fast_engine(client)
        await run_all(engine, plan)
        assert engine.states[t.key] == "rotated"
        assert calls["n"] > 3


async def test_torn_last_journal_line_is_dropped_before_appending(tmp_path):
    async with sim_client() as (sim, client):
        plan, t = await one_target(sim, client)
        path = tmp_path / "run-c.jsonl"
        engine = fast_engine(client, journal=Journal(path))
        await engine.prepare(plan)
        engine.journal.close()
        with open(path, "a") as fh:
            fh.write('{"t":"x","event":"state","target":["p","b"')  # the crash cut this line short
        state = read_journal(path)
        engine2 = fast_engine(client, journal=Journal(path))
        await run_all(engine2, plan, resume=state)
        after = read_journal(path)  # would raise on a torn line in the middle
        assert after.ended and after.targets[t.key].state == "rotated"


async def test_resume_does_not_treat_a_passing_error_as_a_deleted_project(tmp_path):
    async with sim_client() as (sim, client):
        plan, t = await one_target(sim, client)
        path = tmp_path / "run-d.jsonl"
        engine = fast_engine(client, journal=Journal(path))
        await engine.prepare(plan)
        engine.journal.close()
        state = read_journal(path)

        async def unavailable(pid):
            raise ServerError("service unavailable", status=503)

        inv = Inventory(client)
        client.get_project = unavailable
        with pytest.raises(ServerError):
            await plan_for_resume(inv, state)
