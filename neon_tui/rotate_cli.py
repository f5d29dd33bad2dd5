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
from neon_tui.rotation.events import DeliveryFailed, Halted, RunFinished, RunStarted, TargetChanged, TargetVerified
from neon_tui.rotation.journal import (
    APPLYING,
    CANCELLED,
    DELIVERED,
    FAILED,
    PLANNED,
    RESETTING,
    ROTATED,
    SKIPPED,
    UNCONFIRMED,
    UNKNOWN,
    JournalError,
    JournalState,
    find_unfinished,
    list_journals,
    read_journal,
)
from neon_tui.rotation.plan import Plan, parse_selectors, plan_from_selectors
from neon_tui.rotation.sink_specs import command_sink as _command_sink
from neon_tui.rotation.sink_specs import sink_problems as _sink_problems

DESCRIPTION = """\
SELECTOR is PROJECT[/BRANCH[/ROLE]]: shell-style globs matched against names or ids.
'*' is everything the key can see in the organization chosen with --org (else the only or first one).
Branch and role names may contain '/': with three or more parts every BRANCH/ROLE split is tried
(the role is at least the last part). PROJECT/dev/alice is role alice on branch dev;
PROJECT/dev/alice/* is every role on branch dev/alice. An empty part ('//', a trailing '/', "$P/$B"
with an unset variable) is an error, never "everything": write '*' for that. A literal *, ?, [ or / in
a name goes in brackets: [*], [?], [[], [/] (`neon-tui exposure` prints selectors quoted this way).

Without --apply the plan is printed and nothing changes. With --apply the resets run; when standard
input is not a terminal, --yes is required. --deliver is repeatable (stdout, keyring, file:PATH,
env:PATH, env-follow:PATH, github:OWNER/REPO[@ENV][:NAME], github-org:ORG[:NAME], vercel:PROJECT[:KEY],
aws-sm:SECRET_ID[#KEY] (the aws extra), rules, sink:NAME, or none; rules and sink:NAME are command sinks
from config.toml); every sink is checked
before the first reset, and when one fails no new reset starts and the run stops (it stays resumable).
A GitHub secret, Vercel variable or AWS secret holds one value, so it takes a run of one target.

--deliver env:PATH (a .env file, or a directory searched for .env, .env.* and *.env files) patches in
place every stored copy of a rotated target's connection strings: only the password changes, written
atomically; a file changed by someone else since it was read is refused; symlinks are refused
(env-follow:PATH writes their target). `neon-tui scan PATH...` shows what would be patched.

Verification (--verify, the default with --apply and --resume; --no-verify turns it off): after each
target's reset operations finish, neon-tui logs in with the new password on the direct and pooled
strings (`select current_user`) and tries the old password (read with reveal_password just before the
reset, held in memory only), which must be rejected. Per target: new ok | failed | unknown | skipped,
old rejected | STILL ACCEPTED | unknown | not checked. A timeout is unknown, never dead. Logging in
wakes idle computes. PGHOSTADDR/PGPORT are honoured (libpq).

Exit status: 0 every target rotated and delivered to every chosen sink (and no old password still
accepted); 1 some target failed, is unknown or unconfirmed, a password did not reach a sink, an
old password is STILL ACCEPTED after its reset's operations finished, or the server refused a new
password (verification "new failed"); 2 bad input or the API could
not be used (nothing was reset).

Environment: NEON_API_KEY (the key), NEON_API_HOST (default https://console.neon.tech/api/v2);
GITHUB_TOKEN or GH_TOKEN, VERCEL_TOKEN (else the keyring, service neon-tui), GITHUB_API_URL, VERCEL_API_URL.
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("selectors", nargs="*", metavar="SELECTOR", help="PROJECT[/BRANCH[/ROLE]] (globs)")
    p.add_argument("--org", help="organization id, name or handle")
    p.add_argument("--apply", action="store_true", help="run the resets (default: only print the plan)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (required without a terminal)")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (a run writes JSON Lines: one object per target as it is "
                        "handed over, then a summary)")
    p.add_argument("--deliver", action="append", metavar="SINK",
                   help="where new passwords go, repeatable: stdout, keyring, file:PATH (a new 0600 file), env:PATH "
                        "(patch the copies in .env files in place; env-follow:PATH follows symlinks), "
                        "github:OWNER/REPO[@ENV][:NAME], github-org:ORG[:NAME], vercel:PROJECT[:KEY], "
                        "aws-sm:SECRET_ID[#KEY] (AWS Secrets Manager; the aws extra), rules "
                        "(config.toml [[rules]]: command sinks per selector), sink:NAME (one [sinks.NAME]), or none "
                        "(rely on Neon's stored passwords). Required with --apply; a target is delivered when "
                        "every chosen sink confirmed it")
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN",
                   help="finish an interrupted run (the latest, or a run id / journal path)")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: reset failed targets again")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                   help="after each target rotates, log in with the new password and check the old one is "
                        "refused (default: on with --apply/--resume; it wakes idle computes)")
    p.add_argument("--leaked", metavar="FILE",
                   help="what leaked (as for `neon-tui exposure`; '-' reads standard input and needs --yes): "
                        "verification tries every leaked password on every rotated role and proves it refused")
    p.add_argument("--demo", action="store_true", help="use an in-process simulated account")


class UsageError(Exception):
    pass


def _err(msg: str) -> None:
    print(f"neon-tui rotate: {msg}", file=sys.stderr, flush=True)


def main(ns: argparse.Namespace) -> int:
    ns.leak = None
    if ns.leaked is not None:
        if ns.leaked == "-" and not ns.yes and (ns.apply or ns.resume):
            _err("--leaked - reads standard input, which the confirmation needs too: add --yes, or give a FILE")
            return EXIT_USAGE
        from neon_tui.exposure_cli import load_leaked

        ns.leak = load_leaked(ns.leaked, _err)
        if ns.leak is None:
            return EXIT_USAGE
    try:
        return _run_main(ns)
    finally:
        backend = getattr(ns, "demo_backend", None)
        if backend is not None:
            backend.close()


def _run_main(ns: argparse.Namespace) -> int:
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


def _login_worthy(leak) -> list:
    """The leaked passwords worth a login: not values that only sat under an arbitrary variable's name."""
    return [s.password for s in leak.secrets if s.probe_worthy] if leak is not None else []


