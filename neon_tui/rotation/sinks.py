"""Sinks: every place a new password can go, behind one protocol.

    preflight()  before any reset: prove the sink can take a password (the keyring probe, a new file,
                 a writable stream). Raises SinkError with a message made to be shown.
    deliver(r)   hand one target's password over. Safe to repeat for the same target and password.
                 Returns a Receipt: where it went, in words the journal may keep (never the value).

`automatic` sinks receive each password as its target rotates (stdout, JSON Lines, a file, the
keyring in the CLI); the others are used by hand from the TUI (the clipboard, the .env block, `k`).
A new destination (files in place, CI and platform secrets) is one more class here; the engine and
the session do not change.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from neon_tui.neon.secret import Secret
from neon_tui.rotation.events import RotationResult


class SinkError(Exception):
    """A sink cannot take passwords; the message says why and never holds a secret."""

    title = "Delivery failed"


@dataclass(frozen=True, slots=True)
class Receipt:
    sink: str
    detail: str  # where it went, journal-safe


@runtime_checkable
class Sink(Protocol):
    name: str
    automatic: bool

    async def preflight(self) -> str:
        """Prove the sink works before any reset; returns a short description of it."""

    async def deliver(self, result: RotationResult) -> Receipt:
        """Hand one password over (idempotent for the same target and password)."""


# --------------------------------------------------------------------------- what a sink writes


def status_of(result: RotationResult) -> str:
    """live | unconfirmed, plus ",no-endpoint-yet" when the branch has no compute to connect to."""
    status = "live" if result.confirmed else "unconfirmed"
    return status if result.has_endpoint else status + ",no-endpoint-yet"


def _field(text: str) -> str:
    # Names may hold tabs or newlines (odd role and branch names): keep one record per line.
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def credential_rows(result: RotationResult) -> list[tuple[str, str, str, Secret, str]]:
    """One row per credential: (label, database, kind, value, status).

    kind is direct | pooled (connection strings) or password (a branch without compute: the password
    itself, with the role, branch and databases in the label and database columns).
    """
    t = result.target
    status = status_of(result)
    rows: list[tuple[str, str, str, Secret, str]] = []
    for c in result.connections:
        rows.append((t.label, c.database, "direct", c.direct, status))
        if c.pooled is not None:
            rows.append((t.label, c.database, "pooled", c.pooled, status))
    if not result.connections:
        for db in result.databases or ["-"]:
            rows.append((t.label, db, "password", result.password, status))
    return rows


def tsv_lines(result: RotationResult) -> list[str]:
    """label<TAB>database<TAB>kind<TAB>value<TAB>status lines (hold the secret)."""
    return [f"{_field(label)}\t{_field(db)}\t{kind}\t{value.reveal()}\t{status}\n"
            for label, db, kind, value, status in credential_rows(result)]


def credentials_json(result: RotationResult) -> dict[str, Any]:
    """The secret part of a JSON Lines target object."""
    return {
        "password": result.password.reveal(),
        "connections": [{"database": c.database, "direct": c.direct.reveal(),
                         "pooled": c.pooled.reveal() if c.pooled else None} for c in result.connections],
    }


def _fingerprint(result: RotationResult) -> tuple:
    # Which password went where, without keeping another copy of it around.
    digest = hashlib.sha256(result.password.reveal().encode()).hexdigest()
    return result.target.key, digest, result.confirmed


# --------------------------------------------------------------------------- streams


class _StreamSink:
    """Writes each target once to a text stream (standard output unless given), flushed per target."""

    automatic = True
    name = "stdout"
    what = "standard output"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._done: set[tuple] = set()

    @property
    def stream(self) -> IO[str]:
        return self._stream or sys.stdout

    async def preflight(self) -> str:
        if self.stream.closed:
            raise SinkError("standard output is closed")
        return self.what

    def render(self, result: RotationResult) -> tuple[str, str]:
        """(text to write, receipt detail)."""
        raise NotImplementedError

    async def deliver(self, result: RotationResult) -> Receipt:
        text, detail = self.render(result)
        if _fingerprint(result) not in self._done:  # safe to repeat: the same password is written once
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError) as e:
                raise SinkError(f"standard output refused the write ({type(e).__name__})") from None
            self._done.add(_fingerprint(result))
        return Receipt(self.name, detail)


class StdoutSink(_StreamSink):
    """Tab-separated lines on standard output, flushed per target (the CLI's --deliver stdout)."""

    def render(self, result: RotationResult) -> tuple[str, str]:
        lines = tsv_lines(result)
        return "".join(lines), f"standard output, {len(lines)} line(s)"


class JsonLinesSink(_StreamSink):
    """One JSON object per target on standard output, flushed as soon as the target is handed over.

    `describe(result)` gives the non-secret part (identity, state, where else it went); this sink adds
    the password and the connection strings.
    """

    what = "standard output (JSON Lines)"

    def __init__(self, describe: Callable[[RotationResult], dict[str, Any]], stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        self._describe = describe

    def render(self, result: RotationResult) -> tuple[str, str]:
        obj = self._describe(result)
        obj.update(credentials_json(result))
        return json.dumps(obj, ensure_ascii=False) + "\n", "standard output, 1 JSON line"


# --------------------------------------------------------------------------- a new file


class FileSink:
    """--deliver file:PATH: a new file, mode 0600, one line per credential, written and fsync'd per target.

    It refuses a path that exists, except the file this same run created (resuming appends to it).
    Lines are the tab-separated ones of --deliver stdout, after a '#' header line.
    """

    automatic = True

    def __init__(self, path: str | Path, *, may_append: bool = False) -> None:
        self.path = Path(os.path.abspath(os.path.expanduser(str(path))))
        self.name = f"file:{self.path}"
        self.may_append = may_append
        self._fd: int | None = None
        self._done: set[str] = set()  # sha256 of every line already in the file
        self._lines = 0

    async def preflight(self) -> str:
        await asyncio.to_thread(self._open)
        return str(self.path)

    def _open(self) -> None:
        if self._fd is not None:
            return
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            if self.may_append and os.path.lexists(self.path):
                st = os.lstat(self.path)
                if not os.path.isfile(self.path) or os.path.islink(self.path):
                    raise SinkError(f"{self.path} is not a regular file; refusing to write to it")
                if st.st_uid != os.getuid() or st.st_mode & 0o077:
                    raise SinkError(f"{self.path} is not a private file of yours (mode 0600); refusing to append")
                with open(self.path, "rb") as fh:
                    for line in fh:
                        self._done.add(hashlib.sha256(line).hexdigest())
                        self._lines += 1
                self._fd = os.open(self.path, flags)
                return
            self._fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise SinkError(f"{self.path} exists: --deliver file: only writes a new file; choose another path") \
                from None
        except OSError as e:
            raise SinkError(f"cannot create {self.path}: {e.strerror or type(e).__name__}") from None
        try:
            from datetime import datetime, timezone

            made = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            header = f"# neon-tui new passwords, {made}: label\tdatabase\tkind\tvalue\tstatus\n".encode()
            os.write(self._fd, header)
            self._lines += 1
            os.fsync(self._fd)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)  # the new name itself survives a crash
            finally:
                os.close(dfd)
        except OSError as e:
            raise SinkError(f"cannot write {self.path}: {e.strerror or type(e).__name__}") from None

    async def deliver(self, result: RotationResult) -> Receipt:
        lines = [line.encode() for line in tsv_lines(result)]
        return await asyncio.to_thread(self._append, lines)

    def _append(self, lines: list[bytes]) -> Receipt:
        if self._fd is None:
            self._open()
        assert self._fd is not None
        new = [line for line in lines if hashlib.sha256(line).hexdigest() not in self._done]
        first = self._lines + 1
        if new:
            try:
                os.write(self._fd, b"".join(new))
                os.fsync(self._fd)
            except OSError as e:
                raise SinkError(f"cannot write {self.path}: {e.strerror or type(e).__name__}") from None
            for line in new:
                self._done.add(hashlib.sha256(line).hexdigest())
            self._lines += len(new)
        return Receipt(self.name, f"{self.path} lines {first}-{self._lines}" if new else f"{self.path} (already there)")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --------------------------------------------------------------------------- the OS keyring


def password_entry(project_id: str, branch_id: str, role: str) -> tuple[str, str]:
    """(service, username) for a bare password (a branch without compute): <role>#password."""
    from urllib.parse import quote

    from neon_tui import secrets

    return f"{secrets.SERVICE}/{project_id}/{branch_id}", f"{quote(role, safe='')}#password"


class KeyringSink:
    """Stores each direct and pooled string under the scheme in `secrets.connection_entry`, and a bare
    password (no compute yet) under `password_entry`. Only backends that encrypt at rest are used."""

    automatic = True
    name = "keyring"

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow = tuple(allow)
        self.backend: str | None = None

    async def preflight(self) -> str:
        from neon_tui import secrets

        try:
            # Fail before anything is rotated, not after: a rotated password with nowhere to go is an outage.
            self.backend = await asyncio.to_thread(secrets.check_usable, allow=self.allow)
        except secrets.KeyringUnavailable as e:
            raise SinkError(str(e)) from None
        return f"OS keyring ({self.backend})"

    def entries(self, result: RotationResult) -> list[tuple[str, str, Secret]]:
        from neon_tui import secrets

        t = result.target
        out = []
        for c in result.connections:
            for pooled, value in ((False, c.direct), (True, c.pooled)):
                if value is not None:
                    service, user = secrets.connection_entry(t.project_id, t.branch_id, t.role_name, c.database, pooled)
                    out.append((service, user, value))
        if not result.connections:
            out.append((*password_entry(t.project_id, t.branch_id, t.role_name), result.password))
        return out

    async def deliver(self, result: RotationResult) -> Receipt:
        from neon_tui import secrets

        entries = self.entries(result)
        try:
            for service, user, value in entries:
                # keyring backends block (D-Bus round trips); keep the event loop free.
                await asyncio.to_thread(secrets.store, service, user, value, allow=self.allow)
        except secrets.KeyringUnavailable as e:
            raise SinkError(str(e)) from None
        t = result.target
        return Receipt(self.name, f"keyring service {secrets.SERVICE}/{t.project_id}/{t.branch_id}, "
                                  f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")


# --------------------------------------------------------------------------- by hand (the TUI)


CopyFn = Callable[[Secret, str], str]  # copies a value, returns the path it took ("osc52", ...), or raises


class ClipboardSink:
    """One value of a result to the clipboard: a connection string (database, direct or pooled) or the
    bare password. Used by hand; copying a target without a connection string copies its password."""

    automatic = False
    name = "clipboard"

    def __init__(self, copy: CopyFn, *, database: str | None = None, pooled: bool = False,
                 password: bool = False) -> None:
        self._copy = copy
        self.database = database
        self.pooled = pooled
        self.password = password

    async def preflight(self) -> str:
        return "clipboard"

    def pick(self, result: RotationResult) -> tuple[Secret, str, str]:
        """(value, short kind for a notification, longer description for the journal)."""
        c = result.connection(self.database)
        if self.password or c is None:
            what = "password" + ("" if result.has_endpoint else ", no endpoint yet")
            return result.password, what, what
        if self.pooled and c.pooled is not None:
            return c.pooled, "pooled", f"pooled string, database {c.database}"
        return c.direct, "direct", f"direct string, database {c.database}"

    async def deliver(self, result: RotationResult) -> Receipt:
        value, kind, what = self.pick(result)
        try:
            path = self._copy(value, f"{result.target.label} ({kind})")
        except Exception as e:
            raise SinkError(str(e) if hasattr(e, "title") else f"copy failed ({type(e).__name__})") from None
        return Receipt(self.name, f"clipboard via {path}: {what}")


def _var_stem(label_parts: Sequence[str]) -> str:
    stem = "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_").upper() for p in label_parts)
    stem = re.sub(r"_+", "_", stem).strip("_") or "NEON"
    return stem if not stem[0].isdigit() else "NEON_" + stem


