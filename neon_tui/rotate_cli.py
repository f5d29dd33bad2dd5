"""`neon-tui rotate`: plan or run password resets from a script or a terminal, on the same engine as the TUI."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from neon_tui.neon import NeonClient
from neon_tui.neon.errors import NeonError
from neon_tui.rotation.events import RotationResult, RunFinished, RunStarted, TargetChanged
from neon_tui.rotation.journal import (
    APPLYING,
    DELIVERED,
    FAILED,
    RESETTING,
    ROTATED,
    UNKNOWN,
    Journal,
    JournalError,
    JournalState,
    latest_unfinished,
    list_journals,
    read_journal,
)
from neon_tui.rotation.plan import Plan, plan_from_selectors

DESCRIPTION = """\
SELECTOR is PROJECT[/BRANCH[/ROLE]]: shell-style globs matched against names or ids.
'*' is everything the key can see in the organization chosen with --org (else the only or first one).
Branch and role names may contain '/': with three or more parts every BRANCH/ROLE split is tried
(the role is at least the last part). PROJECT/dev/alice is role alice on branch dev;
PROJECT/dev/alice/* is every role on branch dev/alice.

Without --apply the plan is printed and nothing changes. With --apply the resets run; when standard
input is not a terminal, --yes is required. Exit status: 0 all rotated, 1 some target failed or is
unknown, 2 bad input or the API could not be used.

Environment: NEON_API_KEY (the key), NEON_API_HOST (default https://console.neon.tech/api/v2).
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("selectors", nargs="*", metavar="SELECTOR", help="PROJECT[/BRANCH[/ROLE]] (globs)")
    p.add_argument("--org", help="organization id, name or handle")
    p.add_argument("--apply", action="store_true", help="run the resets (default: only print the plan)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (required without a terminal)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--deliver", choices=("stdout", "keyring", "none"),
                   help="where new connection strings go (required with --apply; 'none' relies on Neon's stored "
                        "passwords)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN",
                   help="finish an interrupted run (the latest, or a run id / journal path)")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: reset failed targets again")
    p.add_argument("--demo", action="store_true", help="use an in-process simulated account")


class UsageError(Exception):
    pass


def _err(msg: str) -> None:
    print(f"neon-tui rotate: {msg}", file=sys.stderr)


def main(ns: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(ns))
    except UsageError as e:
        _err(str(e))
        return EXIT_USAGE
    except (KeyboardInterrupt, asyncio.CancelledError):
        if getattr(ns, "run_started", False):
            _err("interrupted; `neon-tui rotate --resume` finishes the run")
        else:
            _err("interrupted; nothing was changed")
        return 130


def make_client(demo: bool, **kw: Any) -> tuple[NeonClient, Any]:
    """A client for the real API (NEON_API_KEY/NEON_API_HOST) or for an in-process simulator."""
    if demo:
        from neon_tui.simulator import SimConfig, Simulator

        sim = Simulator(SimConfig(op_seconds=1.0))
        return NeonClient(sim.api_key, host="https://neon-sim.invalid/api/v2", transport=sim.transport(), **kw), sim
    return NeonClient.from_env(**kw), None


def _find_journal(spec: str, host: str) -> JournalState:
    from pathlib import Path

    if spec == "latest":
        state = latest_unfinished(host)
        if state is None:
            raise UsageError(f"no interrupted run for {host} to resume")
        return state
    state = None
    for path in list_journals():
        if spec in (path.stem, str(path), path.name):
            state = read_journal(path)
    if state is None and os.path.isfile(spec):
        state = read_journal(Path(spec))
    if state is None:
        raise UsageError(f"no run {spec!r}")
    if state.header.get("host") != host:
        raise UsageError(f"run {state.run_id} was against {state.header.get('host')}, not {host}: "
                         "set NEON_API_HOST to that API to resume it")
    return state


async def _main(ns: argparse.Namespace) -> int:
    from neon_tui.rotation.inventory import Inventory

    if ns.apply and not ns.resume and not ns.selectors:
        raise UsageError("name what to rotate: SELECTOR... ('*' for everything)")
    if not ns.resume and not ns.selectors:
        raise UsageError("name what to plan: SELECTOR... ('*' for everything), or --resume")
    if getattr(ns, "read_only", False) and (ns.apply or ns.resume):
        raise UsageError("--read-only: plans only; --apply and --resume would write")
    if ns.retry_failed and not ns.resume:
        raise UsageError("--retry-failed goes with --resume")
    if (ns.apply or ns.resume) and not sys.stdin.isatty() and not ns.yes:
        raise UsageError("standard input is not a terminal: add --yes to run without confirmation")
    if (ns.apply or ns.resume) and ns.deliver is None:
        raise UsageError("choose where new connection strings go: --deliver stdout|keyring "
                         "(or --deliver none to rely on the passwords Neon stores)")
    sinks = []
    if ns.deliver == "keyring" and (ns.apply or ns.resume):
        from neon_tui.rotation.delivery import KeyringSink
        from neon_tui.secrets import KeyringUnavailable

        try:
            sinks.append(KeyringSink())
        except KeyringUnavailable as e:
            _err(f"--deliver keyring: {e}")
            return EXIT_USAGE
    try:
        client, _sim = make_client(ns.demo)
    except NeonError as e:
        raise UsageError(str(e)) from None
    out = Output(ns)
    async with client:
        inventory = Inventory(client)
        try:
            resume_state = _find_journal(ns.resume, client.base_url) if ns.resume else None
            if resume_state is not None:
                out.resume_summary(resume_state)
                from neon_tui.rotation.resume import plan_for_resume

                plan, gone = await plan_for_resume(inventory, resume_state)
                for label in gone:
                    _err(f"{label}: no longer exists; left as it was")
            else:
                org = await inventory.resolve_org(ns.org)
                plan = await plan_from_selectors(inventory, ns.selectors, org.id if org else None)
        except (NeonError, LookupError, ValueError, JournalError) as e:
            _err(str(e))
            return EXIT_USAGE
        for text in plan.unmatched:
            _err(f"selector {text!r} matched no role")
        if not plan.targets and not plan.skipped and not resume_state:
            _err("nothing matched: check the selectors (PROJECT[/BRANCH[/ROLE]], names or ids) and --org")
            return EXIT_USAGE
        if not ns.apply and not ns.resume:
            out.plan(plan)
            return EXIT_OK
        if not plan.targets:
            out.plan(plan)
            _err("nothing to rotate")
            return EXIT_OK
        if not ns.json:
            out.plan(plan)
        if not ns.yes and not await _confirm(plan):
            _err("not confirmed; nothing was changed")
            return EXIT_USAGE
        deferred = ns.deliver == "stdout" and ns.json
        if ns.deliver == "stdout" and not ns.json:
            from neon_tui.rotation.delivery import CallbackSink

            sinks.append(CallbackSink("stdout", out.delivered))
        from neon_tui.rotation.engine import RotationEngine

        journal = Journal(resume_state.path) if resume_state else Journal.create()
        # --json prints one document at the end: a target counts as delivered only once it is printed.
        engine = RotationEngine(client, journal=journal, sinks=sinks, require_delivery=deferred)
        ns.run_started = True
        _cancel_on_sigint(engine)
        try:
            async for ev in engine.run(plan, resume=resume_state, retry_failed=ns.retry_failed,
                                       selectors=list(ns.selectors)):
                out.event(ev)
            out.close()
            out.results(plan, engine)
            if deferred:
                sys.stdout.flush()
                for key in engine.results:
                    if engine.states.get(key) == ROTATED:
                        engine.mark_delivered(key, "stdout")
                engine.finish_journal()
        finally:
            journal.close()
            out.close()
        done = (DELIVERED,) if engine.require_delivery else (ROTATED, DELIVERED)
        bad = [s for s in engine.states.values() if s not in (*done, "skipped")]
        return EXIT_FAILED if bad else EXIT_OK


def _cancel_on_sigint(engine) -> None:
    """First Ctrl-C: stop starting resets and let those in flight finish. Second: abort."""
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_sigint() -> None:
        if engine.cancelled:
            task.cancel()
            return
        engine.cancel()
        _err("cancelling: no new resets; waiting for those in flight (Ctrl-C again to abort)")

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):
        pass


async def _confirm(plan: Plan) -> bool:
    """Ask on the terminal (stderr), so stdout can go to a file; Ctrl-C here changes nothing."""
    import threading

    n = len(plan.targets)
    word = "rotate"
    if plan.touches_protected_branch:
        word = "rotate protected"
        print("This plan resets roles on PROTECTED branches.", file=sys.stderr)
    sys.stderr.write(f"Reset {n} password{'s' if n != 1 else ''}? Type '{word}' to go on: ")
    sys.stderr.flush()
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        # A daemon thread: a blocked read must not keep the process alive after Ctrl-C.
        line = sys.stdin.readline()
        loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(line))

    threading.Thread(target=read, daemon=True, name="confirm").start()
    return (await answer).strip() == word


class Output:
    """Where things go: data (the plan without --apply, connection strings, --json) to stdout; messages
    (the plan before a run, progress, the summary) to stderr, so `> creds.txt` captures only data."""

    def __init__(self, ns: argparse.Namespace) -> None:
        self.ns = ns
        self.delivered_results: list[RotationResult] = []
        self.progress = None
        self.task = None
        self.total = 0
        self.done_keys: set[tuple] = set()
        running = bool(ns.apply or ns.resume)
        self.msg = sys.stderr if running else sys.stdout
        self.tty = self.msg.isatty() and not ns.json
        self.run: RunStarted | None = None
        self.finished: RunFinished | None = None
        self.ops: dict[tuple, tuple] = {}

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.msg, flush=True)

    def resume_summary(self, state: JournalState) -> None:
        if self.ns.json:
            return
        counts = state.counts()
        self.say(f"Resuming {state.run_id}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        for t in state.targets.values():
            if t.state in (RESETTING, UNKNOWN, APPLYING):
                self.say(f"  unknown   {t.label}: reset may have been sent; will reconcile, not resend")
            elif t.state == FAILED:
                self.say(f"  failed    {t.label}: {t.reason}")

    def plan(self, plan: Plan) -> None:
        if self.ns.json:
            print(json.dumps(plan_json(plan), indent=2, ensure_ascii=False))
            return
        self.say(f"Plan: {len(plan.targets)} target(s) in {len(plan.projects)} project(s)")
        for t in plan.targets:
            dbs = ", ".join(d.name for d in t.connection_databases()) or "no databases"
            eps = ", ".join(e.id for e in t.read_write_endpoints) or "no read-write compute"
            self.say(f"  rotate  {t.label}  [{eps}; {dbs}]")
            for c in t.consequences():
                self.say(f"          - {c}")
        for sk in plan.skipped:
            self.say(f"  skip    {sk.label}: {sk.reason}")
        for w in sorted(plan.warnings, key=lambda w: not w.likely_same_password):
            self.say(f"  WARNING {w}")

    def event(self, ev: Any) -> None:
        if isinstance(ev, RunStarted):
            self.run = ev
            self.total = ev.total
            if self.tty:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                self.progress = Progress(TextColumn("rotating"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                         TimeElapsedColumn(), TextColumn("{task.description}"),
                                         console=Console(file=sys.stderr), transient=False)
                self.progress.start()
                self.task = self.progress.add_task("", total=ev.total)
            elif not self.ns.json:
                self.say(f"run {ev.run_id}: {ev.total} target(s); journal {ev.journal}")
        elif isinstance(ev, TargetChanged):
            self.ops[ev.key] = ev.operations or self.ops.get(ev.key, ())
            finished = ev.state in (FAILED, "skipped", "cancelled", DELIVERED) or (
                ev.state == ROTATED and self.ns.deliver in (None, "none"))
            if finished and ev.key not in self.done_keys:
                self.done_keys.add(ev.key)
                if self.progress is not None:
                    self.progress.update(self.task, completed=len(self.done_keys), description="")
            if self.ns.json:
                return
            if ev.state in (FAILED, UNKNOWN) or (ev.state in (ROTATED, DELIVERED) and not self.tty):
                reason = f": {ev.reason}" if ev.reason else ""
                self.say(f"{ev.state:9} {ev.target.label}{reason}")
            elif self.progress is not None and ev.state == APPLYING and ev.operations:
                waiting = ", ".join(f"{o.action} {o.status}" for o in ev.operations if not o.done)
                self.progress.update(self.task, description=f"{ev.target.label}: {waiting}"[:40])
        elif isinstance(ev, RunFinished):
            self.finished = ev

    def delivered(self, result: RotationResult) -> None:
        """--deliver stdout: one tab-separated line per string, label, database, kind, URI."""
        self.delivered_results.append(result)
        if self.ns.json:
            return
        t = result.target
        if not result.connections:
            self.say(f"{t.label}: no compute on this branch, so no connection string")
        for c in result.connections:
            rows = [("direct", c.direct)] + ([("pooled", c.pooled)] if c.pooled is not None else [])
            for kind, uri in rows:
                print(f"{t.label}\t{c.database}\t{kind}\t{uri.reveal()}", flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description="")
            self.progress.stop()
            self.progress = None

    def results(self, plan: Plan, engine) -> None:
        f = self.finished
        if self.ns.json:
            doc = plan_json(plan)
            with_secrets = self.ns.deliver == "stdout"
            for item, t in zip(doc["targets"], plan.targets):
                state = engine.states.get(t.key)
                # Printed right here, so stdout delivery happens with this document.
                item["state"] = DELIVERED if with_secrets and state == ROTATED else state
                item["reason"] = engine._jt[t.key].reason if t.key in engine._jt else None
                item["operations"] = [{"id": o.id, "action": o.action, "status": o.status}
                                      for o in self.ops.get(t.key, ())]
                res = engine.results.get(t.key)
                if with_secrets and res is not None:
                    item["connections"] = [{"database": c.database, "direct": c.direct.reveal(),
                                            "pooled": c.pooled.reveal() if c.pooled else None}
                                           for c in res.connections]
            doc.update(run_id=self.run.run_id if self.run else None, journal=self.run.journal if self.run else None,
                       summary=_count(item["state"] for item in doc["targets"]), cancelled=bool(f and f.cancelled),
                       elapsed_seconds=round(f.elapsed, 3) if f else None, requests=f.requests if f else None)
            print(json.dumps(doc, indent=2, ensure_ascii=False))
            return
        if f:
            summary = ", ".join(f"{v} {k}" for k, v in sorted(f.counts.items()))
            self.say(f"done in {f.elapsed:.1f}s, {f.requests} API requests: {summary}")
            if engine.unfinished() or f.cancelled:
                self.say("some targets did not finish; `neon-tui rotate --resume` completes the run")


def _count(states) -> dict[str, int]:
    out: dict[str, int] = {}
    for state in states:
        out[state] = out.get(state, 0) + 1
    return out


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "org_id": plan.org_id,
        "targets": [
            {"project_id": t.project_id, "project": t.project_name, "branch_id": t.branch_id, "branch": t.branch_name,
             "role": t.role_name, "protected_branch": t.protected_branch, "store_passwords": t.store_passwords,
             "endpoints": [e.id for e in t.read_write_endpoints],
             "databases": [d.name for d in t.connection_databases()], "consequences": t.consequences()}
            for t in plan.targets
        ],
        "skipped": [{"target": s.label, "reason": s.reason} for s in plan.skipped],
        "warnings": [str(w) for w in plan.warnings],
    }