def make_client(demo: bool, **kw: Any) -> tuple[NeonClient, Any]:
    """A client for the real API (NEON_API_KEY/NEON_API_HOST) or for an in-process simulator."""
    if demo:
        from neon_tui.simulator import SimConfig, Simulator

        sim = Simulator(SimConfig(op_seconds=1.0))
        return NeonClient(sim.api_key, host="https://neon-sim.invalid/api/v2", transport=sim.transport(), **kw), sim
    return NeonClient.from_env(**kw), None


def verify_route(client: NeonClient, sim: Any, environ: dict[str, str] | None = None):
    """Where verification logs in: (route, None), or (None, why it cannot here). See verify.where_to_verify."""
    from neon_tui.rotation.verify import where_to_verify

    return where_to_verify(client.base_url, sim, simulated=sim is not None, environ=environ)


def _find_journal(spec: str, host: str, account: str | None) -> JournalState:
    """The run to resume. Damaged or foreign journals are reported and never hide the others."""
    from pathlib import Path

    if spec == "latest":
        found = find_unfinished(host, account)
        for problem in found.problems:
            _err(f"skipping a damaged journal: {problem}")
        if found.state is None:
            others = f" ({len(found.elsewhere)} belong to another API host or account)" if found.elsewhere else ""
            raise UsageError(f"no interrupted run for {host} to resume{others}")
        return found.state
    state = None
    candidates = [p for p in list_journals() if spec in (p.stem, str(p), p.name)]
    if not candidates and os.path.isfile(spec):
        candidates = [Path(spec)]
    for path in candidates:
        state = read_journal(path)
    if state is None:
        raise UsageError(f"no run {spec!r}")
    for problem in state.problems:
        _err(f"{problem}: the run's unfinished targets are reconciled before any reset")
    if state.host != host:
        raise UsageError(f"run {state.run_id} was against {state.host}, not {host}: "
                         "set NEON_API_HOST to that API to resume it")
    if account is not None and state.account is not None and state.account != account:
        raise UsageError(f"run {state.run_id} belongs to Neon account {state.account}, and this API key to "
                         f"{account}: use that account's key to resume it")
    return state


