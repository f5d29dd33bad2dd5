"""Marked targets as `neon-tui rotate` command lines: the hand-off from a `--read-only` session.

Each target becomes the selector PROJECT_ID/BRANCH_ID/ROLE (`plan.selector_for`: ids, and the role name
with glob characters and '/' bracket-quoted), shell-quoted, so the command selects exactly the marked
targets and nothing wider. `neon-tui rotate` takes one organization (--org), so marks spanning several
give one command per organization, in a stable order.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable

from neon_tui.rotation.plan import TargetKey, selector_for

PROGRAM = "neon-tui"
APPLY_ARGS = ("--apply", "--deliver", "stdout")


def rotate_commands(keys: Iterable[TargetKey], org_of: Callable[[str], str | None], *,
                    demo: bool = False, apply: bool = True) -> list[str]:
    """One `neon-tui rotate` command line per organization holding these targets.

    `org_of(project_id)` is the project's organization id (None: the key's own, with no --org).
    With `apply`, the command runs the resets (`--apply --deliver stdout`: it still shows the plan and
    asks for a typed confirmation at a terminal); without it, it only prints the plan.
    """
    by_org: dict[str | None, list[TargetKey]] = {}
    for key in keys:
        by_org.setdefault(org_of(key[0]), []).append(key)
    out = []
    for org in sorted(by_org, key=lambda o: (o is not None, o or "")):
        args = [PROGRAM, "rotate"]
        if demo:
            args.append("--demo")
        if org is not None:
            args += ["--org", org]
        args += [selector_for(k) for k in sorted(set(by_org[org]))]
        if apply:
            args += APPLY_ARGS
        out.append(shlex.join(args))
    return out
