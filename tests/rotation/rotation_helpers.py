"""Helpers for engine tests: an in-process simulator, a fast client and a fast engine on it."""

from __future__ import annotations

import contextlib

from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.rotation.inventory import Inventory
from neon_tui.simulator import SimConfig, Simulator

FAST_RETRY = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05, max_retry_after=1.5)


class ManualClock:
    """A simulator clock that moves only when the test says so: what the simulator sees as finished
    depends on `advance`, never on how loaded the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.asynccontextmanager
async def sim_client(clock=None, **cfg):
    cfg.setdefault("op_seconds", 0.05)
    sim = Simulator(SimConfig(**cfg), clock=clock)
    client = NeonClient(sim.api_key, host="https://neon-sim.invalid/api/v2", transport=sim.transport(),
                        retry=FAST_RETRY)
    async with client:
        yield sim, client


def org_of(sim: Simulator, project_name: str) -> str:
    return sim.inspect.org_of(sim.inspect.project_by_name(project_name).id)


def fast_engine(client, **kw):
    from neon_tui.rotation.engine import RotationEngine

    kw.setdefault("first_poll", 0.02)
    kw.setdefault("poll_min", 0.01)
    kw.setdefault("poll_max", 0.05)
    kw.setdefault("reconcile_pause", 0.05)
    return RotationEngine(client, **kw)


async def run_all(engine, plan, **kw):
    events = []
    async for ev in engine.run(plan, **kw):
        events.append(ev)
    return events


__all__ = ["FAST_RETRY", "Inventory", "ListSink", "ManualClock", "drain", "fast_engine", "fast_session", "org_of", "run_all",
           "sim_client"]


class ListSink:
    """A real Sink (the protocol's three parts) that keeps what it receives; fails when told to."""

    automatic = True

    def __init__(self, name: str = "test", *, fail_after: int | None = None, fail_preflight: str | None = None,
                 fail_project: str | None = None):
        self.name = name
        self.fail_after = fail_after
        self.fail_project = fail_project
        self.fail_preflight = fail_preflight
        self.got = []
        self.calls = 0

    async def preflight(self) -> str:
        from neon_tui.rotation.sinks import SinkError

        if self.fail_preflight:
            raise SinkError(self.fail_preflight)
        return self.name

    async def deliver(self, result):
        from neon_tui.rotation.sinks import Receipt

        self.calls += 1
        if (self.fail_after is not None and len(self.got) >= self.fail_after) or \
                result.target.project_id == self.fail_project:
            raise RuntimeError("sink down, it was handed " + result.password.reveal())
        self.got.append(result)
        return Receipt(self.name, f"{self.name} #{len(self.got)}")


def fast_session(client, plan, tmp_path=None, **kw):
    from neon_tui.rotation.journal import Journal
    from neon_tui.rotation.session import RunSession

    opts = dict(first_poll=0.02, poll_min=0.01, poll_max=0.05, reconcile_pause=0.05)
    opts.update(kw.pop("engine_options", {}))
    if tmp_path is not None and "journal_factory" not in kw:
        path = tmp_path / "run-session.jsonl"
        kw["journal_factory"] = lambda: Journal(path)
    kw.setdefault("delivery_attempts", 2)
    kw.setdefault("delivery_backoff", 0.01)
    return RunSession(client, plan, engine_options=opts, **kw)


async def drain(session, **kw):
    events = []
    async for ev in session.run(**kw):
        events.append(ev)
    return events
