"""Rotation benchmark: the engine vs the plain sequential loop people script today, against the simulator
served over loopback HTTP with Neon's rate limits, realistic latency and operation times.

    python -m benchmarks.rotate_bench [--quick] [--out benchmarks/results.json]

The lower bound a run is compared with is max(rate bound, lock bound):
- rate bound: Neon allows 700 requests in any 60 s, so R requests need at least 60 * floor((R - 1) / 700) s
  (the 701st request cannot leave before the first has aged out of the window), R being the requests the
  run made (requests per target is reported separately);
- lock bound: one mutation per project at a time, each reset holding the project until its operations
  finish, so the busiest project needs n * (op_seconds + 2 * latency) (the reset's round trip, the
  operations, one poll to see them finish), after 4 * latency of discovery (organizations, projects,
  branches, roles), which cannot overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.neon.errors import NeonError
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import Journal
from neon_tui.rotation.session import RunSession
from neon_tui.rotation.sinks import Receipt
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.serve import serve_in_thread

LATENCY_MS = 80.0
OP_SECONDS = 2.0


@dataclass
class Result:
    scenario: str
    method: str
    projects: int
    targets: int
    wall_seconds: float
    requests: int
    requests_per_target: float
    rotated: int
    failed: int
    http_429: int
    double_resets: int
    bound_seconds: float | None = None
    ratio_to_bound: float | None = None
    failures: dict | None = None


def bound(requests: int, per_project: Counter, latency: float, op: float) -> float:
    rate = 60.0 * ((requests - 1) // 700)
    lock = 4 * latency + max(per_project.values()) * (op + 2 * latency)
    return max(rate, lock)


class MemorySink:
    """Where the benchmark's passwords go: kept in memory, counted (the run path is the CLI's)."""

    automatic = True
    name = "memory"

    def __init__(self) -> None:
        self.count = 0

    async def preflight(self) -> str:
        return "memory"

    async def deliver(self, result) -> Receipt:
        self.count += 1
        return Receipt(self.name, f"#{self.count}")


async def _engine_run(sim: Simulator, url: str, name: str) -> Result:
    import tempfile

    async with NeonClient(sim.api_key, host=url) as client:
        t0 = time.monotonic()
        inv = Inventory(client)
        org = await inv.resolve_org(None)
        plan = await plan_from_selectors(inv, ["*"], org.id)
        with tempfile.TemporaryDirectory() as tmp:
            # The whole run path of `neon-tui rotate`: session, fsync'd journal, a sink per password.
            session = RunSession(client, plan, sinks=[MemorySink()], journal_factory=lambda: Journal.create(Path(tmp)))
            async for _ in session.run():
                pass
            await session.close()
        wall = time.monotonic() - t0
        requests = client.requests_sent
    states = Counter(session.counts())
    states["rotated"] = states.get("delivered", 0) + states.get("rotated", 0)
    per_project = Counter(t.project_id for t in plan.targets)
    doubles = sum(1 for t in plan.targets if sim.inspect.reset_count(*t.key) > 1)
    b = bound(requests, per_project, LATENCY_MS / 1000, OP_SECONDS)
    return Result(name, "neon-tui engine", len(per_project), len(plan.targets), round(wall, 1), requests,
                  round(requests / len(plan.targets), 2), states.get("rotated", 0), states.get("failed", 0),
                  sum(1 for r in sim.inspect.requests if r.status == 429), doubles, round(b, 1), round(wall / b, 3))


async def _sequential_loop(sim: Simulator, url: str, name: str) -> Result:
    """What people script today: list everything, then reset one role after another, no waiting for
    operations, no retry on 423 or 429."""
    t0 = time.monotonic()
    # Listing is done politely (the same inventory code); the loop is what differs.
    async with NeonClient(sim.api_key, host=url) as lister:
        inv = Inventory(lister)
        org = await inv.resolve_org(None)
        plan = await plan_from_selectors(inv, ["*"], org.id)
        listed = lister.requests_sent
    failures: Counter = Counter()
    ok = 0
    async with NeonClient(sim.api_key, host=url, limiter=None, retry=RetryPolicy(max_attempts=1)) as client:
        for t in plan.targets:
            try:
                await client.reset_role_password(t.project_id, t.branch_id, t.role_name)
                ok += 1
            except NeonError as e:
                failures[f"HTTP {e.status}" if e.status else type(e).__name__] += 1
        wall = time.monotonic() - t0
        requests = client.requests_sent + listed
    return Result(name, "sequential loop", len({t.project_id for t in plan.targets}), len(plan.targets),
                  round(wall, 1), requests, round(requests / len(plan.targets), 2), ok, sum(failures.values()),
                  sum(1 for r in sim.inspect.requests if r.status == 429), 0, failures=dict(failures))


def run(name: str, cfg: dict, method) -> Result:
    sim = Simulator(SimConfig(latency_ms=LATENCY_MS, op_seconds=OP_SECONDS, rate_limit="neon", **cfg))
    with serve_in_thread(sim) as url:
        return asyncio.run(method(sim, url, name))


SCENARIOS = {
    "wide": dict(projects=50, branches=2, roles=3),   # 50 projects x 2 branches x (3 + owner) = 400 targets
    "deep": dict(projects=1, branches=20, roles=3),   # 1 project x 20 branches x (3 + owner) = 80 targets
}
QUICK = {"wide": dict(projects=10, branches=2, roles=1), "deep": dict(projects=1, branches=5, roles=1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small accounts, for a smoke run")
    ap.add_argument("--out", default="benchmarks/results.json")
    args = ap.parse_args()
    scenarios = QUICK if args.quick else SCENARIOS
    results = []
    for name, cfg in scenarios.items():
        for method in (_engine_run, _sequential_loop):
            r = run(name, cfg, method)
            results.append(r)
            print(json.dumps(asdict(r)), flush=True)
    Path(args.out).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print()
    print("| account | method | targets | wall time | requests | requests/target | rotated | failed | 429s | bound | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        failed = f"{r.failed}" + (f" ({', '.join(f'{k}: {v}' for k, v in r.failures.items())})" if r.failures else "")
        print(f"| {r.scenario} ({r.projects} projects) | {r.method} | {r.targets} | {r.wall_seconds} s | {r.requests} | "
              f"{r.requests_per_target} | {r.rotated} | {failed} | {r.http_429} | "
              f"{'' if r.bound_seconds is None else f'{r.bound_seconds} s'} | "
              f"{'' if r.ratio_to_bound is None else f'{r.ratio_to_bound}x'} |")


if __name__ == "__main__":
    main()
