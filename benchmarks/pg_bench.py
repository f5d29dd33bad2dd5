"""Proof on real PostgreSQL: the exposure scan and rotation with verification, against the simulator served on
loopback with Neon's rate limits, 80 ms latency, 2 s operations and real clusters behind its router (started
lazily, at most 8 running).

    python -m benchmarks.pg_bench [--quick] [--out benchmarks/pg_results.json]

Per account: the exposure scan of a leak (reveal where passwords are stored, real logins where they are not),
then a rotation of every login role through RunSession with verification on (new password on the direct and
pooled strings, the old one, read before the reset or taken from the leak, refused). Reported: wall time,
API requests, logins, ratio to the rate bound (as in rotate_bench: 60 s per 700 requests after the first
700), cluster starts, peak memory of the clusters (PSS: shared pages counted once; RSS summed per process
for comparison) and of this process (the simulator, its router and the client share it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from benchmarks.rotate_bench import MemorySink, bound
from neon_tui.neon import NeonClient
from neon_tui.rotation.exposure import scan
from neon_tui.rotation.events import TargetChanged
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import TargetState
from neon_tui.rotation.journal import Journal
from neon_tui.rotation.leak import parse_leak
from neon_tui.rotation.logins import Route
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.rotation.session import RunSession
from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.leak import sample_leak
from neon_tui.simulator.postgres import PostgresBackend
from neon_tui.simulator.serve import serve_in_thread

LATENCY_MS = 80.0
OP_SECONDS = 2.0
MAX_RUNNING = 8


@dataclass
class Result:
    account: str
    login_roles: int
    leaked: int
    # exposure scan
    scan_seconds: float
    scan_requests: int
    scan_logins: int
    exposed: int
    unchecked: int
    # rotation with verification
    targets: int
    rotate_seconds: float
    last_delivery_seconds: float  # the last password handed over; the rest is verification's tail
    rotate_requests: int
    rotate_bound_seconds: float
    rotate_ratio: float
    verified: dict
    alarms: int
    # real clusters
    clusters_created: int
    cluster_starts: int
    peak_running: int
    peak_clusters_pss_mb: float
    peak_clusters_rss_mb: float
    peak_process_rss_mb: float


class Peak:
    """Samples the clusters' memory every 0.25 s while a benchmark runs."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend, self.pss, self.rss, self.running = backend, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.running = max(self.running, len(self.backend.running_endpoints()))
                self.pss = max(self.pss, self.backend.pss_bytes())
                self.rss = max(self.rss, self.backend.rss_bytes())
            except Exception:  # a cluster stopping between listing and reading: next sample
                pass

    def __enter__(self) -> "Peak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def wide_leak(sim: Simulator, every: int = 5) -> str:
    """A leaked .env for a sized account: the `app` role's URI of every `every`-th project's default branch
    (its child branches inherited the password), and bare `neondb_owner` passwords of the same projects."""
    lines = ["# leaked deploy config"]
    for i, project in enumerate(sorted(sim.account.projects.values(), key=lambda p: p.id)):
        if i % every:
            continue
        main = project.default_branch()
        ep = project.rw_endpoint(main.id)
        if "app" in main.roles and ep is not None and main.roles["app"].password:
            pw = main.roles["app"].password
            lines.append(f"DATABASE_URL_{i}=postgresql://app:{quote(pw, safe='')}@{ep.host}/neondb?sslmode=require")
        owner = main.roles.get("neondb_owner")
        if owner is not None and owner.password:
            lines.append(owner.password)
    return "\n".join(lines) + "\n"


