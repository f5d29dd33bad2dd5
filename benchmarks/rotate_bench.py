"""Rotation benchmark: the engine vs the plain sequential loop people script today, against the simulator
served over loopback HTTP with Neon's rate limits, 30 ms of latency and 1 s reset operations.

    python -m benchmarks.rotate_bench [--quick] [--shapes wide,deep-200] [--no-loop] [--out FILE]

Each engine run is compared with the tight bound of its account, the larger of:
- the rate bound on the fewest requests the run's output needs (organizations, the project pages, each
  touched project's branches and endpoints, every branch's roles, the databases of each chosen branch with
  a compute, one reset per target and one poll per reset that has operations): Neon admits 700 requests
  in any 60 s, so R requests need 60 * floor((R - 1) / 700) s, and 40 per second per route, so a route
  with r requests needs floor((r - 1) / 40) s;
- the lock bound: one mutation per project at a time, each reset holding its project until its operations
  finish, so the busiest project needs, after the 4 round trips of discovery (organizations, projects,
  branches and endpoints, roles and databases), one round trip per reset plus the operations' time for
  each reset that has operations.
"429s" counts the 429 answers the simulator gave neon-tui (the goal is none). On a loaded machine the
ratios grow: say so when you quote them.
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

LATENCY_MS = 30.0
OP_SECONDS = 1.0


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
    fewest_requests: int | None = None
    rate_bound_seconds: float | None = None
    lock_bound_seconds: float | None = None
    polls: int | None = None


def tight_bound(sim: Simulator, plan, latency: float, op: float) -> tuple[float, float, int]:
    """(rate bound, lock bound, fewest requests) of rotating `plan` (see the module docstring)."""
    projects = sim.inspect.projects
    touched = {t.project_id for t in plan.targets}
    org_projects = len(sim.inspect.project_ids(plan.org_id)) if plan.org_id else len(touched)
    branches = sum(len(projects[pid].branches) for pid in touched)
    with_ops = [t for t in plan.targets if projects[t.project_id].rw_endpoint(t.branch_id) is not None]
    db_branches = {(t.project_id, t.branch_id) for t in plan.targets
                   if projects[t.project_id].branch_endpoints(t.branch_id)}
    per_route = {
        "orgs": 1, "projects": max(1, -(-org_projects // 400)), "branches": len(touched),
        "endpoints": len(touched), "roles": branches, "databases": len(db_branches),
        "resets": len(plan.targets), "polls": len(with_ops),
    }
    fewest = sum(per_route.values())
    rate = max(60.0 * ((fewest - 1) // 700), max(float((n - 1) // 40) for n in per_route.values() if n))
    busiest = Counter()
    for t in plan.targets:
        busiest[t.project_id] += latency + (op if t in with_ops else 0.0)
    lock = 4 * latency + max(busiest.values(), default=0.0)
    return rate, lock, fewest


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
    doubles = sum(1 for t in plan.targets if sim.inspect.reset_count(*t.key) > 1)
    rate, lock, fewest = tight_bound(sim, plan, LATENCY_MS / 1000, OP_SECONDS)
    b = max(rate, lock)
    polls = sum(1 for r in sim.inspect.requests if r.route == "GET /projects/{project_id}/operations")
    return Result(name, "neon-tui engine", len({t.project_id for t in plan.targets}), len(plan.targets),
                  round(wall, 2), requests, round(requests / len(plan.targets), 2), states.get("rotated", 0),
                  states.get("failed", 0), sum(1 for r in sim.inspect.requests if r.status == 429), doubles,
                  round(b, 2), round(wall / b, 3), None, fewest, round(rate, 2), round(lock, 2), polls)


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


# projects x branches x (roles + the owner): the targets. Deep accounts are bound by the project lock,
# wide ones by the rate limits; wide-200 needs more than 700 requests, so it pays one 60 s window whatever
# the client does.
SCENARIOS = {
    "wide": dict(projects=50, branches=2, roles=3),       # 400 targets
    "deep": dict(projects=1, branches=20, roles=3),       # 80 targets
    "deep-200": dict(projects=1, branches=100, roles=1),  # 200 targets
    "wide-200": dict(projects=100, branches=1, roles=1),  # 200 targets
}
EXTRA = {
    "deep-50": dict(projects=1, branches=25, roles=1),
    "deep-800": dict(projects=1, branches=400, roles=1),  # about 14 minutes
    "wide-100": dict(projects=25, branches=2, roles=1),
}
QUICK = {
    "wide": dict(projects=10, branches=2, roles=1),
    "deep": dict(projects=1, branches=5, roles=1),
    "deep-50": dict(projects=1, branches=25, roles=1),
}
LOOP_SHAPES = ("wide", "deep")  # the sequential loop's failures are the same story on every shape


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small accounts, about a minute")
    ap.add_argument("--shapes", default=None,
                    help=f"comma-separated shapes to run, of {', '.join([*SCENARIOS, *EXTRA])}")
    ap.add_argument("--no-loop", action="store_true", help="skip the sequential loop for comparison")
    ap.add_argument("--out", default=None, help="where to write the JSON (default benchmarks/results.json; "
                                                 "--quick and --shapes write nothing unless given)")
    args = ap.parse_args()
    every = {**SCENARIOS, **EXTRA, **{f"quick-{k}": v for k, v in QUICK.items()}}
    if args.shapes:
        unknown = [n for n in args.shapes.split(",") if n not in every]
        if unknown:
            ap.error(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(every)}")
        scenarios = {n: every[n] for n in args.shapes.split(",")}
    else:
        scenarios = QUICK if args.quick else SCENARIOS
    out = args.out or (None if args.quick or args.shapes else "benchmarks/results.json")
    results = []
    started = time.monotonic()
    for name, cfg in scenarios.items():
        methods = [_engine_run]
        if not args.no_loop and name in LOOP_SHAPES:
            methods.append(_sequential_loop)
        for method in methods:
            r = run(name, cfg, method)
            results.append(r)
            print(json.dumps(asdict(r)), flush=True)
    if out:
        Path(out).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print()
    print(f"Simulator: Neon's rate limits, {LATENCY_MS:.0f} ms latency, {OP_SECONDS:g} s operations; "
          f"benchmark took {time.monotonic() - started:.0f} s.")
    print()
    print("| account | method | targets | wall time | requests (fewest) | polls | rotated | failed | 429s | "
          "tight bound | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        failed = f"{r.failed}" + (f" ({', '.join(f'{k}: {v}' for k, v in r.failures.items())})" if r.failures else "")
        fewest = f" ({r.fewest_requests})" if r.fewest_requests is not None else ""
        kind = ""
        if r.bound_seconds is not None:
            kind = " rate" if (r.rate_bound_seconds or 0) >= (r.lock_bound_seconds or 0) else " lock"
        print(f"| {r.scenario} ({r.projects} projects) | {r.method} | {r.targets} | {r.wall_seconds} s | "
              f"{r.requests}{fewest} | {'' if r.polls is None else r.polls} | {r.rotated} | {failed} | {r.http_429} | "
              f"{'' if r.bound_seconds is None else f'{r.bound_seconds} s{kind}'} | "
              f"{'' if r.ratio_to_bound is None else f'{r.ratio_to_bound}x'} |")


if __name__ == "__main__":
    main()
