"""`neon-tui audit`: who and what changed since the leak; `neon-tui audit drop`: drop roles, journaled."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

DESCRIPTION = """\
Neon has no audit log, so this reads every who/when signal its API gives, across every branch of every
project the key can see (--org: one organization):
  roles created or changed since TIME (a password reset counts as a change; resets neon-tui itself made,
  per its run journals, are marked "rotated by neon-tui"), roles on a child branch that its parent does not
  have (the parent's roles as they are now), login roles that own no database, branches created since TIME
  (with created_by), organization members (who joined since TIME, the admins), project access grants, and
  with --pg, in PostgreSQL: superusers, roles that can create roles or belong to neon_superuser, and roles
  that exist in PostgreSQL but not in Neon's role list. --pg logs in as each branch's database owner with
  the password Neon stores (projects that do not store passwords are "not checked") and wakes each compute.

TIME: ISO 8601 (2026-11-28T09:00Z; no zone means UTC) or an age: 90m, 24h, 7d, 2w. Default: the leak time
of the newest `neon-tui exposure` scan that recorded one, else 7 days ago; with --demo, the demo's leak
(48 hours before it starts).

Findings have a severity: high and medium are to act on; low and info are listed for review. Anything
that could not be read is listed as "not checked" with why; it is never reported clean.

Exit status: 0 complete, nothing high or medium; 1 incomplete (something not checked; PostgreSQL counts
only with --pg), nothing high or medium; 2 usage error or the API could not be used; 3 high or medium
findings.

`neon-tui audit drop PROJECT_ID/BRANCH_ID/ROLE...` reviews each role (refusing system-protected roles,
the project owner role and roles that own a database, naming the databases), asks you to type 'drop'
(--yes: do not ask; required without a terminal), deletes each role, waits for Neon's operations and
journals every outcome (kind "roles"). Exit: 0 all dropped, 1 some refused or failed, 2 usage error.
"""

EXIT_CLEAN, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_FINDINGS = 0, 1, 2, 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", metavar="TIME", help="the leak time: ISO 8601 or an age like 24h, 7d")
    p.add_argument("--org", help="audit only this organization (id, name or handle)")
    p.add_argument("--json", action="store_true", help="JSON Lines: findings, not-checked lines and a summary")
    p.add_argument("--pg", action="store_true",
                   help="also check PostgreSQL privileges, logging in as each branch's database owner")
    p.add_argument("--demo", action="store_true", help="use an in-process simulated account")
    sub = p.add_subparsers(dest="audit_command")
    drop = sub.add_parser("drop", help="drop roles: review, typed confirmation, journaled",
                          description="Drop roles on their branches (see `neon-tui audit --help`).")
    drop.add_argument("targets", nargs="+", metavar="PROJECT_ID/BRANCH_ID/ROLE")
    drop.add_argument("--yes", action="store_true", help="do not ask for confirmation (required without a terminal)")
    drop.add_argument("--json", action="store_true", dest="drop_json", help="JSON Lines: one object per role")
    drop.add_argument("--demo", action="store_true", dest="drop_demo", help="use an in-process simulated account")


def _err(msg: str) -> None:
    print(f"neon-tui audit: {msg}", file=sys.stderr, flush=True)


def exit_code(report, pg_requested: bool) -> int:
    if report.actionable:
        return EXIT_FINDINGS
    missing = [n for n in report.not_checked if pg_requested or n.what != "pg_privilege"]
    return EXIT_INCOMPLETE if missing else EXIT_CLEAN


def main(ns: argparse.Namespace) -> int:
    try:
        if ns.audit_command == "drop":
            return asyncio.run(_drop(ns))
        return asyncio.run(_audit(ns))
    except (KeyboardInterrupt, asyncio.CancelledError):
        _err("interrupted")
        return 130
    finally:
        backend = getattr(ns, "demo_backend", None)
        if backend is not None:
            backend.close()


async def _audit(ns: argparse.Namespace) -> int:
    from neon_tui.incident.audit import PgAccess, audit, default_since, journal_review, open_roles_journal, parse_since
    from neon_tui.neon.errors import NeonError
    from neon_tui.rotate_cli import make_client
    from neon_tui.rotation.journal import JournalError

    try:
        client, sim = make_client(ns.demo)
    except NeonError as e:
        _err(str(e))
        return EXIT_USAGE
    try:
        if ns.since:
            since, where = parse_since(ns.since), "--since"
        elif sim is not None:
            from neon_tui.simulator.leak import demo_leaked_at

            since, where = demo_leaked_at(sim), "the demo's leak time"
        else:
            since, where = None, ""  # from this account's exposure journals, once /auth has named the account
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    if since is None:
        try:
            account = (await client.get_auth()).account_id
        except NeonError as e:
            await client.aclose()
            _err(str(e))
            return EXIT_USAGE
        since, where = default_since(host=str(client.base_url), account=account)
    _err(f"looking for changes since {since.strftime('%Y-%m-%dT%H:%M:%SZ')} ({where})")
    pg = None
    if ns.pg:
        if sim is not None:
            from neon_tui.simulator.postgres import start_or_explain

            ns.demo_backend, why = await asyncio.to_thread(start_or_explain, sim)
            if why:
                _err(f"demo: {why}")
        from neon_tui.rotation.verify import where_to_verify

        route, unavailable = where_to_verify(client.base_url, sim, simulated=sim is not None)
        pg = PgAccess(route=route, unavailable=unavailable)
    async with client:
        try:
            report = await audit(client, since=since, orgs=ns.org, pg=pg)
            account = (await client.get_auth()).account_id
        except (NeonError, LookupError) as e:
            _err(str(e))
            return EXIT_USAGE
        try:
            journal = open_roles_journal(client, account=account)
            journal_review(journal, report)
            journal.close()
        except (JournalError, OSError) as e:
            _err(f"the review was not journaled: {e}")
    code = exit_code(report, ns.pg)
    if ns.json:
        for f in report.findings:
            _line({"type": "finding", **f.to_json()})
        for n in report.not_checked:
            _line({"type": "not_checked", **n.to_json()})
        _line({"type": "summary", "since": report.since.strftime("%Y-%m-%dT%H:%M:%SZ"), "since_from": where,
               "findings": report.counts(), "severities": report.severities(),
               "not_checked": len(report.not_checked), "organizations": report.organizations,
               "projects": report.projects, "branches": report.branches, "roles": report.roles,
               "rotated_by_neon_tui": report.rotated_by_us, "requests": report.requests,
               "elapsed_seconds": round(report.seconds, 3), "exit": code})
    else:
        _print_report(report)
    return code


def _print_report(report) -> None:
    from neon_tui.incident.audit import KINDS

    out = sys.stdout
    groups = report.by_kind()
    for kind, title in KINDS.items():
        found = groups.get(kind, [])
        if not found:
            continue
        out.write(f"{title} ({len(found)})\n")
        for f in found:
            target = f"  [{f.target}]" if f.target and f.severity in ("high", "medium") else ""
            out.write(f"  {f.severity:<6} {f.reason}{target}\n")
    if report.not_checked:
        out.write(f"Not checked ({len(report.not_checked)})\n")
        for n in report.not_checked:
            out.write(f"  {n.scope}: {n.reason}\n")
    out.flush()
    _err(report.summary())


def _line(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


async def _drop(ns: argparse.Namespace) -> int:
    from neon_tui.incident.audit import DropTarget, drop_roles, open_roles_journal, review_drops
    from neon_tui.neon.errors import NeonError
    from neon_tui.rotate_cli import make_client
    from neon_tui.rotation.journal import JournalError

    try:
        targets = [DropTarget.parse(t) for t in ns.targets]
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    if not ns.yes and not sys.stdin.isatty():
        _err("standard input is not a terminal: add --yes to drop without confirmation")
        return EXIT_USAGE
    try:
        client, _sim = make_client(ns.demo or ns.drop_demo)
    except NeonError as e:
        _err(str(e))
        return EXIT_USAGE
    async with client:
        try:
            account = (await client.get_auth()).account_id
        except NeonError as e:
            _err(str(e))
            return EXIT_USAGE
        reviews = await review_drops(client, targets)
        for rv in reviews:
            _err(f"{'drop   ' if rv.ok else 'refuse '} {rv.label}" + ("" if rv.ok else f": {rv.refusal}"))
        doable = [rv for rv in reviews if rv.ok]
        if doable and not ns.yes and not await _confirm(len(doable)):
            _err("not confirmed; nothing was dropped")
            return EXIT_INCOMPLETE
        try:
            journal = open_roles_journal(client, account=account)
        except (JournalError, OSError) as e:
            _err(f"cannot open the journal, nothing was dropped: {e}")
            return EXIT_USAGE
        try:
            outcomes = await drop_roles(client, targets, journal, reviews=reviews,
                                        on_outcome=lambda o: _err(f"{o.status:<8} {o.review.label}: {o.message}"))
        finally:
            journal.close()
    if ns.drop_json:
        for o in outcomes:
            t = o.review.target
            _line({"type": "role", "project_id": t.project_id, "branch_id": t.branch_id, "role": t.role,
                   "status": o.status, "message": o.message, "operations": o.operations})
    _err(f"journal: {journal.path}")
    return EXIT_CLEAN if all(o.status in ("dropped", "gone") for o in outcomes) else EXIT_INCOMPLETE


async def _confirm(n: int) -> bool:
    from neon_tui.rotate_cli import ask_typed

    return await ask_typed(f"Drop {n} role{'s' if n != 1 else ''}?", "drop")
