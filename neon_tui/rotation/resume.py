"""Rebuild the plan of an interrupted run from its journal and the live account."""

from __future__ import annotations

from neon_tui.neon.errors import NotFoundError
from neon_tui.rotation.inventory import Inventory, ProjectInfo
from neon_tui.rotation.journal import JournalState
from neon_tui.rotation.plan import Plan, build_plan


async def plan_for_resume(inventory: Inventory, state: JournalState) -> tuple[Plan, list[str]]:
    """The plan for the journal's targets, and labels of targets that no longer exist."""
    for pid in sorted({k[0] for k in state.targets}):
        if pid in inventory.projects:
            info = inventory.projects[pid]
        else:
            try:
                project = await inventory.client.get_project(pid)
            except NotFoundError:
                continue  # deleted since: its targets are reported as gone
            # Any other error propagates: a passing 503 must not pass for a deleted project.
            info = inventory.projects.setdefault(pid, ProjectInfo(project))
        await inventory.load_branches(info)
    present = [k for k in state.targets
               if k[0] in inventory.projects and k[1] in (inventory.projects[k[0]].branches or {})]
    plan = await build_plan(inventory, present)
    plan.org_id = state.header.get("org_id")
    found = {t.key for t in plan.targets} | {k for k in present if any(
        s.label == state.targets[k].label for s in plan.skipped)}
    gone = [state.targets[k].label for k in state.targets if k not in found]
    return plan, gone
