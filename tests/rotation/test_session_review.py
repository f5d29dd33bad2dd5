"""Found in review: the breaker after stop and retry, aborts during a hand-over, concurrent failures of one sink,\ncancel during long waits, and retries after the journal ended. Each failed before its fix."""
from __future__ import annotations

import asyncio

import pytest
from rotation_helpers import ListSink, drain, fast_session, org_of, sim_client

from neon_tui.rotation.events import Halted
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import read_journal
from neon_tui.rotation.plan import plan_from_selectors


async def plan_for(sim, client, *selectors, org=None):
    return await plan_from_selectors(Inventory(client), list(selectors), org or sim.inspect.primary_org_id)


async def test_R_after_stop_asks_the_breaker_again_and_continues_once_the_sink_works(tmp_path):
    """Breaker -> stop -> R: the gate must neither spin (a frozen event loop) nor wait unannounced: the
    halt is announced again, and once the sink works the rest of the run goes through."""
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/*", org=org_of(sim, "acme-prod"))
        assert len(plan.targets) >= 2
        sink = ListSink("keyring", fail_after=1)
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        async for ev in session.run():
            if isinstance(ev, Halted):
                session.stop()
        assert session.retryable()  # the cancelled ones: R is offered
        sink.fail_after = None
        asked = []

        async def again():
            async for ev in session.retry():
                if isinstance(ev, Halted):
                    asked.append(ev.source)
                    await session.retry_sink(ev.source)

        await asyncio.wait_for(again(), timeout=10)
        assert asked == ["keyring"]
        assert session.complete and set(session.counts()) == {"delivered"}
        assert all(sim.inspect.reset_count(*t.key) == 1 for t in plan.targets)


async def test_retrying_a_sink_that_still_fails_says_so_and_the_run_can_stop(tmp_path):
    from neon_tui.rotation.sinks import SinkError

    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/*", org=org_of(sim, "acme-prod"))
        sink = ListSink("keyring", fail_after=1)
        session = fast_session(client, plan, tmp_path, sinks=[sink])
        outcome = {}

        async def consume():
            async for ev in session.run():
                if isinstance(ev, Halted) and "retried" not in outcome:
                    try:
                        await session.retry_sink("keyring")
                        outcome["retried"] = "returned normally"
                    except SinkError as e:  # what the TUI shows, before asking again
                        outcome["retried"] = str(e)
                        session.stop()

        await asyncio.wait_for(consume(), timeout=5)
        assert outcome["retried"].startswith("still failing")
        assert "keyring" in session.halts


class SlowSink(ListSink):
    """A keyring-like sink whose store takes a moment (a D-Bus round trip); the user presses Ctrl-C
    twice (abort) while it is storing."""

    def __init__(self, name, on_call):
        super().__init__(name)
        self.on_call = on_call

    async def deliver(self, result):
        self.on_call()
        await asyncio.sleep(0.2)
        return await super().deliver(result)


async def test_abort_during_a_hand_over_still_reaches_the_other_sinks(tmp_path):
    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-legacy-billing/main/app", org=org_of(sim, "acme-legacy-billing"))
        (t,) = plan.targets
        assert not t.store_passwords  # Neon cannot give it back later
        session = None
        slow = SlowSink("keyring", on_call=lambda: session.abort())
        stdout = ListSink("stdout")
        session = fast_session(client, plan, tmp_path, sinks=[slow, stdout])
        await drain(session)
        assert sim.inspect.reset_count(*t.key) == 1
        # README: "the second [Ctrl-C] stops at once (passwords already returned are still handed over)"
        assert stdout.got, (f"password returned by the reset never reached any sink; "
                            f"state={session.view(t.key).state}")


class FlakySink(ListSink):
    """Project `bad` is always refused; every other project is refused once, then accepted."""

    def __init__(self, name, bad):
        super().__init__(name)
        self.bad = bad
        self.seen = set()
        self.bad_failing = False   # between the bad project's first failure and the sink giving up
        self.bad_calls = 0

    async def deliver(self, result):
        from neon_tui.rotation.sinks import Receipt, SinkError

        pid = result.target.project_id
        if pid == self.bad:
            self.bad_calls += 1
            self.bad_failing = True
            raise SinkError("keyring locked")
        if pid not in self.seen:
            self.seen.add(pid)
            raise SinkError("keyring busy")
        self.got.append(result)
        return Receipt(self.name, "ok")


async def test_one_delivery_recovering_does_not_reopen_the_gate_while_another_to_the_same_sink_fails(tmp_path):
    async with sim_client(projects=6, branches=2, roles=2, op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "*")
        projects = sorted({t.project_id for t in plan.targets})
        sink = FlakySink("keyring", bad=projects[0])
        session = fast_session(client, plan, tmp_path, sinks=[sink], delivery_attempts=3, delivery_backoff=0.2)
        engine = session.engine
        leaked = []
        real_guard = engine._guard

        def guard():
            real_guard()  # raises SendRefused when the gate is shut
            if sink.bad_failing and "keyring" not in session._tripped:
                leaked.append(engine.halts)  # a reset leaves while a delivery to keyring is failing

        engine._guard = guard
        async for ev in session.run():
            if isinstance(ev, Halted):
                session.stop()
        assert not leaked, f"{len(leaked)} reset(s) sent while the keyring was failing and being retried"


async def test_cancel_ends_the_run_during_a_long_retry_after(tmp_path):
    """First Ctrl-C ('no new resets; waiting for those in flight') while a reset answered 429 with a long
    Retry-After: nothing is in flight, yet run() sleeps out the whole Retry-After before it notices."""
    from neon_tui.neon.errors import RateLimitedError

    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))

        async def limited(*a, **kw):
            raise RateLimitedError("rate limit exceeded", status=429, retry_after=60)

        client.reset_role_password = limited
        session = fast_session(client, plan, tmp_path, sinks=[ListSink("test")])

        async def consume():
            async for ev in session.run():
                if getattr(ev, "state", None) == "planned" and "rate limited" in (ev.reason or ""):
                    session.cancel()

        try:
            await asyncio.wait_for(consume(), timeout=5)
        except asyncio.TimeoutError:
            session.abort()
            pytest.fail("cancel did not end the run within 5 s (it waits out Retry-After: 60)")


async def test_a_retry_after_the_journal_ended_stays_visible_to_resume(tmp_path):
    """TUI: a run whose targets all failed writes 'end'; R resets them again in the same journal, after the
    'end' record and without a 'resumed' one. A kill -9 now leaves a journal that reads as finished:
    find_unfinished skips it, the reset in flight is never reconciled, its password never recovered."""
    from neon_tui.rotation.journal import find_unfinished

    async with sim_client(op_seconds=0.2) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))
        (t,) = plan.targets
        sim.inspect.set_faults(1.0, ["op_failed"])
        session = fast_session(client, plan, tmp_path, sinks=[ListSink("test")])
        await drain(session)
        assert session.view(t.key).state == "failed"
        sim.inspect.set_faults(0.0)
        seen = None
        async for ev in session.retry():  # R in the run screen
            if getattr(ev, "state", None) == "applying" and seen is None:
                # the process dies here (kill -9): what would the next start see?
                seen = read_journal(session.journal_path)
                found = find_unfinished(directory=session.journal_path.parent)
                session.abort()
        assert seen is not None
        assert not seen.ended and found.state is not None, (
            f"journal reads as ended={seen.ended} with {t.label} {seen.targets[t.key].state}: never offered for resume")


async def test_a_damaged_line_that_hid_a_landed_reset_is_reconciled_not_reset_again(tmp_path):
    """The journal's "resetting" record for a reset that did land is the line that got damaged: resuming must
    find the reset by reconciling (updated_at moved), read the password back, and not reset a second time."""
    from neon_tui.rotation.journal import Journal

    async with sim_client(op_seconds=0.05) as (sim, client):
        plan = await plan_for(sim, client, "acme-prod/staging/app", org=org_of(sim, "acme-prod"))
        (t,) = plan.targets
        path = tmp_path / "run-damaged.jsonl"
        session = fast_session(client, plan, sinks=[ListSink("test")], journal_factory=lambda: Journal(path))
        await session.prepare()
        await session.engine.set_state(t.key, "resetting", before=t.role_updated_at, wall=0)
        session.journal.close()
        await client.reset_role_password(*t.key)  # it landed; the process died before hearing back
        lines = path.read_text().splitlines()
        assert '"resetting"' in lines[-1]
        lines[-1] = "{damaged"
        path.write_text("\n".join(lines) + "\n")
        state = read_journal(path)
        assert state.problems and state.targets[t.key].state == "unknown"
        sink = ListSink("test")
        session2 = fast_session(client, plan, sinks=[sink], resume=state)
        await drain(session2)
        assert sim.inspect.reset_count(*t.key) == 1
        (got,) = sink.got
        assert got.password.reveal() == sim.inspect.password(*t.key)
