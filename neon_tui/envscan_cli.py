"""`neon-tui scan PATH...`: where .env files hold copies of Neon connection strings, and whose they are."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

DESCRIPTION = """\
Finds .env files (.env, .env.*, *.env; directories are searched, skipping .git, node_modules and .venv)
and, in them, every value that is a Neon connection string (host ep-…, pooled or direct). Each is matched
through the API to the role it belongs to: endpoint id -> project and branch, user -> role, path ->
database. Values are never printed. A Neon-looking value whose endpoint this key cannot see is reported as
unmatched. `neon-tui rotate ... --deliver env:PATH` patches those copies in place after each reset.

Exit status: 0 the scan finished (whatever it found); 2 bad input or the API could not be used.
"""

EXIT_OK, EXIT_USAGE = 0, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".env files or directories to search")
    p.add_argument("--json", action="store_true", help="one JSON object per value found, then a summary")
    p.add_argument("--demo", action="store_true", help="use an in-process simulated account")


def _err(msg: str) -> None:
    print(f"neon-tui scan: {msg}", file=sys.stderr, flush=True)


def main(ns: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(ns))
    except (KeyboardInterrupt, asyncio.CancelledError):
        _err("interrupted")
        return 130


async def endpoint_map(inventory) -> dict[str, tuple]:
    """endpoint id -> (ProjectInfo, BranchInfo) for every project the key can see, in every organization."""
    orgs = await inventory.load_organizations()
    projects = []
    for org_id in [o.id for o in orgs] or [None]:
        projects += await inventory.load_projects(org_id)
    seen = {}
    for p in projects:
        seen.setdefault(p.project.id, p)
    branch_maps = await asyncio.gather(*(inventory.load_branches(p) for p in seen.values()))
    out = {}
    for p, branches in zip(seen.values(), branch_maps):
        for b in branches.values():
            for e in b.endpoints:
                out[e.id] = (p, b)
    return out


async def _main(ns: argparse.Namespace) -> int:
    from neon_tui.neon.errors import NeonError
    from neon_tui.rotate_cli import make_client
    from neon_tui.rotation.envfiles import EnvParseError, find_env_files, scan_file
    from neon_tui.rotation.inventory import Inventory

    files, problems = find_env_files(ns.paths)
    for problem in problems:
        _err(problem)
    if problems and not files:
        return EXIT_USAGE
    values = []
    for f in files:
        try:
            values += scan_file(f)
        except EnvParseError as e:
            _err(str(e))
    rows = []
    if values:
        try:
            client, _sim = make_client(ns.demo)
        except NeonError as e:
            _err(str(e))
            return EXIT_USAGE
        async with client:
            inventory = Inventory(client)
            try:
                endpoints = await endpoint_map(inventory)
                for v in values:
                    row = {"file": str(v.path), "line": v.line, "variable": v.name, "database": v.uri.database,
                           "kind": v.uri.kind, "endpoint": v.uri.endpoint_id, "role": v.uri.user,
                           "has_password": v.uri.password is not None, "project": None, "project_id": None,
                           "branch": None, "branch_id": None, "matched": False, "problem": None}
                    found = endpoints.get(v.uri.endpoint_id)
                    if found is None:
                        row["problem"] = "endpoint unknown to this key"
                    else:
                        p, b = found
                        row.update(project=p.project.name, project_id=p.project.id, branch=b.branch.name,
                                   branch_id=b.branch.id)
                        roles = await inventory.load_roles(p, b)
                        if any(r.name == v.uri.user for r in roles):
                            row["matched"] = True
                        else:
                            row["problem"] = "no such role on that branch"
                    rows.append(row)
            except (NeonError, LookupError) as e:
                _err(str(e))
                return EXIT_USAGE
    matched = sum(r["matched"] for r in rows)
    if ns.json:
        for r in rows:
            print(json.dumps({"type": "value", **r}, ensure_ascii=False))
        print(json.dumps({"type": "summary", "files": len(files), "values": len(rows), "matched": matched,
                          "unmatched": len(rows) - matched}))
        return EXIT_OK
    for r in rows:
        where = f"{r['file']}:{r['line']} {r['variable']}"
        if r["matched"]:
            print(f"{where}\t{r['project']}/{r['branch']}/{r['role']}\t{r['database']}\t{r['kind']}")
        else:
            target = f"{r['project']}/{r['branch']}/{r['role']}" if r["project"] else f"{r['endpoint']} ({r['role']})"
            print(f"{where}\tunmatched: {r['problem']}: {target}\t{r['database']}\t{r['kind']}")
    _err(f"{len(files)} .env file(s), {len(rows)} Neon connection string(s), {matched} matched to a role")
    return EXIT_OK
