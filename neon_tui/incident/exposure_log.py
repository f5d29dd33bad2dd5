"""The exposure scan's action journal (kind "exposure"), and reading the times an operator types.

`neon-tui exposure` and the TUI's leak loader both call `journal_exposure` after a scan; the report and the
checklist read it back. Only where the leak came from is written (a file name, "paste", "demo sample"),
never its content, and the targets by id.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neon_tui.incident.actions import create_action_journal


class TimeError(ValueError):
    """A time the user typed that is not ISO 8601; the message is one line."""


def parse_when(text: str, what: str = "time") -> datetime:
    """An ISO 8601 time ("2026-11-30T14:05Z", "2026-11-30 14:05+01:00", "2026-11-30") as aware UTC.

    A time without a zone is taken as UTC (the report's timeline is UTC); raises TimeError otherwise.
    """
    raw = (text or "").strip()
    if not raw:
        raise TimeError(f"{what}: empty; give an ISO 8601 time such as 2026-11-30T14:05Z")
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeError(f"{what}: {raw[:40]!r} is not an ISO 8601 time (e.g. 2026-11-30T14:05Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def leak_source(name: str) -> str:
    """What the journal says the leak was: a file's base name, "standard input", "paste" or "demo sample"."""
    if name in ("paste", "demo sample"):
        return name
    if name == "-":
        return "standard input"
    return os.path.basename(name.rstrip("/")) or name


def _target(u) -> list[Any]:
    return [u.project_id, u.branch_id, u.role]


def journal_exposure(report, *, source: str, leaked_at: datetime | None, host: str | None,
                     account: str | None, key_kind: str | None = None, directory: Path | None = None) -> Path:
    """Write one "exposure" action journal for a finished scan; returns its path. Raises JournalWriteError."""
    journal = create_action_journal("exposure", host=host, account=account, key_kind=key_kind, directory=directory)
    try:
        journal.write(
            "exposure_scanned", source=leak_source(source), leaked_at=iso(leaked_at) if leaked_at else None,
            exposed=[list(e.key) for e in report.exposed],
            exposed_labels={"/".join(e.key): f"{e.project_name}/{e.branch_name}/{e.key[2]}" for e in report.exposed},
            unchecked=[_target(u) for u in report.unchecked],
            unchecked_labels={"/".join(u.key): f"{u.project_name or u.project_id}/{u.branch_name or u.branch_id}/"
                              f"{u.role} ({u.reason})" for u in report.unchecked if u.key is not None},
            counts={"exposed": len(report.exposed), "unchecked": len(report.unchecked), "clean": report.clean,
                    "roles": report.roles, "projects": report.projects, "organizations": report.organizations,
                    "requests": report.requests},
            complete=report.complete)
    finally:
        journal.close()
    return journal.path
