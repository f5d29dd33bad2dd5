"""`neon-tui exposure`: which roles, on which branches, hold a leaked password now."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

DESCRIPTION = """\
FILE is what leaked: a .env file, connection strings (postgresql://...), libpq or JDBC strings, or bare
passwords, one per line ('-' reads standard input). Secrets are never taken on the command line.

Every organization the key can see is scanned (--org: one), every project, branch and login role. Where
the project stores passwords, each role's password is revealed and compared in memory with the leaked
ones; where it does not, --probe-logins tries a real login per role and leaked password (values of
arbitrary .env variables are only compared in memory, never tried in a login); without it such roles are
reported "not checked".

Output: one selector PROJECT_ID/BRANCH_ID/ROLE per exposed target on stdout, ready for
`neon-tui rotate` (names with *, ?, [ or / are bracket-quoted, e.g. etl[/]loader), e.g.
    neon-tui exposure --leaked leak.env --org ORG | xargs -d '\\n' neon-tui rotate --org ORG
A summary goes to stderr. --json: JSON Lines on stdout, one {"type": "exposed"} or {"type": "unchecked"}
object per target and a {"type": "summary"} last; never a secret.

Exit status: 0 scan complete, nothing exposed; 1 scan incomplete (some targets could not be checked),
nothing exposed among those checked; 2 usage error, unreadable leak file, or the API could not be used;
3 exposed targets found, scan complete; 4 exposed targets found and the scan is incomplete.

Environment: NEON_API_KEY, NEON_API_HOST; PGHOSTADDR and PGPORT route login probes (see --probe-logins).
"""

EXIT_CLEAN, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_EXPOSED, EXIT_EXPOSED_INCOMPLETE = 0, 1, 2, 3, 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--leaked", required=True, metavar="FILE",
                   help="what leaked: a file, or '-' for standard input (never the secret itself)")
    p.add_argument("--json", action="store_true", help="JSON Lines: exposed/unchecked targets and a summary")
    p.add_argument("--probe-logins", action="store_true",
                   help="for projects that do not store passwords: try a login per role and leaked password")
    p.add_argument("--org", help="scan only this organization (id, name or handle)")
    p.add_argument("--leaked-at", metavar="TIME",
                   help="when the leak happened (ISO 8601, e.g. 2026-11-30T14:05Z; default unknown): the start of "
                        "the incident's leak window in `neon-tui report` and `neon-tui status`")
    p.add_argument("--demo", action="store_true", help="use an in-process simulated account")


def _err(msg: str) -> None:
    print(f"neon-tui exposure: {msg}", file=sys.stderr, flush=True)


def exit_code(report) -> int:
    if report.exposed:
        return EXIT_EXPOSED if report.complete else EXIT_EXPOSED_INCOMPLETE
    return EXIT_CLEAN if report.complete else EXIT_INCOMPLETE


def load_leaked(leaked: str, err) -> "object | None":
    """Read `--leaked FILE|-` (also `rotate --leaked`): the Leak, or None after err() said why."""
    from neon_tui.rotation.leak import LeakError, read_leak

    if leaked != "-" and ("://" in leaked or "password=" in leaked.lower()):
        # Looks like a secret typed on the command line: refuse without repeating it.
        err("--leaked takes a FILE (or '-' for standard input), not the secret itself: the command line is "
            "visible to other processes and kept in shell history")
        return None
    if leaked == "-" and sys.stdin.isatty():
        err("reading the leak from the terminal: paste it, then Ctrl-D (input is not echoed back)")
    try:
        return read_leak(leaked)
    except LeakError as e:
        err(str(e))
        return None


def main(ns: argparse.Namespace) -> int:
    from neon_tui.incident.exposure_log import TimeError, parse_when

    ns.leaked_when = None
    if getattr(ns, "leaked_at", None):
        try:
            ns.leaked_when = parse_when(ns.leaked_at, "--leaked-at")
        except TimeError as e:
            _err(str(e))
            return EXIT_USAGE
    leak = load_leaked(ns.leaked, _err)
    if leak is None:
        return EXIT_USAGE
    try:
        return asyncio.run(_main(ns, leak))
    except (KeyboardInterrupt, asyncio.CancelledError):
        _err("interrupted; the scan is incomplete")
        return 130
    finally:
        backend = getattr(ns, "demo_backend", None)
        if backend is not None:
            backend.close()


async def _main(ns: argparse.Namespace, leak) -> int:
    from neon_tui.neon.errors import NeonError
    from neon_tui.rotate_cli import make_client
    from neon_tui.rotation.exposure import scan

    try:
        client, _sim = make_client(ns.demo)
    except NeonError as e:
        _err(str(e))
        return EXIT_USAGE
    _err(leak.summary())
    route, login = None, None
    if ns.probe_logins:
        if _sim is not None:
            # The demo probes through real PostgreSQL when this machine has it (main() closes it).
            from neon_tui.simulator.postgres import start_or_explain

            ns.demo_backend, why = await asyncio.to_thread(start_or_explain, _sim)
            if why:
                _err(f"demo: {why}")
        from neon_tui.rotation.exposure import probe_route

        route, login = probe_route(client.base_url, _sim)
    progress = _Progress() if sys.stderr.isatty() and not ns.json else None
    async with client:
        try:
            report = await scan(client, leak, probe_logins=ns.probe_logins, route=route, login=login,
                                progress=progress, org=ns.org)
        except (NeonError, LookupError) as e:
            if progress:
                progress.done()
            _err(str(e))
            return EXIT_USAGE
        await _journal(ns, client, report, ns.leaked)
    if progress:
        progress.done()
    if ns.json:
        write_json(report)
    else:
        write_selectors(report)
    return exit_code(report)


async def _journal(ns: argparse.Namespace, client, report, source: str) -> None:
    """The scan's action journal, for `neon-tui report` and `neon-tui status` (a failure is said, not fatal)."""
    from neon_tui.incident.actions import key_kind_of
    from neon_tui.incident.exposure_log import journal_exposure
    from neon_tui.neon.errors import NeonError
    from neon_tui.rotation.journal import JournalError

    try:
        auth = await client.get_auth()
        account, kind = auth.account_id, key_kind_of(auth.auth_method)
    except NeonError:
        account = kind = None
    try:
        journal_exposure(report, source=source, leaked_at=ns.leaked_when, host=client.base_url,
                         account=account, key_kind=kind)
    except JournalError as e:
        _err(f"the scan was not journaled ({e}); `neon-tui report` will not know of it")


class _Progress:
    def __init__(self) -> None:
        self.shown = False

    def __call__(self, p) -> None:
        sys.stderr.write(f"\rscanning: {p.projects_done}/{p.projects_total} projects, "
                         f"{p.roles_done}/{p.roles_total} roles ")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def write_selectors(report) -> None:
    from neon_tui.rotation.plan import selector_for

    for e in report.exposed:
        sys.stdout.write(selector_for(e.key) + "\n")
    sys.stdout.flush()
    for e in report.exposed:
        _err(f"exposed     {e.label} ({e.how}; {', '.join(s.describe() for s in e.leaked)})")
    for u in report.unchecked:
        _err(f"not checked {u.label}: {u.reason}")
    orgs = sorted({e.org_id or "" for e in report.exposed})
    if len(orgs) > 1:
        _err(f"exposed targets are in {len(orgs)} organizations ({', '.join(o or '(key)' for o in orgs)}); "
             "`neon-tui rotate` plans one organization at a time: run it once per --org "
             "(or scan with --org ORG)")
    _err(report.summary())
    for reason, n in sorted(report.reasons().items()):
        _err(f"  {n} not checked: {reason}")


def _line(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def write_json(report) -> None:
    from neon_tui.rotation.plan import selector_for

    for e in report.exposed:
        _line({"type": "exposed", "selector": selector_for(e.key), "org_id": e.org_id, "project_id": e.key[0],
               "project": e.project_name, "branch_id": e.key[1], "branch": e.branch_name, "role": e.key[2],
               "how": e.how, "leaked": [o.to_json() for s in e.leaked for o in s.origins]})
    for u in report.unchecked:
        _line({"type": "unchecked", "scope": u.scope, "selector": selector_for(u.key) if u.key else None,
               "org_id": u.org_id, "project_id": u.project_id, "project": u.project_name,
               "branch_id": u.branch_id, "branch": u.branch_name, "role": u.role, "reason": u.reason})
    _line({"type": "summary", "exposed": len(report.exposed), "unchecked": len(report.unchecked),
           "clean": report.clean, "roles": report.roles, "projects": report.projects,
           "organizations": report.organizations, "leaked": report.leaked, "complete": report.complete,
           "requests": report.requests, "logins": report.logins, "elapsed_seconds": round(report.seconds, 3),
           "exit": exit_code(report)})
    sys.stdout.flush()
