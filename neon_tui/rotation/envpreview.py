"""What an env delivery would touch, before the run: the stored copies under a path (file, line, variable,
target, database, direct/pooled), copies of roles the run does not rotate, and a per-file diff preview.

Read-only, no Textual, and never a password: every line shown has the password's bytes replaced by a mask.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from neon_tui.rotation.envfiles import EnvParseError, EnvValue, find_env_files, scan_file

OLD_MASK = "********"
NEW_MASK = "••••(new)••••"


@dataclass(frozen=True, slots=True)
class Copy:
    value: EnvValue
    target: str          # project/branch/role, or the endpoint id when the branch is not known here
    rotated: bool        # the run rotates this role (the copy will be patched)
    note: str = ""       # why it will not be patched (escape sequences, no password)

    @property
    def will_change(self) -> bool:
        return self.rotated and not self.note


@dataclass(slots=True)
class Preview:
    path: Path
    files: list[Path] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    diffs: dict[Path, list[str]] = field(default_factory=dict)

    @property
    def rotated(self) -> list[Copy]:
        return [c for c in self.copies if c.rotated]

    @property
    def stale(self) -> list[Copy]:
        return [c for c in self.copies if not c.rotated]


def masked_line(text: str, v: EnvValue, mask: str) -> str:
    """The binding's line up to the end of its value (and its closing quote), the password masked.
    Anything after the value (a comment) is left out: it is not part of the change."""
    span = v.password_span()
    start = text.rfind("\n", 0, v.span[0]) + 1
    end = v.span[1] + (1 if text[v.span[1]:v.span[1] + 1] in ("'", '"') else 0)
    if span is None:
        return f"{v.name}=<value not shown>"
    line = text[start:span[0]] + mask + text[span[1]:end]
    return line.replace("\r", "").replace("\n", "⏎")


def preview(path: str | os.PathLike, targets, endpoints: dict[str, tuple[str, str]] | None = None) -> Preview:
    """The copies under `path` of Neon connection strings. `targets`: the plan's; `endpoints`: endpoint id ->
    (project name, branch name) for branches known beyond the plan (copies there are shown as not rotated)."""
    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    out = Preview(p)
    known: dict[str, tuple[str, str]] = dict(endpoints or {})
    planned: set[tuple[str, str]] = set()  # (endpoint id, role)
    for t in targets:
        for e in t.endpoints:
            known[e.id] = (t.project_name, t.branch_name)
            planned.add((e.id, t.role_name))
    files, out.problems = find_env_files([p])
    out.files = files
    for f in files:
        try:
            text = f.read_bytes().decode("utf-8")
            values = scan_file(f)
        except (OSError, UnicodeDecodeError, EnvParseError) as e:
            out.problems.append(str(e) if isinstance(e, EnvParseError) else f"{f}: cannot read")
            continue
        diff: list[str] = []
        for v in values:
            where = known.get(v.uri.endpoint_id)
            label = f"{where[0]}/{where[1]}/{v.uri.user}" if where else f"{v.uri.endpoint_id} (unknown branch)/{v.uri.user}"
            rotated = (v.uri.endpoint_id, v.uri.user) in planned
            note = ("no password in it" if v.uri.password is None
                    else "" if v.patchable else "escape sequences: edit by hand")
            c = Copy(v, label, rotated, note)
            out.copies.append(c)
            if c.will_change:
                diff.append(f"@@ line {v.line} @@")
                diff.append("- " + masked_line(text, v, OLD_MASK))
                diff.append("+ " + masked_line(text, v, NEW_MASK))
        if diff:
            out.diffs[f] = diff
    return out
