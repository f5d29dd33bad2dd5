"""The engine against the simulator: rotation, waiting for operations, locks, faults, reconcile, cancel."""

from __future__ import annotations

import json

import pytest
from rotation_helpers import ManualClock, fast_engine, org_of, run_all, sim_client

from neon_tui.rotation.events import RunFinished, TargetChanged
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import Journal, read_journal
from neon_tui.rotation.plan import plan_from_selectors


async def plan_for(sim, client, *selectors, org=None):
    org = org or sim.inspect.primary_org_id
    return await plan_from_selectors(Inventory(client), list(selectors), org)


def all_secrets(sim, client_key=None):
    out = {sim.api_key}
    for k in sim.inspect.login_roles():
        out.add(sim.inspect.password(*k))
    return out


@pytest.mark.slow
async def test_rotates_every_target_once_and_the_new_password_works(demo, tmp_path):
    sim, client = demo
    org = org_of(sim, "acme-prod")
    plan = await plan_for(sim, client, "acme-prod", org=org)
    old = {t.key: sim.inspect.password(*t.key) for t in plan.targets}
    journal = Journal(tmp_path / "run-test.jsonl")
    engine = fast_engine(client, journal=journal)
    events = await run_all(engine, plan)
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.counts == {"rotated": len(plan.targets)}
    for t in plan.targets:
        res = engine.results[t.key]
        new = res.password.reveal()
        assert sim.inspect.reset_count(*t.key) == 1
        assert new != old[t.key]
        assert sim.inspect.accepts(*t.key, new) and not sim.inspect.accepts(*t.key, old[t.key])
        if t.endpoints:
            assert res.connections and all(new in c.direct.reveal() for c in res.connections)
            assert res.connections[0].pooled.reveal().count("-pooler.") == 1
    # state order per target: planned -> resetting -> applying -> rotated
    seq = [e.state for e in events if isinstance(e, TargetChanged) and e.key == plan.targets[0].key]
    assert seq[0] == "planned" and seq[-1] == "rotated" and "resetting" in seq and "applying" in seq
    text = journal.path.read_text()
    journal.close()
    for secret in all_secrets(sim) | set(old.values()):
        assert secret not in text
    state = read_journal(journal.path)
    assert state.ended and set(t.state for t in state.targets.values()) == {"rotated"}


async def test_new_password_only_reported_after_operations_finish(tmp_path):
    # The simulator's clock is the test's: operations finish when the test moves it, not when the wall clock
    # happens to pass op_seconds (under load the engine can be late by more than that, which made this flaky).
    clock = ManualClock()
    async with sim_client(clock=clock, op_seconds=0.3) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))
        (t,) = plan.targets
        old = sim.inspect.password(*t.key)
        engine = fast_engine(client)
        seen = []
        async for ev in engine.run(plan):
            if not isinstance(ev, TargetChanged):
                continue
            seen.append(ev.state)
            if ev.state == "applying" and seen.count("applying") == 1:
                # operations still running: the old password still works, the new one is only pending
                assert sim.inspect.locked(t.project_id)
                assert sim.inspect.accepts(*t.key, old)
                pending = sim.inspect.pending_password(*t.key)
                assert pending is not None and not sim.inspect.accepts(*t.key, pending)
                assert engine.states[t.key] == "applying" and t.key not in engine.results
                clock.advance(0.31)  # now they finish
            if ev.state == "rotated":
                assert ev.result.password.reveal() == pending
                assert sim.inspect.accepts(*t.key, pending) and not sim.inspect.accepts(*t.key, old)
                assert not sim.inspect.locked(t.project_id)
        assert seen[-1] == "rotated" and "applying" in seen


@pytest.mark.slow
async def test_one_mutation_in_flight_per_project_and_no_423_failures():
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod", "acme-analytics", org=org_of(sim, "acme-prod"))
        engine = fast_engine(client)
        await run_all(engine, plan)
        assert set(engine.states.values()) == {"rotated"}
        resets = [r for r in sim.inspect.requests if r.route.endswith("reset_password")]
        locked = [r for r in resets if r.status == 423]
        assert not locked, "the engine sent a reset while its own operations were running"


async def test_waits_out_a_lock_held_by_someone_else():
    async with sim_client(op_seconds=0.3) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/main/app", org=org_of(sim, "acme-prod"))
        (t,) = plan.targets
        # someone else resets another role: the project is locked for ~0.3 s
        await client.reset_role_password(t.project_id, t.branch_id, "migrator")
        assert sim.inspect.locked(t.project_id)
        engine = fast_engine(client)
        await run_all(engine, plan)
        assert engine.states[t.key] == "rotated" and sim.inspect.reset_count(*t.key) == 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
