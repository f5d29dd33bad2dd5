"""`neon-tui ipallow`: review each project's IP Allow list, and change it after a review."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

DESCRIPTION = """\
ACTION is one of:
  list (default)   every project's allowlist and protected-only setting, with findings: open to every
                   address (empty list), covering protected branches only while an unprotected branch still
                   holds an exposed password (from the newest `neon-tui exposure` scan), entries that look
                   wrong. Nothing is written.
  review           the same, and journals that you reviewed it (ipallow_reviewed) for the checklist.
  set PROJECT      replace the list with --ips A,B,...   (--ips '' clears it: open to every address)
  add PROJECT      add --ips entries to the list
  remove PROJECT   remove --ips entries from the list
PROJECT is a project id or name. Entries: an IPv4 or IPv6 address, a CIDR range (203.0.113.0/24) or a
range (192.0.2.1-192.0.2.20). set/add/remove keep the protected-only setting unless --protected-only or
--all-branches says otherwise; both fields are always sent.

Before a change the review is shown (added, removed, warnings) and you confirm with y; when your own
address would be excluded you must type the project's name. Your address is the one Neon last saw your API
key used from (last_used_from_addr in the key list; no outside service is asked), or --my-ip. Then the
change is applied and its operations are waited for (a busy project, 423, is waited out within --timeout),
and the list is read back. IP Allow needs Neon's Scale plan: on other plans Neon refuses the change.

Output: text on stdout; --json: JSON Lines ({"type": "project"} per project and a {"type": "summary"}; for a
change {"type": "change"} then {"type": "applied"} or {"type": "failed"}). Changes are journaled in the
state directory (actions/ipallow-*.jsonl).

Exit status: list/review: 0 nothing flagged, 3 something flagged, 1 incomplete (nothing flagged among what
was read); set/add/remove: 0 applied (or nothing to change), 1 not applied (declined, refused by Neon,
operations failed or timed out); 2 usage error or the API could not be used.