def _sinks(ns: argparse.Namespace, resume: JournalState | None, settings) -> tuple[list, bool]:
    """The chosen sinks, and whether 'none' was chosen. Raises UsageError."""
    from neon_tui.rotation.sinks import parse_deliver

    specs = [s.strip() for s in ns.deliver or []]
    if "none" in specs:
        if len(specs) > 1:
            raise UsageError("--deliver none cannot be combined with another sink")
        return [], True
    sinks = []
    appendable = resume.sinks if resume is not None else []
    for spec in specs:
        try:
            if spec == "rules" or spec.startswith("sink:"):
                sink = _command_sink(spec, settings)
            else:
                sink = parse_deliver(spec, appendable=appendable, keyring_allow=settings.keyring_allow)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if any(s.name == sink.name for s in sinks):
            raise UsageError(f"--deliver {spec} given twice")
        sinks.append(sink)
    return sinks, False


def _env_context(session, sinks, resume: JournalState | None) -> None:
    """After preflight: the passwords the .env files held go to verification (memory only), and targets with no
    copy in them are named. They are added as old passwords without skipping the engine's own read of the
    current password (a file may hold a stale copy). On a resume, a target whose reset may already have
    been sent is left out: its file copy may be the new password by now."""
    for sink in sinks:
        if not hasattr(sink, "old_passwords"):
            continue
        for key, passwords in sink.old_passwords().items():
            state = resume.targets.get(key) if resume is not None else None
            if state is not None and state.state not in (PLANNED, CANCELLED):
                continue
            for pw in passwords:
                session.old.add(key, pw)
        missing = sink.uncovered()
        if missing:
            names = ", ".join(t.label for t in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            _err(f"{sink.name}: no copy of {names} there; their new passwords go only to the other sinks")


async def _main(ns: argparse.Namespace) -> int:
    from neon_tui.rotation.inventory import Inventory

    running = bool(ns.apply or ns.resume)
    if ns.apply and not ns.resume and not ns.selectors:
        raise UsageError("name what to rotate: SELECTOR... ('*' for everything)")
    if not ns.resume and not ns.selectors:
        raise UsageError("name what to plan: SELECTOR... ('*' for everything), or --resume")
    if getattr(ns, "read_only", False) and running:
        raise UsageError("--read-only: plans only; --apply and --resume would write")
    if ns.retry_failed and not ns.resume:
        raise UsageError("--retry-failed goes with --resume")
    if running and not sys.stdin.isatty() and not ns.yes:
        raise UsageError("standard input is not a terminal: add --yes to run without confirmation")
    if running and not ns.deliver:
        raise UsageError("choose where new passwords go: --deliver stdout|keyring|file:PATH (repeatable), "
                         "or --deliver none to rely on the passwords Neon stores")
    if not running and ns.deliver:
        raise UsageError("--deliver goes with --apply or --resume")
    if not running and getattr(ns, "verify", None) is not None:
        raise UsageError("--verify/--no-verify go with --apply or --resume")
    ns.verify = running and getattr(ns, "verify", None) is not False
    if getattr(ns, "leak", None) is not None and not ns.verify:
        raise UsageError("--leaked is what verification proves dead: it goes with --apply/--resume and "
                         "without --no-verify")
    if ns.selectors:
        try:
            parse_selectors(ns.selectors)  # every bad one at once, before the API is asked anything
        except ValueError as e:
            raise UsageError(str(e)) from None
    from neon_tui.config import load_settings

    settings, problem = load_settings()
    if problem:
        _err(f"settings: {problem}")
    if ns.demo and ns.resume:
        raise UsageError("--demo runs against a new simulated account each time, so an earlier demo run cannot be "
                         "resumed: run it again instead")
    try:
        client, _sim = make_client(ns.demo)
    except NeonError as e:
        raise UsageError(str(e)) from None
    out = Output(ns)
    if _sim is not None and ns.verify:
        # The demo verifies against real PostgreSQL when this machine has it (main() closes it).
        from neon_tui.simulator.postgres import start_or_explain

        ns.demo_backend, why = await asyncio.to_thread(start_or_explain, _sim)
        if why:
            _err(f"demo: {why}; logins are not verified")
    route, unavailable = verify_route(client, _sim) if ns.verify else (None, None)
    async with client:
        inventory = Inventory(client)
        try:
            auth = await client.get_auth()
            account = auth.account_id
            from neon_tui.incident.actions import key_kind_of

            key_kind = key_kind_of(auth.auth_method)
            resume_state = _find_journal(ns.resume, client.base_url, account) if ns.resume else None
            if resume_state is not None:
                out.resume_summary(resume_state)
                from neon_tui.rotation.resume import plan_for_resume

                plan, gone = await plan_for_resume(inventory, resume_state)
                for label in gone:
                    _err(f"{label}: no longer exists; left as it was")
                if resume_state.targets and len(gone) == len(resume_state.targets) and resume_state.account is None:
                    raise UsageError(f"none of run {resume_state.run_id}'s targets exist for this API key: "
                                     "is it another account's run? Nothing was changed")
            else:
                org = await inventory.resolve_org(ns.org)
                plan = await plan_from_selectors(inventory, ns.selectors, org.id if org else None)
                if plan.unmatched:
                    await _other_orgs(inventory, plan.unmatched, org)
        except (NeonError, LookupError, ValueError, JournalError) as e:
            _err(str(e))
            return EXIT_USAGE
        for text in plan.unmatched:
            _err(f"selector {text!r} matched no role")
        if not plan.targets and not plan.skipped and not resume_state:
            _err("nothing matched: check the selectors (PROJECT[/BRANCH[/ROLE]], names or ids) and --org")
            return EXIT_USAGE
        if not running:
            out.plan(plan)
            return EXIT_OK
        sinks, none = _sinks(ns, resume_state, settings)
        for s in sinks:
            if hasattr(s, "bind"):  # env:PATH sinks look for the plan's targets
                s.bind(plan.targets)
        single = [s.name for s in sinks if getattr(s, "one_target", False)]
        if single and len(plan.targets) > 1:
            raise UsageError(f"{single[0]} holds one value, and {len(plan.targets)} targets matched: name one "
                             "target (PROJECT/BRANCH/ROLE) per run, or deliver the others elsewhere")
        problems = _sink_problems(sinks, plan)
        if problems:
            for text in problems:
                _err(text)
            raise UsageError("some targets have nowhere to go with the chosen --deliver; nothing was changed")
        if not plan.targets and resume_state is None:
            out.plan(plan)
            _err("nothing to rotate")
            return EXIT_OK
        if not ns.json:
            out.plan(plan)
        if not ns.yes and not await _confirm(plan):
            _err("not confirmed; nothing was changed")
            return EXIT_USAGE
        from neon_tui.rotation.session import RunSession, SessionError
        from neon_tui.rotation.sinks import JsonLinesSink, StdoutSink

        if ns.json:
            sinks = [JsonLinesSink(out.describe) if isinstance(s, StdoutSink) else s for s in sinks]
        session = RunSession(client, plan, sinks=sinks, resume=resume_state, account=account,
                             key_kind=key_kind, selectors=list(ns.selectors), verify=ns.verify, route=route,
                             verify_unavailable=unavailable,
                             leaked=_login_worthy(ns.leak))
        out.session = session
        try:
            await session.prepare()
        except SessionError as e:
            _err(str(e))
            return EXIT_USAGE
        for s in sinks:
            if hasattr(s, "set_run"):  # aws-sm: the run id goes into each ClientRequestToken
                s.set_run(session.run_id)
        _env_context(session, sinks, resume_state)
        ns.run_started = True
        _on_sigint(session)
        try:
            async for ev in session.run(retry_failed=ns.retry_failed):
                out.event(ev)
            out.close()
        finally:
            out.close()
            await session.close()
        out.results(session)
        if session.alarms():
            return EXIT_FAILED
        if session.verification_counts().get("new failed"):
            return EXIT_FAILED  # a delivered password the server refuses is a failed rotation
        if session.halts or any(s not in (DELIVERED, SKIPPED) and not (none and s == ROTATED)
                                for s in session.counts()):
            return EXIT_FAILED
        return EXIT_OK


async def _other_orgs(inventory, unmatched: list[str], org) -> None:
    """A selector that exists only in another organization is an error that names the --org to use."""
    from neon_tui.rotation.plan import other_org_matches

    try:
        elsewhere = await other_org_matches(inventory, unmatched, org.id if org else None)
    except NeonError:
        return  # the hint is a courtesy; the plan itself stands
    hints = []
    for text, orgs in elsewhere.items():
        if orgs:
            names = " or ".join(f"--org {o.id} ({o.name})" for o in orgs)
            here = f"{org.name} ({org.id})" if org else "this organization"
            hints.append(f"selector {text!r} matches nothing in {here}; it matches in another organization: "
                         f"add {names}")
    if hints:
        raise LookupError("\n".join(hints))


def _on_sigint(session) -> None:
    """First Ctrl-C: stop starting resets and let those in flight finish. Second: stop now (passwords in
    hand are still handed over, marked unconfirmed). Third: give up at once."""
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    presses = {"n": 0}

    def on_sigint() -> None:
        presses["n"] += 1
        if presses["n"] == 1:
            session.cancel()
            _err("cancelling: no new resets; waiting for those in flight (Ctrl-C again to stop now)")
        elif presses["n"] == 2:
            session.abort()
            _err("stopping: passwords already returned are handed over, marked unconfirmed (Ctrl-C again to quit)")
        else:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):
        pass