def env_names(results: Sequence[RotationResult]) -> dict[tuple, str]:
    """A unique variable stem per target, from project, branch and role (suffixes settle collisions)."""
    out: dict[tuple, str] = {}
    used: set[str] = set()
    for r in results:
        t = r.target
        stem = _var_stem([t.project_name, t.branch_name, t.role_name])
        name, n = stem, 2
        while name in used:
            name, n = f"{stem}_{n}", n + 1
        used.add(name)
        out[t.key] = name
    return out


def dotenv_block(results: Sequence[RotationResult], databases: dict[tuple, str | None] | None = None) -> str:
    """A .env block with one variable per target and kind (contains passwords):

        ACME_PROD_STAGING_APP_DATABASE_URL=...           (pooled)
        ACME_PROD_STAGING_APP_DATABASE_URL_UNPOOLED=...  (direct)
        ACME_PROD_HOTFIX_APP_PASSWORD=...                (no endpoint yet)
    """
    databases = databases or {}
    names = env_names(results)
    lines: list[str] = []
    for r in results:
        t = r.target
        stem = names[t.key]
        c = r.connection(databases.get(t.key))
        note = "" if r.confirmed else " UNCONFIRMED"
        if c is None:
            dbs = ", ".join(r.databases) or "no databases"
            lines.append(f"# {t.label}: no endpoint yet ({dbs}){note}")
            lines.append(f"{stem}_PASSWORD={r.password.reveal()}")
            continue
        lines.append(f"# {t.label} ({c.database}){note}")
        lines.append(f"{stem}_DATABASE_URL={(c.pooled or c.direct).reveal()}")
        lines.append(f"{stem}_DATABASE_URL_UNPOOLED={c.direct.reveal()}")
    return "\n".join(lines) + ("\n" if lines else "")


