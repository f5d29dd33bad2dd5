"""The run journal: append-only, fsync'd JSONL in the state directory; it never holds a password or a key.

Writes go through one writer thread (`await journal.awrite(...)`), so an fsync never blocks the event
loop the TUI draws on, and records keep their order. A record is acted on only after its write returned.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

from neon_tui.neon.secret import Secret
from neon_tui.paths import state_dir


class TargetState(StrEnum):
    """Where one target stands. A StrEnum: journals and JSON carry the plain value."""

    PLANNED = "planned"          # not started (or proven not sent)
    RESETTING = "resetting"      # reset sent, answer pending
    APPLYING = "applying"        # reset accepted; waiting for its operations; the password is in hand
    ROTATED = "rotated"          # new password live and in hand, not yet at every chosen sink ("held")
    DELIVERED = "delivered"      # new password live and confirmed by every chosen sink
    UNCONFIRMED = "unconfirmed"  # reset applied, password handed over, its operations could not be confirmed
    UNKNOWN = "unknown"          # a reset may have landed and no password is in hand: reconcile first
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"      # not started (cancel, a stopped run, a halted project)


PLANNED, RESETTING, APPLYING = TargetState.PLANNED, TargetState.RESETTING, TargetState.APPLYING
ROTATED, DELIVERED, UNCONFIRMED = TargetState.ROTATED, TargetState.DELIVERED, TargetState.UNCONFIRMED
FAILED, SKIPPED, UNKNOWN, CANCELLED = TargetState.FAILED, TargetState.SKIPPED, TargetState.UNKNOWN, TargetState.CANCELLED
# May have a reset in flight or landed without a confirmed password: reconcile before anything else.
IN_DOUBT = frozenset({RESETTING, UNKNOWN, APPLYING})


class JournalError(Exception):
    title = "Journal"


class JournalWriteError(JournalError):
    """The journal could not be written (full disk, read-only state dir); the message is one line."""


def journal_dir() -> Path:
    return state_dir() / "runs"


_SECRET_FIELDS = ("password", "uri", "key", "api_key", "connection_string", "direct", "pooled", "value")


def _check(value: Any) -> Any:
    # A last line of defence: the journal must never be handed a secret, even by mistake.
    if isinstance(value, Secret):
        raise JournalError("refusing to write a secret to the journal")
    if isinstance(value, dict):
        for k, v in value.items():
            if k in _SECRET_FIELDS:
                raise JournalError(f"refusing to write field {k!r} to the journal")
            _check(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check(v)
    return value


def _drop_torn_tail(path: Path) -> None:
    """A crash mid-write leaves a last line without its newline; cut it before appending after it.

    Nothing is lost: a record is acted on only after its write (and fsync) returned, so a torn one
    describes something that never happened.
    """
    try:
        with open(path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)
                fh.flush()
                os.fsync(fh.fileno())
    except FileNotFoundError:
        pass


def _os_problem(path: Path, e: OSError) -> str:
    why = e.strerror or type(e).__name__
    return f"cannot write the run journal {path}: {why}"


class Journal:
    """One run's journal. Each record is one JSON line, flushed and fsync'd before the write returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _drop_torn_tail(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as e:
            raise JournalWriteError(_os_problem(path, e)) from None
        self._fh = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.broken: str | None = None  # why writing failed, once it has

    @classmethod
    def create(cls, directory: Path | None = None) -> Journal:
        directory = directory or journal_dir()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return cls(directory / f"run-{stamp}-{uuid.uuid4().hex[:8]}.jsonl")

    @property
    def run_id(self) -> str:
        return self.path.stem

    def write(self, event: str, **fields: Any) -> None:
        """Write one record now (blocking). Raises JournalWriteError if the disk refuses."""
        record = {"t": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event}
        record.update(_check(fields))
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            if self.broken:
                raise JournalWriteError(self.broken)
            try:
                self._fh.write(line)
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as e:
                self.broken = _os_problem(self.path, e)
                raise JournalWriteError(self.broken) from None

    async def awrite(self, event: str, **fields: Any) -> None:
        """Write one record on the journal's own thread (records stay in order); returns once it is on disk."""
        _check(fields)  # refuse secrets here, in the caller's frame, not in the thread
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, lambda: self.write(event, **fields))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError:
                pass


@dataclass
class JournalTarget:
    """What the journal knows about one target: its identity, last state and the facts reconciling needs."""

    key: tuple[str, str, str]
    label: str
    role_updated_at: str | None
    state: TargetState = PLANNED
    reason: str | None = None
    operations: list[str] = field(default_factory=list)
    attempts: int = 0
    sent_at: float | None = None
    store_passwords: bool = True
    # sink name -> where it went (journal-safe), for the current password of this target
    delivered: dict[str, str] = field(default_factory=dict)
    # sink name -> why delivery failed, for the current password
    delivery_failed: dict[str, str] = field(default_factory=dict)
    # the last verification's verdicts (verify.Verification.to_json()), for the current password
    verified: dict[str, Any] | None = None

    @property
    def delivered_to(self) -> list[str]:
        return list(self.delivered)


@dataclass
class JournalState:
    path: Path
    header: dict[str, Any]
    targets: dict[tuple[str, str, str], JournalTarget]
    ended: bool
    problems: list[str] = field(default_factory=list)  # "path:line: what is wrong"
    sinks: list[str] = field(default_factory=list)      # the sinks last chosen for the run

    @property
    def run_id(self) -> str:
        return self.path.stem

    @property
    def account(self) -> str | None:
        return self.header.get("account")

    @property
    def host(self) -> str | None:
        return self.header.get("host")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.targets.values():
            out[t.state] = out.get(t.state, 0) + 1
        return out