async def ask_typed(prompt: str, word: str) -> bool:
    """Ask on the terminal (stderr, so stdout can go to a file) for a typed word; True when it was typed.
    The read runs in a daemon thread: a blocked read must not keep the process alive after Ctrl-C."""
    import threading

    sys.stderr.write(f"{prompt} Type '{word}' to go on: ")
    sys.stderr.flush()
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        line = sys.stdin.readline()
        loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(line))

    threading.Thread(target=read, daemon=True, name="confirm").start()
    return (await answer).strip() == word


async def _confirm(plan: Plan) -> bool:
    """Ctrl-C here changes nothing."""
    n = len(plan.targets)
    word = "rotate"
    if plan.touches_protected_branch:
        word = "rotate protected"
        print("This plan resets roles on PROTECTED branches.", file=sys.stderr)
    return await ask_typed(f"Reset {n} password{'s' if n != 1 else ''}?", word)


class Output:
    """Where things go: data (the plan without --apply, --deliver stdout, --json) to stdout; messages (the
    plan before a run, progress, the summary) to stderr, so `> creds.txt` captures only data.

    With --json a run writes JSON Lines on stdout: {"type": "run"} first, one {"type": "target"} object per
    target as soon as it is handed over (with its password and connection strings when stdout is a chosen
    sink) or settled, and a {"type": "summary"} object last.
    """

    def __init__(self, ns: argparse.Namespace) -> None:
        self.ns = ns
        self.session = None
        self.progress = None
        self.task = None
        self.total = 0
        self.done_keys: set[tuple] = set()
        self.written: set[tuple] = set()  # targets whose JSON line is out
        self.printed: dict[tuple, tuple] = {}  # what was last said of each target on stderr
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
            elif t.state == UNCONFIRMED:
                self.say(f"  unconfirmed {t.label}: handed over unconfirmed; its operations are checked first")
            elif t.state == FAILED:
                self.say(f"  failed    {t.label}: {t.reason}")

    def plan(self, plan: Plan) -> None:
        if self.ns.json:
            print(json.dumps(plan_json(plan), indent=2, ensure_ascii=False))
            return
        self.say(f"Plan: {len(plan.targets)} target(s) in {len(plan.projects)} project(s)")
        for t in plan.targets:
            dbs = ", ".join(d.name for d in t.connection_databases()) or (
                "no databases" if t.endpoints else "no compute, so no connection strings (databases not listed)")
            eps = ", ".join(e.id for e in t.read_write_endpoints) or "no read-write compute"
            self.say(f"  rotate  {t.label}  [{eps}; {dbs}]")
            for c in t.consequences():
                self.say(f"          - {c}")
        for sk in plan.skipped:
            self.say(f"  skip    {sk.label}: {sk.reason}")
        from neon_tui.rotation.plan import group_copies

        # one line per branch and reason, as in the TUI's review: flagged copies (likely the same password as a
        # target, so still exposed after this run) are WARNINGs; copies with their own password are notes
        for g in group_copies(plan.warnings):
            self.say(f"  {'WARNING' if g.flagged else 'copy   '} {g}")
        if getattr(self.ns, "verify", False) and plan.targets:
            from neon_tui.rotation.verify import WAKES_COMPUTES

            self.say(f"  NOTE    {WAKES_COMPUTES}")

    # ---------------------------------------------------------------- JSON Lines

    def _line(self, obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def target_json(self, key: tuple, state: str | None = None) -> dict[str, Any]:
        v = self.session.view(key)
        t = v.target
        res = v.result
        return {
            "type": "target", "project_id": t.project_id, "project": t.project_name, "branch_id": t.branch_id,
            "branch": t.branch_name, "role": t.role_name, "state": str(state or v.state), "reason": v.reason,
            "confirmed": None if res is None else res.confirmed,
            "endpoint": bool(t.endpoints), "databases": [d.name for d in t.connection_databases()],
            "delivered_to": sorted(v.delivered), "delivery_failed": v.delivery_failed,
            "operations": [{"id": o.id, "action": o.action, "status": o.status} for o in self.ops.get(key, ())],
            "attempts": v.attempts,
            "verify": v.verification.to_json() if v.verification is not None else None,
        }

    def describe(self, result) -> dict[str, Any]:
        """The JSON Lines sink's object for a target being handed over (stdout is the last sink)."""
        key = result.target.key
        v = self.session.view(key)
        others = [n for n in self.session.required if n != "stdout"]
        state = v.state
        if v.state == ROTATED and all(n in v.delivered for n in others):
            state = DELIVERED  # true once this line is flushed: stdout is the last sink to confirm
        self.written.add(key)
        return self.target_json(key, state)

    def event(self, ev: Any) -> None:
        if isinstance(ev, RunStarted):
            self.run = ev
            self.total = ev.total
            if self.ns.json:
                self._line({"type": "run", "run_id": ev.run_id, "journal": ev.journal, "targets": ev.total,
                            "resumed": ev.resumed, "sinks": self.session.required if self.session else []})
            elif self.tty:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                self.progress = Progress(TextColumn("rotating"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                         TimeElapsedColumn(), TextColumn("{task.description}"),
                                         console=Console(file=sys.stderr), transient=False)
                self.progress.start()
                self.task = self.progress.add_task("", total=ev.total)
            else:
                self.say(f"run {ev.run_id}: {ev.total} target(s); journal {ev.journal}")
        elif isinstance(ev, TargetChanged):
            self.ops[ev.key] = ev.operations or self.ops.get(ev.key, ())
            none = self.session is not None and not self.session.required
            finished = ev.state in (FAILED, SKIPPED, CANCELLED, DELIVERED) or (ev.state == ROTATED and none)
            if finished and ev.key not in self.done_keys:
                self.done_keys.add(ev.key)
                if self.progress is not None:
                    self.progress.update(self.task, completed=len(self.done_keys), description="")
            if self.ns.json:
                # Handed over: now (when stdout is a sink, its own line already went out). Failed, cancelled
                # and the like only at the end: a --retry-failed run may still change them.
                handed = ev.state == DELIVERED or (ev.state == ROTATED and none)
                if handed and ev.key not in self.written:
                    self.written.add(ev.key)
                    self._line(self.target_json(ev.key))
                return
            shown = (ev.state, ev.reason)
            if self.printed.get(ev.key) == shown:
                return  # the same news again (e.g. one more sink confirmed): say it once
            if ev.state in (FAILED, UNKNOWN, UNCONFIRMED) or (ev.state in (ROTATED, DELIVERED) and not self.tty):
                self.printed[ev.key] = shown
                reason = f": {ev.reason}" if ev.reason else ""
                self.say(f"{ev.state:9} {ev.target.label}{reason}")
            elif self.progress is not None and ev.state == APPLYING and ev.operations:
                waiting = ", ".join(f"{o.action} {o.status}" for o in ev.operations if not o.done)
                self.progress.update(self.task, description=f"{ev.target.label}: {waiting}"[:40])
        elif isinstance(ev, TargetVerified):
            t = ev.target
            if self.ns.json:
                self._line({"type": "verify", "project_id": t.project_id, "project": t.project_name,
                            "branch_id": t.branch_id, "branch": t.branch_name, "role": t.role_name,
                            "alarm": ev.alarm, **ev.verification.to_json()})
            elif ev.alarm:
                self.say(f"ALARM     {t.label}: the OLD PASSWORD STILL LOGS IN after the reset's operations "
                         f"finished ({ev.verification.describe()})")
            else:
                self.say(f"verify    {t.label}: {ev.verification.describe()}")
        elif isinstance(ev, DeliveryFailed):
            if not self.ns.json:
                self.say(f"delivery to {ev.sink} failed for {'/'.join(ev.key)}: {ev.reason}")
        elif isinstance(ev, Halted):
            self.say(f"neon-tui rotate: {ev.reason}; no new resets: stopping (those in flight finish and are "
                     "handed over or held); the run stays resumable")
            if self.session is not None:
                self.session.stop()
        elif isinstance(ev, RunFinished):
            self.finished = ev

    def close(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description="")
            self.progress.stop()
            self.progress = None

    def results(self, session) -> None:
        f = self.finished
        counts = session.counts()
        if self.ns.json:
            for v in session.views():
                if v.key not in self.written:
                    self.written.add(v.key)
                    self._line(self.target_json(v.key))
            self._line({"type": "summary", "run_id": session.run_id,
                        "journal": str(session.journal_path) if session.journal_path else None,
                        "counts": counts, "complete": session.complete, "cancelled": bool(f and f.cancelled),
                        "halted": session.halts or None,
                        "verification": session.verification_counts() if session.verify else None,
                        "alarms": len(session.alarms()),
                        "elapsed_seconds": round(f.elapsed, 3) if f else None, "requests": f.requests if f else None})
            return
        if f:
            summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            self.say(f"done in {f.elapsed:.1f}s, {f.requests} API requests: {summary}")
        if session.verify:
            from neon_tui.rotation.verify import summary_line

            line = summary_line(session.verification_counts())
            if line:
                self.say(line)
        for key in session.alarms():
            self.say(f"ALARM: the old password of {session.view(key).target.label} is STILL ACCEPTED after its "
                     "reset's operations finished; exit status 1")
        held = session.undelivered()
        if held:
            self.say(f"{len(held)} new password(s) did not reach every chosen sink; "
                     "`neon-tui rotate --resume` delivers those Neon can give back")
        if not session.complete:
            self.say("some targets did not finish; `neon-tui rotate --resume` completes the run")


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