async def _bench(name: str, sim: Simulator, url: str, backend: PostgresBackend, leak_text: str) -> Result:
    route = Route(*backend.route)
    leak = parse_leak(leak_text, f"{name} leak")
    async with NeonClient(sim.api_key, host=url) as client:
        inv = Inventory(client)
        org = await inv.resolve_org(None)
        r0 = client.requests_sent
        report = await scan(client, leak, probe_logins=True, route=route, org=org.id)
        scan_requests = client.requests_sent - r0

        r1 = client.requests_sent
        t0 = time.monotonic()
        plan = await plan_from_selectors(Inventory(client), ["*"], org.id)
        with tempfile.TemporaryDirectory() as tmp:
            session = RunSession(client, plan, sinks=[MemorySink()],
                                 journal_factory=lambda: Journal.create(Path(tmp)),
                                 verify=True, route=route, old_passwords=report.old_passwords())
            last_delivery = 0.0
            async for ev in session.run():
                if isinstance(ev, TargetChanged) and ev.state == TargetState.DELIVERED:
                    last_delivery = time.monotonic() - t0
            await session.close()
        rotate_seconds = time.monotonic() - t0
        rotate_requests = client.requests_sent - r1
    per_project = Counter(t.project_id for t in plan.targets)
    b = bound(rotate_requests, per_project, LATENCY_MS / 1000, OP_SECONDS)
    stats = backend.stats()
    return Result(name, report.roles, len(leak), round(report.seconds, 1), scan_requests, report.logins,
                  len(report.exposed), len(report.unchecked), len(plan.targets), round(rotate_seconds, 1),
                  round(last_delivery, 1),
                  rotate_requests, round(b, 1), round(rotate_seconds / b, 3), session.verification_counts(),
                  len(session.alarms()), stats["clusters"], stats["starts"], 0, 0.0, 0.0, 0.0)


def run(name: str, cfg: dict, leak_of, max_running: int = MAX_RUNNING) -> Result:
    sim = Simulator(SimConfig(latency_ms=LATENCY_MS, op_seconds=OP_SECONDS, rate_limit="neon", **cfg))
    with PostgresBackend(sim, max_running=max_running) as backend, serve_in_thread(sim) as url:
        with Peak(backend) as peak:
            result = asyncio.run(_bench(name, sim, url, backend, leak_of(sim)))
    result.peak_running = peak.running
    result.peak_clusters_pss_mb = round(peak.pss / 2**20, 1)
    result.peak_clusters_rss_mb = round(peak.rss / 2**20, 1)
    result.peak_process_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


SCENARIOS = {
    "demo": ({}, sample_leak),
    "400 targets": (dict(projects=50, branches=2, roles=3), wide_leak),  # 50 x 2 x (3 + owner)
}
QUICK = {"demo": ({}, sample_leak), "40 targets": (dict(projects=5, branches=2, roles=3), wide_leak)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small accounts, for a smoke run")
    ap.add_argument("--out", default="benchmarks/pg_results.json")
    ap.add_argument("--max-running", type=int, default=MAX_RUNNING, help="cap on running clusters")
    ap.add_argument("--only", help="run only this account (demo, '400 targets')")
    args = ap.parse_args()
    results = []
    for name, (cfg, leak_of) in (QUICK if args.quick else SCENARIOS).items():
        if args.only and name != args.only:
            continue
        r = run(name, cfg, leak_of, args.max_running)
        results.append(r)
        print(json.dumps(asdict(r)), flush=True)
    Path(args.out).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print()
    print("| account | login roles | exposure scan | exposed / not checked | rotate + verify | ratio to rate bound "
          "| verified | clusters (created / starts) | peak memory: clusters PSS (RSS) / process |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        v = r.verified
        print(f"| {r.account} | {r.login_roles} | {r.scan_seconds} s, {r.scan_requests} requests, {r.scan_logins} logins "
              f"| {r.exposed} / {r.unchecked} | {r.targets} targets in {r.rotate_seconds} s (last handed over at "
              f"{r.last_delivery_seconds} s), {r.rotate_requests} requests | {r.rotate_ratio}x | {v} , alarms {r.alarms} | {r.clusters_created} / {r.cluster_starts} (peak {r.peak_running} running) "
              f"| {r.peak_clusters_pss_mb} MB ({r.peak_clusters_rss_mb} MB) / {r.peak_process_rss_mb} MB |")


if __name__ == "__main__":
    main()