Environment: NEON_API_KEY, NEON_API_HOST.
"""

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_FLAGGED = 0, 1, 2, 3
ACTIONS = ("list", "review", "set", "add", "remove")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=ACTIONS, help="list (default), review, set, add, remove")
    p.add_argument("project", nargs="?", help="project id or name (set/add/remove)")
    p.add_argument("--ips", help="comma-separated entries (set/add/remove)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--protected-only", dest="protected_only", action="store_const", const=True, default=None,
                       help="apply the list to protected branches only")
    scope.add_argument("--all-branches", dest="protected_only", action="store_const", const=False,
                       help="apply the list to every branch")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--my-ip", help="your own address, to be warned before excluding it")
    p.add_argument("--org", help="only this organization (id, name or handle)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a busy project and the "
                   "operations (default 120)")
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    p.add_argument("--demo", action="store_true", help="use an in-process simulated account")


def _err(msg: str) -> None:
    print(f"neon-tui ipallow: {msg}", file=sys.stderr, flush=True)


def _line(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class UsageError(Exception):
    pass


def main(ns: argparse.Namespace) -> int:
    try:
        _check_usage(ns)
    except UsageError as e:
        _err(str(e))
        return EXIT_USAGE
    try:
        return asyncio.run(_main(ns))
    except (KeyboardInterrupt, asyncio.CancelledError):
        _err("interrupted")
        return 130


def _check_usage(ns: argparse.Namespace) -> None:
    if ns.action in ("list", "review"):
        if ns.project or ns.ips is not None or ns.protected_only is not None:
            raise UsageError(f"`ipallow {ns.action}` takes no PROJECT, --ips or scope option")
        return
    if not ns.project:
        raise UsageError(f"`ipallow {ns.action}` needs a PROJECT (id or name)")
    if ns.ips is None:
        raise UsageError(f"`ipallow {ns.action}` needs --ips A,B,...")
    if ns.action != "set" and not ns.ips.strip():
        raise UsageError(f"`ipallow {ns.action}` needs at least one entry in --ips")
    if ns.timeout <= 0:
        raise UsageError("--timeout must be positive")


async def _main(ns: argparse.Namespace) -> int:
    from neon_tui.neon.errors import NeonError
    from neon_tui.rotate_cli import make_client

    try:
        client, _sim = make_client(ns.demo)
    except NeonError as e:
        _err(str(e))
        return EXIT_USAGE
    async with client:
        try:
            if ns.action in ("list", "review"):
                return await _list(ns, client)
            return await _change(ns, client)
        except (NeonError, LookupError) as e:
            _err(str(e))
            return EXIT_USAGE
        except UsageError as e:
            _err(str(e))
            return EXIT_USAGE


async def _projects(client, org: str | None):
    """(projects, plans by org id) for one organization or all the key can see."""
    from neon_tui.rotation.inventory import Inventory

    inv = Inventory(client)
    orgs = [await inv.resolve_org(org)] if org else (list(await inv.load_organizations()) or [None])
    projects = []
    for o in orgs:
        projects.extend(i.project for i in await inv.load_projects(o.id if o else None))
    return projects, {o.id: o.plan for o in orgs if o is not None}


async def _journal(client):
    from neon_tui.incident.actions import key_kind_of
    from neon_tui.incident.ipallow import open_journal

    auth = await client.get_auth()
    return open_journal(client, account=auth.account_id, key_kind=key_kind_of(auth.auth_method))


async def _list(ns: argparse.Namespace, client) -> int:
    from neon_tui.incident.ipallow import latest_exposure, review

    sent = client.requests_sent
    projects, plans = await _projects(client, ns.org)
    auth = await client.get_auth()  # the exposure scan of this API host and account only
    exposure = latest_exposure(host=str(client.base_url), account=auth.account_id)
    result = await review(client, projects, exposed=exposure.exposed if exposure else None, plans=plans)
    code = EXIT_FLAGGED if result.flagged else (EXIT_OK if result.complete else EXIT_INCOMPLETE)
    if ns.action == "review":
        from neon_tui.incident.ipallow import journal_reviewed

        journal = await _journal(client)
        try:
            await journal_reviewed(journal, result.projects)
        finally:
            journal.close()
    src = (f"exposure scan {exposure.source} ({len(exposure.exposed)} exposed)" if exposure
           else "no exposure scan journaled (run `neon-tui exposure`): exposed branches cannot be named")
    if ns.json:
        for p in result.projects:
            _line({"type": "project", **p.to_json()})
        _line({"type": "summary", "projects": len(result.projects), "flagged": len(result.flagged),
               "complete": result.complete, "problems": result.problems, "exposure": exposure.source if exposure
               else None, "reviewed": ns.action == "review", "requests": client.requests_sent - sent,
               "elapsed_seconds": round(result.seconds, 3), "exit": code})
    else:
        for p in result.projects:
            mark = "FLAG" if p.flagged else ("?   " if p.problem else "ok  ")
            plan = p.plan or "plan ?"
            sys.stdout.write(f"{mark} {p.name} ({p.project_id}) [{plan}]: {p.current.describe()}\n")
            for f in p.findings:
                sys.stdout.write(f"     {'!' if f.flag else '-'} {f.message}\n")
            if p.problem:
                sys.stdout.write(f"     ? {p.problem}\n")
        sys.stdout.flush()
        for problem in result.problems:
            _err(problem)
        _err(f"{len(result.flagged)} of {len(result.projects)} projects flagged; {src}")
        if ns.action == "review":
            _err("review journaled")
    return code


async def _find_project(client, wanted: str, org: str | None):
    """(project, plans by org id): by id first (one request), else by exact name among the listed projects."""
    from neon_tui.neon.errors import BadRequestError, NotFoundError

    try:
        return await client.get_project(wanted), None
    except (NotFoundError, BadRequestError):
        pass  # not an id (a name, or an id this key cannot see): look it up by name
    projects, plans = await _projects(client, org)
    hits = [p for p in projects if p.name == wanted]
    if not hits:
        raise UsageError(f"no project {wanted!r} (an id or a name)")
    if len(hits) > 1:
        raise UsageError(f"{len(hits)} projects are named {wanted!r}: use the id ({', '.join(p.id for p in hits)})")
    return hits[0], plans


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    answer = input()
    if not sys.stdin.isatty():
        sys.stderr.write("\n")  # piped answers are not echoed
    return answer.strip()


def _confirm(change) -> bool:
    """y/N; when the user's own address would be excluded, or the change opens the project to every address,
    the project's name must be typed."""
    try:
        if change.needs_typed:
            why = "Your own address would be excluded" if change.excludes_me else \
                f"This opens the project to every address ({change.opens})"
            return _ask(f"{why}. Type the project name ({change.name}) to apply anyway: ") == change.name
        return _ask("Apply this change? [y/N] ").lower() in ("y", "yes")
    except EOFError:
        return False


