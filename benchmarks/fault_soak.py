"""Fault soak: whole runs (session, journal, a sink) against a simulator that injects every fault kind, then
`--resume`-style passes, as an on-call engineer would. Counts what matters in an incident:

    double resets  a role reset more than once without anyone asking (never allowed)
    lost           a role whose live password reached no sink (silently: never allowed; reported: the
                   target is failed with the reason, and a retry resets it again)

    python -m benchmarks.fault_soak [--quick] [--projects N] [--out benchmarks/soak_results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections import Counter
from pathlib import Path

from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import Journal, read_journal
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.rotation.session import RunSession
from neon_tui.rotation.sinks import Receipt
from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.config import ALL_FAULT_KINDS

# reconcile_pause 0.5: three looks over 1.5 s, longer than the simulator's late-landing resets (0.4 s).
ENGINE = dict(first_poll=0.02, poll_min=0.01, poll_max=0.05, reconcile_pause=0.5, patience=30.0, lock_timeout=60)


class KeepingSink:
    automatic = True
    name = "soak"

    def __init__(self) -> None:
        self.got: dict[tuple, set[str]] = {}

    async def preflight(self) -> str:
        return "soak"

    async def deliver(self, result) -> Receipt:
        self.got.setdefault(result.target.key, set()).add(result.password.reveal())
        return Receipt(self.name, "kept")


async def soak(rate: float, seed: int, projects: int) -> dict:
    sim = Simulator(SimConfig(seed=seed, projects=projects, branches=3, roles=3, op_seconds=0.05))
    # A third of the projects do not store passwords: a lost answer there cannot be read back.
    for i, p in enumerate(sim.inspect.projects.values()):
        if i % 3 == 0:
            p.store_passwords = False
    client = NeonClient(sim.api_key, host="https://neon-sim.invalid/api/v2", transport=sim.transport(),
                        retry=RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.1, max_retry_after=0.2))
    sink = KeepingSink()
    passes = 0
    async with client:
        plan = await plan_from_selectors(Inventory(client, patience=30.0), ["*"], sim.inspect.primary_org_id)
        before = {t.key: sim.inspect.password(*t.key) for t in plan.targets}
        sim.inspect.set_faults(rate, ALL_FAULT_KINDS)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "run-soak.jsonl"
            session = RunSession(client, plan, sinks=[sink], journal_factory=lambda: Journal(path),
                                 engine_options=ENGINE, delivery_backoff=0.01)
            async for _ in session.run():
                pass
            await session.close()
            passes = 1
            # Resume (never --retry-failed) until nothing is left to reconcile, as the docs tell the user.
            while not read_journal(path).ended and passes < 6:
                state = read_journal(path)
                session = RunSession(client, plan, sinks=[sink], resume=state, engine_options=ENGINE,
                                     delivery_backoff=0.01)
                async for _ in session.run():
                    pass
                await session.close()
                passes += 1
            final = read_journal(path)
        faults = Counter(r.fault for r in sim.inspect.requests if r.fault)
        sim.inspect.set_faults(0.0)
    doubles = [t.label for t in plan.targets if sim.inspect.reset_count(*t.key) > 1]
    lost_silent, lost_reported, not_applied = [], [], []
    for t in plan.targets:
        live = sim.inspect.password(*t.key)
        if live in sink.got.get(t.key, set()):
            continue
        st = final.targets[t.key]
        if live == before[t.key]:
            # The reset never took effect (a failed operation, or never sent): the target says so and the
            # old password is still the live one.
            (not_applied if st.state == "failed" and st.reason else lost_silent).append(t.label)
            continue
        (lost_reported if st.state == "failed" and st.reason else lost_silent).append(t.label)
    return {
        "fault_rate": rate, "seed": seed, "targets": len(plan.targets), "passes": passes,
        "requests": len(sim.inspect.requests), "faults": sum(faults.values()), "fault_kinds": dict(faults),
        "double_resets": len(doubles), "lost_silently": len(lost_silent), "lost_reported": len(lost_reported),
        "failed_not_applied": len(not_applied),
        "states": dict(Counter(str(t.state) for t in final.targets.values())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--projects", type=int, default=None, help="projects per soak (x 3 branches x 4 roles; "
                                                                "default 25, 5 with --quick)")
    ap.add_argument("--quick", action="store_true", help="5 projects per soak; writes no JSON unless --out")
    ap.add_argument("--out", default=None, help="default benchmarks/soak_results.json (none with --quick)")
    args = ap.parse_args()
    if args.projects is None:
        args.projects = 5 if args.quick else 25
    if args.out is None and not args.quick:
        args.out = "benchmarks/soak_results.json"
    results = []
    for rate, seed in ((0.10, 1), (0.20, 2), (0.30, 3)):
        r = asyncio.run(soak(rate, seed, args.projects))
        results.append(r)
        print(json.dumps(r), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print()
    print("| fault rate | targets | faults injected | double resets | lost silently | failed: new password lost "
          "(no stored passwords) | failed: reset never took effect | end states |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        states = ", ".join(f"{v} {k}" for k, v in sorted(r["states"].items()))
        print(f"| {r['fault_rate']:.0%} | {r['targets']} | {r['faults']} | {r['double_resets']} | "
              f"{r['lost_silently']} | {r['lost_reported']} | {r['failed_not_applied']} | {states} |")


if __name__ == "__main__":
    main()
