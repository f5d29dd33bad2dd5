"""A plain-text view of the account tree (organization, project, branch, role), for terminals without the TUI."""

from __future__ import annotations

import asyncio

from neon_tui.neon import NeonClient
from neon_tui.rotation.inventory import Inventory, ProjectInfo, shares_parent_password
from neon_tui.rotation.plan import skip_reason


async def render_tree(client: NeonClient) -> list[str]:
    inv = Inventory(client)
    lines: list[str] = []
    for org in await inv.load_organizations() or [None]:
        lines.append(f"{org.name} ({org.id})" if org else "(organization of this key)")
        projects = await inv.load_projects(org.id if org else None)
        await asyncio.gather(*(inv.load_branches(p) for p in projects))
        await asyncio.gather(*(inv.load_roles(p, b) for p in projects for b in (p.branches or {}).values()))
        for p in projects:
            flag = "" if p.project.store_passwords else "  [passwords not stored]"
            lines.append(f"  {p.project.name} ({p.project.id}){flag}")
            _branches(p, None, 2, lines)
    return lines


def _branches(p: ProjectInfo, parent: str | None, depth: int, lines: list[str]) -> None:
    for b in p.children(parent):
        badges = [x for x, on in (("default", b.branch.default), ("protected", b.branch.protected),
                                  ("no compute", not b.has_compute)) if on]
        lines.append("  " * depth + f"{b.branch.name} ({b.branch.id})" + (f"  [{', '.join(badges)}]" if badges else ""))
        for r in sorted(b.roles or [], key=lambda r: r.name):
            notes = []
            if (why := skip_reason(r)) is not None:
                notes.append(why.split(":")[0])
            elif shares_parent_password(p, b, r):
                notes.append("inherited password")
            lines.append("  " * (depth + 1) + f"- {r.name}" + (f"  [{'; '.join(notes)}]" if notes else ""))
        _branches(p, b.branch.id, depth + 1, lines)


async def print_tree(demo: bool) -> int:
    from neon_tui.rotate_cli import make_client

    client, _ = make_client(demo)
    async with client:
        if demo:
            print("SIMULATED Neon account (nothing here is real)")
        for line in await render_tree(client):
            print(line)
    return 0