class EnvBlockSink:
    """Many results as one .env block to the clipboard (by hand: `e` in the TUI)."""

    automatic = False
    name = "clipboard"

    def __init__(self, copy: CopyFn, databases: dict[tuple, str | None] | None = None) -> None:
        self._copy = copy
        self.databases = databases or {}

    async def preflight(self) -> str:
        return "clipboard (.env block)"

    async def deliver(self, result: RotationResult) -> Receipt:
        return (await self.deliver_many([result]))[0]

    async def deliver_many(self, results: Sequence[RotationResult]) -> list[Receipt]:
        try:
            path = self._copy(Secret(dotenv_block(results, self.databases)), f".env block for {len(results)} target(s)")
        except Exception as e:
            raise SinkError(str(e) if hasattr(e, "title") else f"copy failed ({type(e).__name__})") from None
        names = env_names(results)
        return [Receipt(self.name, f"clipboard via {path}: .env block ({names[r.target.key]}_*)") for r in results]


def parse_deliver(spec: str, *, appendable: Iterable[str] = (),
                  keyring_allow: Iterable[str] = ()) -> Sink:
    """A sink from a --deliver value: stdout | keyring | file:PATH | env:PATH | env-follow:PATH |
    github:OWNER/REPO[@ENV][:NAME] | github-org:ORG[:NAME] | vercel:PROJECT[:KEY] |
    aws-sm:SECRET_ID[#KEY] ('none' is handled by the caller; see platform_sinks and aws_sink). env sinks need the plan's targets: the caller binds them (EnvFileSink.bind)."""
    if spec == "stdout":
        return StdoutSink()
    if spec == "keyring":
        return KeyringSink(keyring_allow)
    if spec.startswith("file:"):
        path = spec[5:]
        if not path.strip():
            raise ValueError("--deliver file:PATH needs a path")
        sink = FileSink(path)
        sink.may_append = sink.name in set(appendable)
        return sink
    if spec.startswith(("env:", "env-follow:")):
        from neon_tui.rotation.envfiles import EnvFileSink

        kind, _, path = spec.partition(":")
        if not path.strip():
            raise ValueError(f"--deliver {kind}:PATH needs a file or directory")
        return EnvFileSink(path, follow_symlinks=kind == "env-follow")
    if spec.startswith("aws-sm:"):
        from neon_tui.rotation.aws_sink import parse_aws

        aws = parse_aws(spec)
        assert aws is not None
        return aws
    from neon_tui.rotation.platform_sinks import parse_platform

    platform = parse_platform(spec, keyring_allow=keyring_allow)
    if platform is not None:
        return platform
    raise ValueError(f"unknown --deliver {spec!r}: use stdout, keyring, file:PATH, env:PATH, "
                     "github:OWNER/REPO[@ENV][:NAME], github-org:ORG[:NAME], vercel:PROJECT[:KEY], "
                     "aws-sm:SECRET_ID[#KEY] or none")
