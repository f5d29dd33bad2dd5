"""The incident's journals: rotation runs and action journals, read with their times, and the incident scope.

Scope (when no journal is named): every run and action journal written at or after the scope's start. The
start is `since` when given, else the `leaked_at` of the newest exposure scan that has one; with neither,
every journal counts (the report says so). A journal's time is its first record's "t".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from neon_tui.incident.actions import ActionLog, actions_dir, list_action_journals, read_action_journal
from neon_tui.incident.exposure_log import TimeError, parse_when
from neon_tui.rotation.journal import JournalError, JournalState, journal_dir, list_journals, read_journal


@dataclass
class RunLog:
    """One rotation run: its replayed state and every raw record (each carries "t"), in order."""

    state: JournalState
    records: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return self.state.run_id

    @property
    def header(self) -> dict[str, Any]:
        return self.state.header

    @property
    def started(self) -> str:
        return str(self.header.get("t", ""))


def _raw_records(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # read_journal reports damaged lines
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_run(path: Path) -> RunLog:
    """A run journal with its records; JournalError when it is not one."""
    return RunLog(read_journal(path), _raw_records(path))


@dataclass
class Inputs:
    runs: list[RunLog] = field(default_factory=list)
    actions: list[ActionLog] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    since: datetime | None = None
    since_source: str = "all journals"  # "--since", "leaked_at of <scan id>", "all journals", "named journals"


def _when(text: Any) -> datetime | None:
    try:
        return parse_when(str(text)) if text else None
    except TimeError:
        return None


def _resolve(spec: str, runs_dir: Path, acts_dir: Path) -> Path:
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    for d in (runs_dir, acts_dir):
        cand = d / (spec if spec.endswith(".jsonl") else spec + ".jsonl")
        if cand.is_file():
            return cand
    raise JournalError(f"{spec}: no such run or action journal (looked in {runs_dir} and {acts_dir})")


DEMO_HOST = "https://neon-sim.invalid/api/v2"  # the simulated account's API host in `--demo` (never a real one)


def current_host(demo: bool = False) -> str:
    """The API host this process talks to: the demo's, else NEON_API_HOST or Neon's."""
    import os

    from neon_tui.neon.client import DEFAULT_HOST

    return DEMO_HOST if demo else ((os.environ.get("NEON_API_HOST") or "").strip() or DEFAULT_HOST)


def _same_host(a: Any, b: str) -> bool:
    return not isinstance(a, str) or not a or a.rstrip("/") == b.rstrip("/")


def _same_account(a: Any, account: str | None) -> bool:
    return account is None or not isinstance(a, str) or not a or a == account


def belongs(header: dict[str, Any], *, host: str | None = None, account: str | None = None,
            not_before: datetime | None = None) -> bool:
    """Whether a journal (by its header) is this incident's: made against `host`, for `account` (a journal that
    names no account is kept), begun at or after `not_before`."""
    if host is not None and not _same_host(header.get("host"), host):
        return False
    if not _same_account(header.get("account"), account):
        return False
    if not_before is not None:
        t = _when(header.get("t"))
        if t is None or t < not_before:
            return False
    return True


def exposure_journals(directory: Path | None = None, *, host: str | None = None, account: str | None = None,
                      not_before: datetime | None = None) -> list[ActionLog]:
    """The readable exposure journals of this host and account, oldest first (damaged ones are skipped)."""
    out = []
    for path in list_action_journals("exposure", directory):
        try:
            log = read_action_journal(path)
        except JournalError:
            continue
        if belongs(log.header, host=host, account=account, not_before=not_before):
            out.append(log)
    return out


def load(specs: list[str] | None = None, *, since: datetime | None = None, runs_dir: Path | None = None,
         acts_dir: Path | None = None, host: str | None = None, not_before: datetime | None = None,
         account: str | None = None) -> Inputs:
    """The journals of the incident: the named ones (run or action ids, or paths), else the incident scope.

    In the scope, `host` keeps only journals made against that API host (the demo's never mix with a real
    account's), `account` only those of that account (journals that name none are kept), and `not_before`
    drops journals begun before it (a demo session counts only its own).

    A named journal that cannot be read raises JournalError (the caller said which); in the scope, a damaged
    or foreign journal is reported in `problems` and never hides the others.
    """
    runs_dir = runs_dir or journal_dir()
    acts_dir = acts_dir or actions_dir()
    out = Inputs(since=since)
    if specs:
        out.since_source = "named journals"
        for spec in specs:
            path = _resolve(spec, runs_dir, acts_dir)
            try:
                out.runs.append(read_run(path))
            except JournalError:
                out.actions.append(read_action_journal(path))  # raises JournalError if neither
    else:
        for path in list_journals(runs_dir):
            try:
                out.runs.append(read_run(path))
            except JournalError as e:
                out.problems.append(str(e))
        for path in list_action_journals(directory=acts_dir):
            try:
                out.actions.append(read_action_journal(path))
            except JournalError as e:
                out.problems.append(str(e))
        if host is not None:
            out.runs = [r for r in out.runs if _same_host(r.header.get("host"), host)]
            out.actions = [a for a in out.actions if _same_host(a.header.get("host"), host)]
        if account is not None:
            out.runs = [r for r in out.runs if _same_account(r.header.get("account"), account)]
            out.actions = [a for a in out.actions if _same_account(a.header.get("account"), account)]
        if not_before is not None:
            def recent(header: dict[str, Any]) -> bool:
                t = _when(header.get("t"))
                return t is not None and t >= not_before

            out.runs = [r for r in out.runs if recent(r.header)]
            out.actions = [a for a in out.actions if recent(a.header)]
        if since is not None:
            out.since_source = "--since"
        else:
            scans = [a for a in out.actions if a.kind == "exposure"]
            for scan in reversed(sorted(scans, key=lambda a: str(a.header.get("t", "")))):
                leaked = next((_when(r.get("leaked_at")) for r in scan.events("exposure_scanned")
                               if r.get("leaked_at")), None)
                if leaked is not None:
                    out.since, out.since_source = leaked, f"leaked_at of {scan.id}"
                    break
        if out.since is not None:
            keep = out.since

            def inside(header: dict[str, Any]) -> bool:
                t = _when(header.get("t"))
                return t is None or t >= keep

            out.runs = [r for r in out.runs if inside(r.header)]
            out.actions = [a for a in out.actions if inside(a.header)]
    for r in out.runs:
        out.problems.extend(r.state.problems)
    for a in out.actions:
        out.problems.extend(a.problems)
    out.runs.sort(key=lambda r: (r.started, r.id))
    out.actions.sort(key=lambda a: (str(a.header.get("t", "")), a.id))
    return out