async def _change(ns: argparse.Namespace, client) -> int:
    from neon_tui.incident.ipallow import (
        AllowList,
        IpAllowError,
        apply,
        find_my_address,
        parse_entries,
        plan_change,
    )

    sent = client.requests_sent
    from neon_tui.neon.errors import NeonError

    project, plans = await _find_project(client, ns.project, ns.org)
    if plans is None:
        try:
            plans = {o.id: o.plan for o in await client.list_organizations()}
        except NeonError:
            plans = {}  # the plan stays unknown; Neon will say if it refuses
    plan = plans.get(project.org_id or "")
    before = AllowList.of(project)
    entries = parse_entries(ns.ips)
    if ns.action == "set":
        ips = entries
    elif ns.action == "add":
        ips = list(before.ips) + [e for e in entries if e not in before.ips]
    else:
        missing = [e for e in entries if e not in before.ips]
        if missing:
            raise UsageError(f"not in the list of {project.name}: {', '.join(missing)}")
        ips = [i for i in before.ips if i not in entries]
    only = before.protected_branches_only if ns.protected_only is None else ns.protected_only
    try:
        me = await find_my_address(client, given=ns.my_ip, org_ids=[project.org_id] if project.org_id else [])
    except ValueError as e:
        raise UsageError(str(e)) from None
    change = plan_change(before, AllowList(tuple(ips), only), me, project_id=project.id, name=project.name,
                         plan=plan)
    if ns.json:
        _line({"type": "change", **change.to_json()})
    else:
        for line in change.lines():
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
    if not change.ok:
        _err("nothing sent: fix the invalid entries")
        return EXIT_USAGE
    if not change.changed:
        _err("nothing to change")
        return EXIT_OK
    if not ns.yes and not _confirm(change):
        _err("not applied (declined)")
        if ns.json:
            _line({"type": "failed", "reason": "declined", "kind": "declined"})
        return EXIT_INCOMPLETE
    journal = await _journal(client)
    progress = (lambda s: _err(s)) if not ns.json else None
    try:
        done = await apply(client, change, journal, timeout=ns.timeout, on_state=progress)
    except IpAllowError as e:
        _err(f"not applied: {e.message}")
        if ns.json:
            _line({"type": "failed", "reason": e.message, "kind": e.kind, "journal": journal.path.stem})
        return EXIT_INCOMPLETE
    finally:
        journal.close()
    requests = client.requests_sent - sent
    if ns.json:
        _line({"type": "applied", "project_id": project.id, **AllowList.of(done.project).to_json(),
               "operations": [o.id for o in done.operations], "seconds": round(done.seconds, 3),
               "requests": requests, "journal": journal.path.stem})
    else:
        sys.stdout.write(f"applied {project.name} ({project.id}): {AllowList.of(done.project).describe()}; "
                         f"{len(done.operations)} operation(s) finished in {done.seconds:.1f}s\n")
        sys.stdout.flush()
    return EXIT_OK