def _state(value: Any) -> TargetState:
    try:
        return TargetState(value)
    except ValueError:
        return UNKNOWN  # a state this version does not know: treat it as in doubt, reconcile first


def read_records(path: Path, problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for every JSON object line of a journal. A torn last line (a crash mid-write) is
    dropped, never acted on; a damaged line elsewhere is reported in `problems`. Unreadable: JournalError."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise JournalError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    lines = raw.decode("utf-8", errors="replace").split("\n")
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    out: list[tuple[int, dict[str, Any]]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            if n == last and not raw.endswith(b"\n"):
                break  # torn tail
            problems.append(f"{path}:{n}: not a journal record (damaged line)")
            continue
        out.append((n, rec))
    return out


def read_journal(path: Path) -> JournalState:
    """Replay a journal.

    A torn last line (a crash mid-write) is ignored. A damaged line elsewhere is reported in `problems`
    (path and line) and the run stays resumable, conservatively: every target not known to be final is
    treated as unknown, so resuming reconciles it (never resets it blindly). A file without a run header
    is not a neon-tui journal: JournalError.
    """
    header: dict[str, Any] | None = None
    targets: dict[tuple[str, str, str], JournalTarget] = {}
    ended = False
    problems: list[str] = []
    sinks: list[str] = []
    for n, rec in read_records(path, problems):
        ev = rec.get("event")
        try:
            if ev == "run":
                if header is not None:
                    problems.append(f"{path}:{n}: a second run header; ignored")
                    continue
                header = rec
                sinks = [str(s) for s in rec.get("sinks", [])]
                for t in rec.get("targets", []):
                    key = tuple(t["target"])
                    if len(key) != 3:
                        raise ValueError("bad target")
                    targets[key] = JournalTarget(key=key, label=t.get("label", "/".join(key)),
                                                 role_updated_at=t.get("role_updated_at"),
                                                 store_passwords=bool(t.get("store_passwords", True)))
            elif ev == "state":
                t = targets.get(tuple(rec.get("target", ())))
                if t is None:
                    continue
                state = _state(rec["state"])
                t.state = state
                t.reason = rec.get("reason")
                if rec.get("operations"):
                    t.operations = list(rec["operations"])
                if state == RESETTING:
                    t.attempts += 1
                    t.sent_at = rec.get("wall")
                    t.delivered, t.delivery_failed = {}, {}
                    t.verified = None
                    t.operations = []
                    if "before" in rec:
                        t.role_updated_at = rec["before"]
            elif ev == "delivered":
                t = targets.get(tuple(rec.get("target", ())))
                if t is not None:
                    sink = str(rec.get("sink", "?"))
                    t.delivered[sink] = str(rec.get("detail", ""))
                    t.delivery_failed.pop(sink, None)
                    if "detail" not in rec:
                        t.state = DELIVERED  # journals before sinks were recorded one by one
            elif ev == "delivery_failed":
                t = targets.get(tuple(rec.get("target", ())))
                if t is not None:
                    t.delivery_failed[str(rec.get("sink", "?"))] = str(rec.get("reason", ""))
            elif ev == "verified":
                t = targets.get(tuple(rec.get("target", ())))
                if t is not None and isinstance(rec.get("verification"), dict):
                    t.verified = rec["verification"]
            elif ev == "sinks":
                sinks = [str(s) for s in rec.get("sinks", [])]
            elif ev == "end":
                ended = True
            elif ev == "resumed":
                ended = False
        except (KeyError, TypeError, ValueError):
            problems.append(f"{path}:{n}: a {ev!r} record this version cannot read")
    if header is None:
        raise JournalError(f"{path}: not a neon-tui run journal (no run header)")
    if problems:
        for t in targets.values():
            # The lost line may have been a reset of any target not known to be past it (a failed one
            # too: an explicit retry of it may be what was lost).
            if t.state in (PLANNED, CANCELLED, FAILED) or t.state in IN_DOUBT:
                t.state = UNKNOWN
                t.reason = "the journal is damaged: reconcile before any reset"
        ended = False
    return JournalState(path, header, targets, ended, problems, sinks)


def list_journals(directory: Path | None = None) -> list[Path]:
    directory = directory or journal_dir()
    if not directory.is_dir():
        return []

    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    return sorted(directory.glob("run-*.jsonl"), key=mtime)


@dataclass
class ResumeSearch:
    """What a look for an interrupted run found: the newest one for this API and account, and the rest."""

    state: JournalState | None
    problems: list[str] = field(default_factory=list)        # damaged or foreign journals, by path and line
    elsewhere: list[JournalState] = field(default_factory=list)  # unfinished runs of other hosts or accounts


def find_unfinished(host: str | None = None, account: str | None = None,
                    directory: Path | None = None) -> ResumeSearch:
    """The newest run that did not end (crashed, killed, stopped) for this API host and account.

    A damaged or foreign journal never hides the others: it is reported and the search goes on.
    """
    found = ResumeSearch(None)
    for path in reversed(list_journals(directory)):
        try:
            state = read_journal(path)
        except JournalError as e:
            found.problems.append(str(e))
            continue
        found.problems.extend(state.problems)
        if state.ended:
            continue
        if (host is not None and state.host != host) or (
                account is not None and state.account is not None and state.account != account):
            found.elsewhere.append(state)
            continue
        if found.state is None:
            found.state = state
    return found


def now_wall() -> float:
    return time.time()