async def test_ten_percent_faults_every_target_ends_and_none_is_reset_twice(seed, tmp_path):
    async with sim_client(seed=seed, projects=4, branches=3, roles=2, op_seconds=0.03) as (sim, client):
        plan = await plan_for(sim, client, "*")
        assert len(plan.targets) == 4 * 3 * 3
        sim.inspect.set_faults(0.10, ("500", "503", "429", "reset", "drop_reset", "423", "op_failed"))
        journal = Journal(tmp_path / "run-faults.jsonl")
        engine = fast_engine(client, journal=journal)
        events = await run_all(engine, plan)
        sim.inspect.set_faults(0.0)
        for t in plan.targets:
            state = engine.states[t.key]
            assert state in ("rotated", "failed"), (t.label, state)
            assert sim.inspect.reset_count(*t.key) <= 1, f"{t.label} reset twice"
            if state == "failed":
                assert engine.record(t.key).reason
            else:
                assert sim.inspect.accepts(*t.key, engine.results[t.key].password.reveal())
        faults = {r.fault for r in sim.inspect.requests if r.fault}
        assert faults  # faults really happened (each kind has its own deterministic test)
        rotated = sum(1 for s in engine.states.values() if s == "rotated")
        assert rotated >= len(plan.targets) * 0.7
        assert isinstance(events[-1], RunFinished)
        journal.close()
        assert sim.api_key not in journal.path.read_text()


async def test_dropped_reset_answer_is_reconciled_not_resent():
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))
        (t,) = plan.targets
        sim.inspect.set_faults(1.0, ("drop_reset",))
        engine = fast_engine(client)
        states = []
        async for ev in engine.run(plan):
            if isinstance(ev, TargetChanged):
                states.append(ev.state)
                if ev.state == "unknown":
                    sim.inspect.set_faults(0.0)
        assert "unknown" in states and states[-1] == "rotated"
        assert sim.inspect.reset_count(*t.key) == 1
        # the password came back through reveal_password and is the one the simulator now accepts
        assert sim.inspect.accepts(*t.key, engine.results[t.key].password.reveal())


async def test_dropped_reset_without_stored_passwords_fails_with_a_clear_reason():
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-legacy-billing/main/app", org=org_of(sim, "acme-legacy-billing"))
        (t,) = plan.targets
        assert not t.store_passwords
        sim.inspect.set_faults(1.0, ("drop_reset",))
        engine = fast_engine(client)
        async for ev in engine.run(plan):
            if isinstance(ev, TargetChanged) and ev.state == "unknown":
                sim.inspect.set_faults(0.0)
        assert engine.states[t.key] == "failed"
        assert "does not store passwords" in engine.record(t.key).reason
        assert sim.inspect.reset_count(*t.key) == 1


@pytest.mark.slow
async def test_cancel_stops_new_resets_and_lets_in_flight_finish(tmp_path):
    async with sim_client(op_seconds=0.1) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod", org=org_of(sim, "acme-prod"))
        journal = Journal(tmp_path / "run-cancel.jsonl")
        engine = fast_engine(client, journal=journal)
        async for ev in engine.run(plan):
            if isinstance(ev, TargetChanged) and ev.state == "resetting" and not engine.cancelled:
                engine.cancel()
        states = engine.states
        assert list(states.values()).count("rotated") == 1
        assert set(states.values()) == {"rotated", "cancelled"}
        journal.close()
        state = read_journal(journal.path)
        assert not state.ended  # cancelled work stays resumable
        # resuming finishes the rest with no double reset
        engine2 = fast_engine(client, journal=Journal(journal.path))
        await run_all(engine2, plan, resume=state)
        assert set(engine2.states.values()) == {"rotated"}
        assert all(sim.inspect.reset_count(*t.key) == 1 for t in plan.targets)


async def test_operation_failure_fails_the_target_with_the_operation_error():
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))
        (t,) = plan.targets
        sim.inspect.set_faults(1.0, ("op_failed",))
        engine = fast_engine(client)
        await run_all(engine, plan)
        sim.inspect.set_faults(0.0)
        assert engine.states[t.key] == "failed"
        assert "failed" in engine.record(t.key).reason


async def test_journal_refuses_secrets(tmp_path):
    from neon_tui.neon import Secret
    from neon_tui.rotation.journal import JournalError

    j = Journal(tmp_path / "run-x.jsonl")
    with pytest.raises(JournalError):
        j.write("state", password="x")
    with pytest.raises(JournalError):
        j.write("state", nested={"a": [Secret("x")]})
    j.write("state", target=["p", "b", "r"], state="planned")
    j.close()
    line = json.loads((tmp_path / "run-x.jsonl").read_text().strip())
    assert line["state"] == "planned"


@pytest.mark.slow
async def test_polls_learn_that_operations_finish_sooner_than_the_first_guess():
    """A first guess of 0.8 s for 0.2 s operations: the old estimate kept 0.8 s for every later reset (a
    poll that succeeds first time never learned they were done earlier); now it comes down."""
    import time

    async with sim_client(projects=1, branches=12, roles=0, op_seconds=0.2, seed=5) as (sim, client):
        org = sim.inspect.primary_org_id
        plan = await plan_for(sim, client, "*", org=org)
        with_ops = [t for t in plan.targets if t.read_write_endpoints]
        assert len(with_ops) >= 8
        engine = fast_engine(client, first_poll=0.8, poll_min=0.05, poll_max=0.5)
        t0 = time.monotonic()
        events = await run_all(engine, plan)
        wall = time.monotonic() - t0
    assert isinstance(events[-1], RunFinished) and events[-1].counts == {"rotated": len(plan.targets)}
    timer = engine.poll_timer
    assert timer.hi is not None and timer.hi < 0.4
    # Without learning downward every reset with operations would wait 0.8 s.
    assert wall < 0.6 * 0.8 * len(with_ops)
    polls = sum(1 for r in sim.inspect.requests if r.route == "GET /projects/{project_id}/operations")
    assert polls <= 2 * len(with_ops) + 8
