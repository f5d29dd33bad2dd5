"""Helpers for engine tests: an in-process simulator, a fast client and a fast engine on it."""

from __future__ import annotations

import contextlib

from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.rotation.inventory import Inventory
from neon_tui.simulator import SimConfig, Simulator

FAST_RETRY = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05, max_retry_after=1.5)


@contextlib.asynccontextmanager
async def sim_client(**cfg):
    cfg.setdefault("op_seconds", 0.05)
    sim = Simulator(SimConfig(**cfg))
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


__all__ = ["FAST_RETRY", "Inventory", "fast_engine", "org_of", "run_all", "sim_client"]
