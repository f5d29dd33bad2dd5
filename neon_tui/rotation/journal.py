"""The run journal: append-only, fsync'd JSONL in the state directory; it never holds a password or a key."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neon_tui.neon.secret import Secret
from neon_tui.paths import state_dir

# Target states, in the order a successful target passes through them.
PLANNED, RESETTING, APPLYING, ROTATED, DELIVERED = "planned", "resetting", "applying", "rotated", "delivered"
FAILED, SKIPPED, UNKNOWN, CANCELLED = "failed", "skipped", "unknown", "cancelled"
FINAL_OK = frozenset({ROTATED, DELIVERED})
FINAL = frozenset({ROTATED, DELIVERED, FAILED, SKIPPED, CANCELLED})


class JournalError(Exception):
    pass


def journal_dir() -> Path:
    return state_dir() / "runs"


def _check(value: Any) -> Any:
    # A last line of defence: the journal must never be handed a secret, even by mistake.
    if isinstance(value, Secret):
        raise JournalError("refusing to write a secret to the journal")
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("password", "uri", "key", "api_key", "connection_string"):
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


class Journal:
    """One run's journal. Each record is one JSON line, flushed and fsync'd before the call returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _drop_torn_tail(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fh = os.fdopen(fd, "a", encoding="utf-8")

    @classmethod
    def create(cls, directory: Path | None = None) -> Journal:
        directory = directory or journal_dir()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return cls(directory / f"run-{stamp}-{uuid.uuid4().hex[:8]}.jsonl")

    @property
    def run_id(self) -> str:
        return self.path.stem

    def write(self, event: str, **fields: Any) -> None:
        record = {"t": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event}
        record.update(_check(fields))
        self._fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


@dataclass
class JournalTarget:
    """What the journal knows about one target: its identity, last state and the facts reconciling needs."""

    key: tuple[str, str, str]
    label: str
    role_updated_at: str | None
    state: str = PLANNED
    reason: str | None = None
    operations: list[str] = field(default_factory=list)
    attempts: int = 0
    sent_at: float | None = None
    delivered_to: list[str] = field(default_factory=list)


@dataclass
class JournalState:
    path: Path
    header: dict[str, Any]
    targets: dict[tuple[str, str, str], JournalTarget]
    ended: bool

    @property
    def run_id(self) -> str:
        return self.path.stem

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.targets.values():
            out[t.state] = out.get(t.state, 0) + 1
        return out


def read_journal(path: Path) -> JournalState:
    """Replay a journal. A torn last line (a crash mid-write) is ignored; anything else malformed is an error."""
    header: dict[str, Any] | None = None
    targets: dict[tuple[str, str, str], JournalTarget] = {}
    ended = False
    lines = path.read_text(encoding="utf-8").split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if n >= len(lines) - 1:
                break
            raise JournalError(f"{path}: line {n} is not JSON") from None
        ev = rec.get("event")
        if ev == "run":
            header = rec
            for t in rec.get("targets", []):
                key = tuple(t["target"])
                targets[key] = JournalTarget(key=key, label=t.get("label", "/".join(key)),
                                             role_updated_at=t.get("role_updated_at"))
        elif ev == "state":
            t = targets.get(tuple(rec.get("target", ())))
            if t is None:
                continue
            t.state = rec["state"]
            t.reason = rec.get("reason")
            if rec.get("operations"):
                t.operations = list(rec["operations"])
            if rec["state"] == RESETTING:
                t.attempts += 1
                t.sent_at = rec.get("wall")
                if "before" in rec:
                    t.role_updated_at = rec["before"]
        elif ev == "delivered":
            t = targets.get(tuple(rec.get("target", ())))
            if t is not None:
                t.delivered_to.append(rec.get("sink", "?"))
                t.state = DELIVERED
        elif ev == "end":
            ended = True
    if header is None:
        raise JournalError(f"{path}: no run header")
    return JournalState(path, header, targets, ended)


def list_journals(directory: Path | None = None) -> list[Path]:
    directory = directory or journal_dir()
    if not directory.is_dir():
        return []
    return sorted(directory.glob("run-*.jsonl"), key=lambda p: p.stat().st_mtime)


def latest_unfinished(host: str | None = None, directory: Path | None = None) -> JournalState | None:
    """The newest run that did not end (crashed or killed), for this API host if given."""
    for path in reversed(list_journals(directory)):
        try:
            state = read_journal(path)
        except (JournalError, OSError):
            continue
        if state.ended:
            continue
        if host is not None and state.header.get("host") != host:
            continue
        return state
    return None


def now_wall() -> float:
    return time.time()
