"""Journals of incident actions other than password resets; the report and the checklist read them.

Each action (an API-key hand-off, an IP allow change, role drops, an exposure scan) writes one append-only,
fsync'd JSONL file in `state_dir()/actions`, through the same `Journal` class as rotation runs, so the same
guard refuses any secret. The first record is the header:

    {"event": "action", "kind": <kind>, "host": ..., "account": ..., "key_kind": ..., "operator": {...}, ...}

Kinds and the events each writes (field names are part of the format; the report and checklist rely on them):

- ``exposure``: ``exposure_scanned`` source (a file name or "paste"/"demo sample", never content), leaked_at,
  exposed [[project, branch, role]...], exposed_labels {"p/b/r": "project/branch/role"}, unchecked [...],
  unchecked_labels {"p/b/r": "project/branch/role (why)"}, counts {...}, complete.
- ``keys``: ``key_created`` key_id, name, scope ("personal"|"organization"|"project"), org_id, project_id,
  request_id; ``key_stored`` key_id, sink; ``key_switched`` key_id; ``key_proven`` key_id, account;
  ``key_revoked`` key_id, which ("old"|"half-made"|"selected"), request_id; ``key_dead`` key_id, status;
  ``key_revoke_failed`` key_id, which, reason; ``key_new_dead`` key_id, reason (the new key was refused
  after it was proven: the old key went back into the sink); ``done`` outcome, reason. Added by the hand-off
  (incident/keys.py):
  ``key_intent`` name, scope, org_id, project_id, old_key_id, sink, sink_had_value (written before the create
  request); ``resumed`` steps; header fields old_key_id, sink, scope, org_id, project_id, key_source, manager
  (a revoke of selected keys: selected, in_use). ``done`` outcome is rotated | undone | old_live |
  half_made_live (the undo could not revoke the new key: resumable) | new_key_dead | wrong_key (the key
  revoked was not the one in use, which is still live) | abandoned (a demo's, closed by a later demo) | failed
  (hand-off), revoked | partial (selected), created | failed (create); after old_live or half_made_live a resume
  appends again.
- ``ipallow``: ``ipallow_reviewed`` project_id, findings [{"kind", "message", "flag"}...], review_projects
  (how many projects that review covered); ``ipallow_changed`` project_id, before, after
  (each {"ips": [...], "protected_branches_only": bool}), operations [ids], request_id; ``ipallow_applied``
  project_id, operations; ``ipallow_failed`` project_id, reason.
- ``roles``: ``audit_reviewed`` findings (counts by kind), severities, flagged (roles with high or medium
  findings), flagged_targets [[project_id, branch_id, role]...], not_checked, since; ``role_dropped`` project_id,
  branch_id, role, operations, request_id, already_gone; ``role_drop_failed`` project_id, branch_id, role,
  reason; ``role_drop_refused`` (the same fields: the review refused it, e.g. a protected role or one the API
  does not know; never a failure to act on); ``role_kept`` project_id, branch_id, role, reason.
- ``report``: ``report_written`` path, format ("markdown"|"json"), runs [ids], actions [ids].

Every record also carries "t" (UTC ISO time) from `Journal.write`.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neon_tui.paths import state_dir
from neon_tui.rotation.journal import Journal, JournalError, read_records

ACTION_KINDS = ("exposure", "keys", "ipallow", "roles", "report")


def actions_dir() -> Path:
    return state_dir() / "actions"


def operator() -> dict[str, str]:
    """Who ran this: the OS user and this machine's host name (for the report)."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in a container
        user = "unknown"
    return {"user": user, "hostname": socket.gethostname()}


def key_kind_of(auth_method: str | None) -> str | None:
    """GET /auth's auth_method as the key kind the journals carry: personal, organization or project."""
    return {"api_key_user": "personal", "api_key_org": "organization",
            "api_key_project": "project"}.get(auth_method or "", auth_method or None)


def create_action_journal(kind: str, *, host: str | None, account: str | None, key_kind: str | None = None,
                          directory: Path | None = None, **fields: Any) -> Journal:
    """Open a new action journal and write its header; raises JournalWriteError if the disk refuses."""
    if kind not in ACTION_KINDS:
        raise ValueError(f"unknown action kind {kind!r}")
    directory = directory or actions_dir()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    journal = Journal(directory / f"{kind}-{stamp}-{uuid.uuid4().hex[:8]}.jsonl")
    journal.write("action", kind=kind, host=host, account=account, key_kind=key_kind, operator=operator(), **fields)
    return journal


@dataclass
class ActionLog:
    path: Path
    header: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)  # every record after the header, in order
    problems: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.header.get("kind", ""))

    @property
    def id(self) -> str:
        return self.path.stem

    def events(self, *names: str) -> list[dict[str, Any]]:
        return [r for r in self.records if not names or r.get("event") in names]


def read_action_journal(path: Path) -> ActionLog:
    """Replay an action journal. A torn last line (crash mid-write) is dropped; other damaged lines are
    reported in `problems`. A file without an action header raises JournalError."""
    problems: list[str] = []
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    for _n, rec in read_records(path, problems):
        if header is None:
            if rec.get("event") != "action":
                raise JournalError(f"{path}: not a neon-tui action journal (no action header)")
            header = rec
        else:
            records.append(rec)
    if header is None:
        raise JournalError(f"{path}: not a neon-tui action journal (no action header)")
    return ActionLog(path, header, records, problems)


def list_action_journals(kind: str | None = None, directory: Path | None = None) -> list[Path]:
    """Action journals, oldest first (names start with kind and a UTC stamp)."""
    directory = directory or actions_dir()
    try:
        paths = [p for p in directory.glob("*.jsonl") if p.is_file()]
    except OSError:
        return []
    if kind is not None:
        paths = [p for p in paths if p.name.startswith(kind + "-")]
    return sorted(paths, key=lambda p: (p.name.split("-", 1)[1] if "-" in p.name else p.name))
