"""Neon API keys: a listing that marks the key in use, revocation of others, and `KeyRotation`, a journaled
hand-off from the key neon-tui uses to a new one that never leaves the user without a working key.

No Textual here. Secrets stay in `Secret`; the journal (kind "keys", see incident/actions.py) holds key ids,
names and outcomes only.

How the key in use is identified (the API never returns a key's secret, and GET /auth gives only the account
and the kind):
1. "recorded": neon-tui wrote this key into the keyring entry it reads from (a rotation), and noted the key's
   id in the non-secret state file `state_dir()/keys/current.json`; used only when the key in use came from that
   keyring entry.
2. "probe": the only key whose `last_used_at` advanced across a GET /auth made with the key in use. Somebody
   else using another key at the same moment fools it, so it is a guess: revoking it needs the user's word.
3. "named": the user said which (`--old-key-id`).
Otherwise "unknown".

The hand-off (KeyRotation.run):
  intent journaled (the new key's name carries the journal's nonce: neon-tui-<id8>) -> create -> key_created
  -> back up the sink's current value -> store, read back -> key_stored -> switch (a client on the new key)
  -> key_switched -> prove (same account via /auth, one read in scope) -> key_proven -> revoke the old key with
  the new one (a project-scoped key cannot manage keys: then with the personal key the user gave) -> key_revoked
  -> the old key must answer 401 -> key_dead -> done.
Any failure before the new key is proven puts the sink back and revokes the half-made key with the old one.
A failed revoke of the old key (or one that still answers) is journaled as key_revoke_failed and reported as
STILL LIVE. A new key refused (401/403) after it was proven, before the old one is revoked, was revoked by
someone else: the sink gets the old key (still live) back from its backup (kept until key_dead), key_new_dead is
journaled and the hand-off ends new_key_dead ("rotate again"). An undo that cannot revoke the half-made key
ends half_made_live; a revoked old key while the key in use still answers ends wrong_key (it was not the key in
use). `KeyRotation.resume` finishes or undoes an interrupted hand-off (no end, old_live, half_made_live).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Protocol

from neon_tui.incident.actions import actions_dir, create_action_journal, list_action_journals, read_action_journal
from neon_tui.neon.errors import (
    ApiError,
    AuthenticationError,
    NeonError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
)
from neon_tui.neon.models import ApiKey
from neon_tui.neon.secret import Secret
from neon_tui.paths import state_dir
from neon_tui.rotation.journal import Journal

ClientFactory = Callable[[Secret], Any]  # Secret -> NeonClient
Progress = Callable[[str, str], None]  # (step, message)

PERSONAL, ORGANIZATION, PROJECT = "personal", "organization", "project"
PROBE_WAIT = 1.1  # seconds; Neon's times have whole seconds
# a hand-off that ended so is not over: `--resume` retries (the old key's revoke, or the half-made key's)
RESUMABLE = ("old_live", "half_made_live")
STEPS = ("check", "create", "store", "switch", "prove", "revoke", "prove-old", "done")


class KeyError_(NeonError):
    """A key hand-off could not start; nothing was created. The message says what to do."""

    changed = False  # True when something may have been created after all (a lost create answer)


class NeedsPersonalKey(KeyError_):
    """The key in use cannot manage API keys (a project-scoped key): a personal key must do it."""

    title = "A personal API key is needed"


class NeedsConfirmation(KeyError_):
    """The key in use was identified by a guess (the last-used probe): the user must confirm its id."""

    title = "Confirm the key in use"

    def __init__(self, message: str, key_id: int) -> None:
        super().__init__(message)
        self.key_id = key_id


# --- the listing ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyRow:
    id: int
    name: str
    scope: str  # personal | organization | project
    org_id: str | None
    project_id: str | None
    created_at: datetime | None
    created_by: str
    last_used_at: datetime | None
    last_used_from_addr: str
    in_use: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "scope": self.scope, "org_id": self.org_id,
                "project_id": self.project_id,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "created_by": self.created_by,
                "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
                "last_used_from_addr": self.last_used_from_addr, "in_use": self.in_use}


@dataclass
class KeyListing:
    account: str
    key_kind: str  # the kind of the key in use: personal | organization | project | unknown
    rows: list[KeyRow]
    in_use_id: int | None = None
    in_use_how: str = "unknown"  # recorded | probe | named | unknown
    can_manage: bool = True
    problems: list[str] = field(default_factory=list)
    probe_id: int | None = None  # the only key whose last use moved during the probe, if exactly one did
    needs_confirmation: bool = False  # in_use_id rests on a guess (the probe, or a record the probe cannot back)

    def row(self, key_id: int) -> KeyRow | None:
        return next((r for r in self.rows if r.id == key_id), None)

    def as_json(self) -> dict[str, Any]:
        return {"account": self.account, "key_kind": self.key_kind, "in_use": self.in_use_id,
                "in_use_how": self.in_use_how, "can_manage": self.can_manage, "problems": self.problems,
                "keys": [r.as_json() for r in self.rows]}


def _row(k: ApiKey, scope: str, org_id: str | None) -> KeyRow:
    if scope != PERSONAL:
        scope = PROJECT if k.project_id else ORGANIZATION
    return KeyRow(k.id, k.name, scope, org_id, k.project_id, k.created_at, k.created_by, k.last_used_at,
                  k.last_used_from_addr)


async def _collect(client, auth, problems: list[str]) -> tuple[list[KeyRow], bool]:
    """Every key `client` may list: personal keys and each organization's (with a personal key), or the
    key's own organization's (with an org key). Returns (rows, whether the key may manage keys)."""
    rows: list[KeyRow] = []
    if not auth.is_org_key:
        rows += [_row(k, PERSONAL, None) for k in await client.list_api_keys()]
        orgs = await client.list_organizations()
        for org in orgs:
            try:
                rows += [_row(k, ORGANIZATION, org.id) for k in await client.list_org_api_keys(org.id)]
            except (PermissionDeniedError, NotFoundError) as e:
                problems.append(f"organization {org.id}: its keys are not visible to this key ({e.message})")
        return rows, True
    try:
        rows += [_row(k, ORGANIZATION, auth.account_id) for k in await client.list_org_api_keys(auth.account_id)]
    except PermissionDeniedError:
        problems.append("this organization key cannot list or manage API keys (a project-scoped key): "
                        "use a personal API key for that")
        return rows, False
    return rows, True


def _current_file() -> Path:
    return state_dir() / "keys" / "current.json"


def record_current(host: str, account: str, key_id: int) -> None:
    """Note (no secret) which key neon-tui just put into its keyring entry, for `in use` marking later."""
    path = _current_file()
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[host] = {"account": account, "key_id": int(key_id)}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def forget_current() -> None:
    """Another key went into neon-tui's keyring entry (saved from the app, or put back by an undo): what was
    recorded about the key there is no longer true."""
    try:
        _current_file().unlink(missing_ok=True)
    except OSError:
        pass


def recorded_current(host: str, account: str) -> int | None:
    try:
        entry = json.loads(_current_file().read_text()).get(host)
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(entry, dict) and entry.get("account") == account and isinstance(entry.get("key_id"), int):
        return entry["key_id"]
    return None


async def list_keys(client, *, key_source: str = "env", named_id: int | None = None,
                    manager=None, host: str | None = None) -> KeyListing:
    """Every key visible, with the key in use marked when it can be established (see the module doc).

    `client` is on the key in use; `manager` (optional) on a personal key that lists for a key that cannot.
    """
    auth = await client.get_auth()
    problems: list[str] = []
    lister = manager or client
    lister_auth = await manager.get_auth() if manager is not None else auth
    rows, can_manage = await _collect(lister, lister_auth, problems)
    kind = PERSONAL if not auth.is_org_key else (ORGANIZATION if can_manage or manager is None else PROJECT)
    if manager is not None and auth.is_org_key:
        rows = [r for r in rows if r.org_id == auth.account_id]
    listing = KeyListing(auth.account_id, kind, rows, can_manage=can_manage or manager is not None,
                         problems=problems)
    if named_id is not None:
        row = listing.row(named_id)
        if row is None:
            raise KeyError_(f"no key with id {named_id} is visible to this key")
        mismatch = _scope_mismatch(row, auth)
        if mismatch:
            raise KeyError_(f"key {named_id} cannot be the key in use: {mismatch}")
        listing.in_use_id, listing.in_use_how = named_id, "named"
        # a named key is still checked against the probe: naming the wrong key must not get it revoked
        await _probe(client, lister, lister_auth, listing, key_source, host, personal=not auth.is_org_key,
                     named=True)
        if listing.probe_id is not None and listing.probe_id != named_id:
            listing.problems.append(f"you named key {named_id}, but key {listing.probe_id} is the only key used "
                                    "when neon-tui used its key: the key in use looks like "
                                    f"{listing.probe_id}, not {named_id}")
    elif rows:
        await _probe(client, lister, lister_auth, listing, key_source, host, personal=not auth.is_org_key)
    if listing.in_use_id is not None:
        listing.rows = [replace(r, in_use=r.id == listing.in_use_id) for r in listing.rows]
        row = listing.row(listing.in_use_id)
        if row is not None and auth.is_org_key:
            listing.key_kind = row.scope
    return listing


def _scope_mismatch(row: KeyRow, auth) -> str | None:
    """Why `row` cannot be the key /auth answered for (its kind or account), or None."""
    if not auth.is_org_key and row.scope != PERSONAL:
        return f"it is an {row.scope} key of {row.org_id}, and the key in use is a personal key"
    if auth.is_org_key and row.scope == PERSONAL:
        return "it is a personal key, and the key in use is an organization key"
    if auth.is_org_key and row.org_id != auth.account_id:
        return f"it belongs to {row.org_id}, and the key in use to {auth.account_id}"
    return None


async def _probe(client, lister, lister_auth, listing: KeyListing, key_source: str, host: str | None, *,
                 personal: bool, named: bool = False) -> None:
    before = {r.id: r.last_used_at for r in listing.rows}
    # last_used_at has whole seconds: let the clock pass a second so the key in use shows a later time
    await asyncio.sleep(PROBE_WAIT)
    await client.get_auth()  # a use of the key in use, after the first listing
    after_rows, _ = await _collect(lister, lister_auth, [])
    if lister is not client:
        after_rows = [r for r in after_rows if r.id in before]
    # only keys of the kind /auth reported can be the key in use
    moved = [r for r in after_rows if r.last_used_at is not None and (r.scope == PERSONAL) == personal
             and (before.get(r.id) is None or r.last_used_at > before[r.id])]
    if lister is client:
        listing.rows = [r for r in after_rows if r.id in before] or listing.rows
    else:
        listing.rows = [next((a for a in after_rows if a.id == r.id), r) for r in listing.rows]
    probe_id = moved[0].id if len(moved) == 1 else None
    listing.probe_id = probe_id
    if named:
        return
    recorded = recorded_current(host, listing.account) if host and key_source == "keyring" else None
    if recorded is not None and listing.row(recorded) is None:
        recorded = None
    if recorded is not None and probe_id == recorded:
        listing.in_use_id, listing.in_use_how = recorded, "recorded"
    elif recorded is not None and probe_id is None:
        # the probe cannot back the record (no key, or several, moved): use it, but only with the user's word
        listing.in_use_id, listing.in_use_how = recorded, "recorded"
        listing.needs_confirmation = True
        listing.problems.append(f"neon-tui recorded key {recorded} as the one in its keyring, and the probe "
                                f"could not confirm it ({len(moved)} keys were used during the probe)")
    elif recorded is not None:
        listing.problems.append(f"neon-tui recorded key {recorded} as the one in its keyring, but key {probe_id} "
                                "is the one that was just used: the key in use is unknown (name it)")
    elif probe_id is not None:
        listing.in_use_id, listing.in_use_how = probe_id, "probe"
    else:
        listing.problems.append(f"{len(moved)} keys were used during the probe: the key in use is unknown "
                                "(name it with --old-key-id)")


# --- where a new key goes ---------------------------------------------------------------------------------

class KeySink(Protocol):
    def describe(self) -> str: ...
    def load(self) -> Secret | None: ...
    def store(self, value: Secret) -> None: ...
    def backup(self) -> bool: ...
    def restore(self) -> None: ...
    def drop_backup(self) -> None: ...
    def has_backup(self) -> bool: ...
    def load_backup(self) -> Secret | None: ...
    def clear(self) -> None: ...


class KeyringKeySink:
    """A keyring entry (service neon-tui); by default NEON_API_KEY, the entry neon-tui reads its key from.
    The value it replaces is kept in `<user>.previous` until the hand-off ends, so a crash can undo."""

    def __init__(self, user: str | None = None, *, allow=()) -> None:
        from neon_tui import secrets

        self.user = user or secrets.API_KEY_USER
        self.allow = allow

    @property
    def is_default(self) -> bool:
        from neon_tui import secrets

        return self.user == secrets.API_KEY_USER

    def describe(self) -> str:
        return f"keyring:{self.user}"

    def load(self) -> Secret | None:
        from neon_tui import secrets

        return secrets.load(secrets.SERVICE, self.user, allow=self.allow)

    def store(self, value: Secret) -> None:
        from neon_tui import secrets

        secrets.store(secrets.SERVICE, self.user, value, allow=self.allow)
        if self.is_default:
            forget_current()  # the hand-off records the new key's id when it ends with it there

    def load_backup(self) -> Secret | None:
        from neon_tui import secrets

        return secrets.load(secrets.SERVICE, self.user + ".previous", allow=self.allow)

    def has_backup(self) -> bool:
        return self.load_backup() is not None

    def backup(self) -> bool:
        from neon_tui import secrets

        current = self.load()
        if current is None:
            return False
        secrets.store(secrets.SERVICE, self.user + ".previous", current, allow=self.allow)
        return True

    def restore(self) -> None:
        """Put the backed-up value back (nothing happens without a backup)."""
        previous = self.load_backup()
        if previous is not None:
            self.store(previous)
            self.drop_backup()

    def drop_backup(self) -> None:
        from neon_tui import secrets

        secrets.delete(secrets.SERVICE, self.user + ".previous", allow=self.allow)

    def clear(self) -> None:
        from neon_tui import secrets

        secrets.delete(secrets.SERVICE, self.user, allow=self.allow)


class FileKeySink:
    """A file only its owner can read (0600), written atomically; the value it replaces waits in
    `<path>.previous` (0600) until the hand-off ends."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().absolute()
        self.previous = self.path.with_name(self.path.name + ".previous")

    def describe(self) -> str:
        return f"file:{self.path}"

    @staticmethod
    def _read(path: Path) -> Secret | None:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return Secret(text) if text else None

    @staticmethod
    def _write(path: Path, value: Secret) -> None:
        if path.is_symlink():
            raise OSError(f"{path} is a symbolic link; refusing to write a key through it")
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(value.reveal() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def load(self) -> Secret | None:
        return self._read(self.path)

    def store(self, value: Secret) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write(self.path, value)

    def load_backup(self) -> Secret | None:
        return self._read(self.previous)

    def has_backup(self) -> bool:
        return self.previous.exists()

    def backup(self) -> bool:
        current = self.load()
        if current is None:
            return False
        self._write(self.previous, current)
        return True

    def restore(self) -> None:
        """Put the backed-up value back (nothing happens without a backup)."""
        previous = self.load_backup()
        if previous is not None:
            self.store(previous)
            self.drop_backup()

    def drop_backup(self) -> None:
        self.previous.unlink(missing_ok=True)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class MemoryKeySink:
    """The demo's place for a rotated key: this process's memory. A simulated account's key is worthless
    anywhere else, and writing it to the keyring entry would replace the user's real Neon key there."""

    def __init__(self) -> None:
        self._value: Secret | None = None
        self._previous: Secret | None = None

    spec = "memory"  # what the journal records: sink_from_spec reads it back

    def describe(self) -> str:
        return "memory (demo: never your keyring)"

    def load(self) -> Secret | None:
        return self._value

    def store(self, value: Secret) -> None:
        self._value = value

    def load_backup(self) -> Secret | None:
        return self._previous

    def has_backup(self) -> bool:
        return self._previous is not None

    def backup(self) -> bool:
        if self._value is None:
            return False
        self._previous = self._value
        return True

    def restore(self) -> None:
        if self._previous is not None:
            self._value, self._previous = self._previous, None

    def drop_backup(self) -> None:
        self._previous = None

    def clear(self) -> None:
        self._value = None


DEMO_SINKS = ("memory", "memory (demo: never your keyring)")  # the second: journals of earlier versions


def sink_spec(sink: KeySink) -> str:
    """What a journal records as the sink: a spec that `sink_from_spec` parses back."""
    return getattr(sink, "spec", None) or sink.describe()


def sink_from_spec(spec: str, *, allow=(), demo: bool = False) -> KeySink:
    """`keyring` (the NEON_API_KEY entry), `keyring:NAME`, `file:PATH` or `memory`; a clear ValueError otherwise.
    On the demo's simulated account the keyring is refused: its entry is where the user's real key lives."""
    if spec in ("memory", "") and demo:
        return MemoryKeySink()
    if demo and spec.partition(":")[0] == "keyring":
        raise ValueError("the demo never writes to your keyring (the entry holds your real Neon key): "
                         "use --sink memory or file:PATH")
    if spec == "memory":
        raise ValueError("--sink memory is for the demo only: a real key kept only in memory is lost at exit")
    if spec == "keyring":
        return KeyringKeySink(allow=allow)
    kind, _, rest = spec.partition(":")
    if kind == "keyring" and rest.strip():
        return KeyringKeySink(rest.strip(), allow=allow)
    if kind == "file" and rest.strip():
        return FileKeySink(rest.strip())
    raise ValueError(f"unknown key sink {spec!r}: use keyring, keyring:NAME or file:PATH (memory in the demo)")


# --- test hook --------------------------------------------------------------------------------------------

def _test_hook(step: str) -> None:
    """Tests only: SIGKILL this process at a named step. Needs two variables set together, so it cannot
    fire by accident: NEON_TUI_TEST_HOOKS=keys and NEON_TUI_TEST_KILL_AT=<step>."""
    if os.environ.get("NEON_TUI_TEST_HOOKS") == "keys" and os.environ.get("NEON_TUI_TEST_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


# --- the hand-off -----------------------------------------------------------------------------------------

@dataclass
class HandOffResult:
    outcome: str  # rotated | undone | old_live | half_made_live | new_key_dead | wrong_key | failed | nothing
    journal: Path | None
    old_key_id: int | None
    new_key_id: int | None = None
    old_status: str = "live"  # revoked | LIVE | unknown | live (untouched)
    new_client: Any = None
    new_key: Secret | None = None
    sink: str = ""
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in ("rotated", "nothing")

    def as_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "journal": str(self.journal) if self.journal else None,
                "old_key_id": self.old_key_id, "new_key_id": self.new_key_id, "old_status": self.old_status,
                "sink": self.sink, "messages": self.messages}


class _Failed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


def _reason(e: BaseException) -> str:
    from neon_tui.secrets import KeyringUnavailable  # its messages are ours: they never carry a secret

    return str(e) if isinstance(e, (NeonError, OSError, ValueError, KeyringUnavailable)) else type(e).__name__


class KeyRotation:
    """Replace the key neon-tui uses (see the module doc). One instance per hand-off."""

    def __init__(self, client, *, old_key: Secret, sink: KeySink, client_factory: ClientFactory,
                 host: str, key_source: str = "env", manager_key: Secret | None = None,
                 old_key_id: int | None = None, confirmed: bool = False, directory: Path | None = None,
                 progress: Progress | None = None) -> None:
        self.old = client
        self.old_key = old_key
        self.sink = sink
        self.factory = client_factory
        self.host = host
        self.key_source = key_source
        self.manager_key = manager_key
        self.old_key_id = old_key_id
        self.confirmed = confirmed
        self.directory = directory or actions_dir()
        self.progress = progress or (lambda step, msg: None)
        self.journal: Journal | None = None
        self.manager = None  # a client on a personal key when the key in use cannot manage keys
        self.scope = PERSONAL
        self.org_id: str | None = None
        self.project_id: str | None = None
        self.account = ""
        self.new_id: int | None = None
        self.new_key: Secret | None = None
        self.new_client = None
        self.name = ""
        self.sink_had_value = False
        self.store_attempted = False
        self._own_old = False

    # -- helpers --
    def _say(self, step: str, msg: str) -> None:
        self.progress(step, msg)

    def _j(self, event: str, **fields: Any) -> None:
        assert self.journal is not None
        self.journal.write(event, **fields)

    def _keys_client(self):
        """The client that manages keys before the switch: the old key, or the personal key given."""
        return self.manager or self.old

    async def _create(self, client):
        if self.scope == PERSONAL:
            return await client.create_api_key(self.name)
        return await client.create_org_api_key(self.org_id, self.name, project_id=self.project_id)

    async def _revoke(self, client, key_id: int) -> str | None:
        if self.scope == PERSONAL:
            await client.revoke_api_key(key_id)
        else:
            await client.revoke_org_api_key(self.org_id, key_id)
        return self._last_rid(client)

    async def _listed(self, client) -> list[ApiKey]:
        if self.scope == PERSONAL:
            return await client.list_api_keys()
        return await client.list_org_api_keys(self.org_id)

    async def _prove(self, client) -> str:
        auth = await client.get_auth()
        if auth.account_id != self.account:
            raise _Failed("prove", f"the new key answers for account {auth.account_id}, not {self.account}")
        if self.scope == PERSONAL:
            await client.list_organizations()
        elif self.scope == ORGANIZATION:
            await client.list_projects(self.org_id)
        else:
            await client.get_project(self.project_id)
        return auth.account_id

    async def _old_status(self) -> str:
        """revoked (401) | LIVE (answers) | unknown."""
        if self.old is None:
            return "unknown"
        try:
            await self.old.get_auth()
        except AuthenticationError:
            return "revoked"
        except NeonError:
            return "unknown"
        return "LIVE"

    # -- preparation: everything checked before anything is created --
    async def prepare(self) -> None:
        """Everything checked before anything exists: raises NeedsPersonalKey, NeedsConfirmation, KeyError_."""
        # the sink must work before anything exists
        try:
            self.sink_had_value = self.sink.load() is not None
        except Exception as e:
            raise KeyError_(f"the key sink {self.sink.describe()} cannot be used: {_reason(e)}") from None
        self._say("check", "checking the key in use")
        auth = await self.old.get_auth()
        self.account = auth.account_id
        if auth.is_org_key:
            self.org_id = auth.account_id
            try:
                await self.old.list_org_api_keys(self.org_id)
            except PermissionDeniedError:
                if self.manager_key is None:
                    raise NeedsPersonalKey(
                        "the key in use is an organization key that cannot manage API keys (project-scoped); "
                        "a personal API key is needed to make its successor and revoke it") from None
                self.manager = self.factory(self.manager_key)
                m = await self.manager.get_auth()
                if m.is_org_key:
                    raise NeedsPersonalKey("the key given to manage keys is not a personal key") from None
        listing = await list_keys(self.old, key_source=self.key_source, named_id=self.old_key_id,
                                  manager=self.manager, host=self.host)
        if listing.in_use_id is None:
            raise KeyError_("cannot tell which key is in use (" + "; ".join(listing.problems or ["no key listed"])
                            + "): name it with --old-key-id")
        if listing.in_use_how == "named" and listing.probe_id not in (None, listing.in_use_id):
            raise KeyError_(f"you named key {listing.in_use_id} as the key in use, but key {listing.probe_id} is "
                            "the one that answered when neon-tui used its key: check `neon-tui keys list` and "
                            "name the key in use")
        if listing.in_use_how == "probe" and not self.confirmed:
            raise NeedsConfirmation(f"key {listing.in_use_id} looks like the key in use (the only one whose "
                                    "last use moved when neon-tui used its key); confirm it before it is revoked",
                                    listing.in_use_id)
        if listing.needs_confirmation and not self.confirmed:
            raise NeedsConfirmation(f"key {listing.in_use_id} is the key neon-tui recorded in its keyring entry, "
                                    "but the probe could not confirm it is the key in use; confirm it before it "
                                    "is revoked", listing.in_use_id)
        row = listing.row(listing.in_use_id)
        assert row is not None
        self.old_key_id = row.id
        self.scope = row.scope if auth.is_org_key else PERSONAL
        self.project_id = row.project_id

    def _open_journal(self) -> None:
        self.journal = create_action_journal(
            "keys", host=self.host, account=self.account, key_kind=self.scope, directory=self.directory,
            old_key_id=self.old_key_id, sink=sink_spec(self.sink), scope=self.scope, org_id=self.org_id,
            project_id=self.project_id, key_source=self.key_source, manager="personal" if self.manager else None)
        self.name = f"neon-tui-{self.journal.path.stem[-8:]}"
        self.journal.write("key_intent", name=self.name, scope=self.scope, org_id=self.org_id,
                           project_id=self.project_id, old_key_id=self.old_key_id, sink=sink_spec(self.sink),
                           sink_had_value=self.sink_had_value)

    async def run(self) -> HandOffResult:
        await self.prepare()
        return await self.execute()

    async def execute(self) -> HandOffResult:
        """The hand-off itself, after prepare() (and the user's go-ahead)."""
        self._open_journal()
        _test_hook("after_intent")
        return await self._from_create()

    async def aclose(self) -> None:
        """Close the clients this hand-off opened (not the caller's, nor the new one it hands back)."""
        if self.manager is not None:
            await _close(self.manager)
        if self.old is not None and self._own_old:
            await _close(self.old)

    async def _from_create(self) -> HandOffResult:
        keys_client = self._keys_client()
        self._say("create", f"creating key {self.name}")
        try:
            created = await self._create(keys_client)
        except Exception as e:
            return await self._create_failed(e)
        _test_hook("after_create_sent")
        self.new_id, self.new_key = created.id, created.key
        self._j("key_created", key_id=created.id, name=created.name, scope=self.scope, org_id=self.org_id,
                project_id=self.project_id, request_id=self._last_rid(keys_client))
        _test_hook("after_created")
        return await self._from_store()

    @staticmethod
    def _last_rid(client) -> str | None:
        recs = getattr(client, "history", None)
        return getattr(recs[-1], "request_id", None) if recs else None

    async def _create_failed(self, e: BaseException) -> HandOffResult:
        definite = isinstance(e, ApiError) and not isinstance(e, OutcomeUnknownError) and (e.status or 0) < 500
        if not definite:
            # the key may exist with a lost answer: find it by its name and revoke it
            try:
                await self._revoke_by_name(self._keys_client())
            except NeonError as e2:
                return self._finish("half_made_live", f"creating the key failed ({_reason(e)}) and a key named "
                                    f"{self.name} MAY EXIST AND BE LIVE; it could not be checked ({_reason(e2)}): "
                                    "run `neon-tui keys rotate --resume` (it looks again) or revoke it in the console")
        return self._finish("undone" if not definite else "failed", f"creating the new key failed: {_reason(e)}; "
                            "the old key is still the one in use")

    async def _revoke_by_name(self, client) -> None:
        for k in await self._listed(client):
            if k.name == self.name:
                rid = await self._revoke(client, k.id)
                self._j("key_revoked", key_id=k.id, which="half-made", request_id=rid)

    async def _from_store(self) -> HandOffResult:
        assert self.new_key is not None
        self._say("store", f"storing the new key in {self.sink.describe()}")
        try:
            self.sink.backup()
            self.store_attempted = True
            self.sink.store(self.new_key)
            _test_hook("after_store")
            if self.sink.load() != self.new_key:
                raise OSError(0, "reading the key back gave something else")
        except Exception as e:
            return await self._undo("store", f"storing the new key failed: {_reason(e)}")
        self._j("key_stored", key_id=self.new_id, sink=sink_spec(self.sink))
        _test_hook("after_stored")
        return await self._from_switch()

    async def _from_switch(self) -> HandOffResult:
        assert self.new_key is not None
        self._say("switch", "switching to the new key")
        self.new_client = self.factory(self.new_key)
        self._j("key_switched", key_id=self.new_id)
        _test_hook("after_switch")
        self._say("prove", "proving the new key works")
        try:
            account = await self._prove(self.new_client)
        except (_Failed, NeonError) as e:
            return await self._undo("prove", f"the new key did not work: {_reason(e)}")
        self._j("key_proven", key_id=self.new_id, account=account)
        _test_hook("after_proven")
        return await self._from_revoke()

    async def _undo(self, step: str, reason: str) -> HandOffResult:
        """Before the new key is proven: put the sink back, revoke the half-made key with the old one."""
        problems = [reason]
        try:
            self._restore_sink()
        except Exception as e:
            problems.append(f"putting the old key back in {self.sink.describe()} failed: {_reason(e)}")
        if self.new_client is not None:
            await _close(self.new_client)
            self.new_client = None
        client = self._keys_client()
        if client is None or self.new_id is None:
            problems.append(f"THE HALF-MADE KEY {self.new_id} ({self.name}) COULD NOT BE REVOKED (no usable old key) "
                            "and is STILL LIVE: set NEON_API_KEY to the old key and run `neon-tui keys rotate "
                            "--resume`, or revoke it in the console")
            self._j("key_revoke_failed", key_id=self.new_id, which="half-made", reason="no usable old key")
            return self._finish("half_made_live", "; ".join(problems), old_status="live")
        try:
            rid = await self._revoke(client, self.new_id)
            self._j("key_revoked", key_id=self.new_id, which="half-made", request_id=rid)
        except NotFoundError:
            self._j("key_revoked", key_id=self.new_id, which="half-made", request_id=None)  # already gone
        except NeonError as e:
            self._j("key_revoke_failed", key_id=self.new_id, which="half-made", reason=_reason(e))
            problems.append(f"REVOKING THE HALF-MADE KEY {self.new_id} ({self.name}) FAILED ({_reason(e)}): it is "
                            "STILL LIVE: run `neon-tui keys rotate --resume` (it retries the revoke) or revoke it "
                            "in the console")
            return self._finish("half_made_live", "; ".join(problems), old_status="live")
        self.new_key = None
        return self._finish("undone", "; ".join(problems) + "; the old key is still the one in use",
                            old_status="live")

    def _restore_sink(self) -> None:
        """Undo what the hand-off did to the sink: its old value back, or empty again if it was empty."""
        if not self.store_attempted:
            return
        if self.sink.has_backup():
            self.sink.restore()
        elif not self.sink_had_value:
            self.sink.clear()

    async def _new_key_refused(self) -> str | None:
        """Why the new key no longer works (401/403 to a second proof), or None if it works or cannot be told."""
        try:
            await self._prove(self.new_client)
        except (AuthenticationError, PermissionDeniedError) as e:
            return _reason(e)
        except _Failed as e:
            return e.reason
        except NeonError:
            return None
        return None

    async def _new_key_dead(self, why: str) -> HandOffResult:
        """The new key was revoked (by someone else) after it was proven and before the old one was: put the
        old key, still live, back in the sink and stay on it. Never leaves the sink holding a dead key."""
        self._j("key_new_dead", key_id=self.new_id, reason=why)
        problems = []
        had_backup = _safe(self.sink.has_backup)
        try:
            self._restore_sink()
        except Exception as e:
            problems.append(f"putting the old key back in {self.sink.describe()} FAILED ({_reason(e)}): "
                            "put the old key back there by hand")
        if self.new_client is not None:
            await _close(self.new_client)
            self.new_client = None
        self.new_key = None
        where = (f"the old key {self.old_key_id} is back in {self.sink.describe()} and still live"
                 if had_backup else f"the old key {self.old_key_id} is still live and still the one in use "
                 f"({self.sink.describe()} is emptied again)")
        msg = (f"THE NEW KEY {self.new_id} WAS REVOKED BY SOMEONE ELSE ({why}): {where}: ROTATE AGAIN "
               "(`neon-tui keys rotate`), and suspect whoever holds the leaked key")
        return self._finish("new_key_dead", "; ".join([msg] + problems), old_status="LIVE")

    async def _from_revoke(self) -> HandOffResult:
        revoker = self.manager if self.scope == PROJECT else self.new_client
        if revoker is not self.new_client:
            # the revoke does not use the new key: prove it still works first, or the revoke would leave none
            why = await self._new_key_refused()
            if why is not None:
                return await self._new_key_dead(why)
        self._say("revoke", f"revoking the old key {self.old_key_id} with the new key")
        try:
            rid = await self._revoke(revoker, self.old_key_id)
        except OutcomeUnknownError:
            rid = None  # the check below tells
        except NotFoundError:
            rid = None  # already gone: the check below tells
        except (AuthenticationError, PermissionDeniedError) as e:
            why = await self._new_key_refused() if revoker is self.new_client else None
            if why is not None:
                return await self._new_key_dead(why)
            self._j("key_revoke_failed", key_id=self.old_key_id, which="old", reason=_reason(e))
            return self._finish("old_live", f"REVOKING THE OLD KEY {self.old_key_id} FAILED: {_reason(e)}. "
                                "It is STILL LIVE: revoke it (neon-tui keys rotate --resume, or the console)",
                                old_status="LIVE")
        except NeonError as e:
            self._j("key_revoke_failed", key_id=self.old_key_id, which="old", reason=_reason(e))
            return self._finish("old_live", f"REVOKING THE OLD KEY {self.old_key_id} FAILED: {_reason(e)}. "
                                "It is STILL LIVE: revoke it (neon-tui keys rotate --resume, or the console)",
                                old_status="LIVE")
        else:
            self._j("key_revoked", key_id=self.old_key_id, which="old", request_id=rid)
        _test_hook("after_revoked")
        return await self._from_prove_old()

    async def _from_prove_old(self) -> HandOffResult:
        self._say("prove-old", "checking that the old key is refused")
        status = await self._old_status()
        if status == "unknown" and self.old is None:
            # no old secret here (lost in a crash): the listing must not show it any more
            lister = self.manager if self.scope == PROJECT else self.new_client
            try:
                status = "revoked" if all(k.id != self.old_key_id for k in await self._listed(lister)) else "LIVE"
            except NeonError:
                status = "unknown"
        if status == "revoked":
            self._j("key_dead", key_id=self.old_key_id, status=401 if self.old is not None else "unlisted")
            return self._finish("rotated", f"the old key {self.old_key_id} is revoked", old_status="revoked")
        if status == "LIVE" and self.old is not None:
            # the old key's revoke went through, yet the key neon-tui used answers: was the revoked key it?
            lister = self.manager if self.scope == PROJECT else self.new_client
            try:
                gone = all(k.id != self.old_key_id for k in await self._listed(lister))
            except NeonError:
                gone = False
            if gone:
                self._j("key_revoke_failed", key_id=self.old_key_id, which="old",
                        reason="revoked, but the key in use still answers: it was not the key in use")
                return self._finish(
                    "wrong_key", f"KEY {self.old_key_id} WAS REVOKED, BUT THE KEY NEON-TUI WAS USING STILL ANSWERS: "
                    f"{self.old_key_id} was not the key in use; the key in use is STILL LIVE: find it with "
                    "`neon-tui keys list` and revoke it (`neon-tui keys revoke ID`, or the console)",
                    old_status="LIVE")
        why = "still answers" if status == "LIVE" else "could not be checked"
        self._j("key_revoke_failed", key_id=self.old_key_id, which="old", reason=f"the old key {why}")
        return self._finish("old_live", f"THE OLD KEY {self.old_key_id} {why.upper()}: treat it as STILL LIVE and "
                            "revoke it (neon-tui keys rotate --resume, or the console)",
                            old_status="LIVE" if status == "LIVE" else "unknown")

    def _finish(self, outcome: str, message: str, old_status: str = "live") -> HandOffResult:
        if self.journal is not None:
            self._j("done", outcome=outcome, reason=message)
        kept = ("rotated", "old_live", "wrong_key")  # the new key works and stays in the sink
        if outcome in kept:
            if outcome != "old_live":
                # the old value waits in the backup until the old key is known dead (key_dead): a resume, or
                # a new key revoked by someone else, may still need it
                try:
                    self.sink.drop_backup()
                except Exception:
                    pass
            if isinstance(self.sink, KeyringKeySink) and self.sink.is_default and self.new_id is not None:
                try:
                    record_current(self.host, self.account, self.new_id)
                except OSError:
                    pass
        result = HandOffResult(outcome, self.journal.path if self.journal else None, self.old_key_id,
                               self.new_id, old_status, self.new_client if outcome in kept else None,
                               self.new_key if outcome in kept else None, self.sink.describe(),
                               [message])
        if outcome in kept:
            result.messages.append(f"the new key {self.new_id} is in {self.sink.describe()}")
            if self.key_source == "env":
                state = ("which is now dead" if outcome == "rotated"
                         else "which is STILL LIVE (see above) and not the key neon-tui uses now")
                result.messages.append(f"WARNING: NEON_API_KEY in your environment holds the OLD key, {state}: "
                                       f"unset it or load the new key from {self.sink.describe()}")
            elif self.key_source == "keyring" and not (isinstance(self.sink, KeyringKeySink) and self.sink.is_default):
                state = "which is now dead" if outcome == "rotated" else "which is STILL LIVE (see above)"
                result.messages.append("WARNING: neon-tui's keyring entry (service neon-tui, NEON_API_KEY), where "
                                       f"neon-tui reads its key, still holds the OLD key, {state}: neon-tui will not "
                                       f"start on it; save the new key from {self.sink.describe()} there "
                                       "(the TUI asks for a key and saves it)")
        if self.journal is not None:
            self.journal.close()
        self._say("done", message)
        return result

    # -- resume --
    @classmethod
    async def resume(cls, path: Path, *, old_key: Secret | None, sink: KeySink, client_factory: ClientFactory,
                     host: str, manager_key: Secret | None = None, progress: Progress | None = None
                     ) -> HandOffResult:
        """Finish or undo the hand-off journaled at `path`. `old_key` is the key the caller has (NEON_API_KEY);
        the sink's backup is tried for the old key as well."""
        log = read_action_journal(path)
        h = log.header
        if log.kind != "keys":
            raise KeyError_(f"{path} is not a key hand-off journal")
        if sink_spec(sink) != h.get("sink"):
            raise KeyError_(f"this hand-off stored its key in {h.get('sink')}; resume it with --sink for that")
        done = log.events("done")
        if done and done[-1].get("outcome") not in RESUMABLE:
            raise KeyError_(f"this hand-off already ended ({done[-1].get('outcome')}): nothing to resume")
        half_made = bool(done) and done[-1].get("outcome") == "half_made_live"
        events = {r.get("event") for r in log.records}
        self = cls(None, old_key=old_key or Secret(""), sink=sink, client_factory=client_factory, host=host,
                   key_source=h.get("key_source") or "env", manager_key=manager_key, old_key_id=h.get("old_key_id"),
                   confirmed=True, directory=path.parent, progress=progress)
        self.account = h.get("account") or ""
        self.scope = h.get("scope") or PERSONAL
        self.org_id = h.get("org_id")
        self.project_id = h.get("project_id")
        intent = log.events("key_intent")
        self.name = intent[-1].get("name", "") if intent else ""
        self.sink_had_value = bool(intent[-1].get("sink_had_value", True)) if intent else True
        self.store_attempted = True  # unknown after a crash: _restore_sink decides from the backup
        created = log.events("key_created")
        self.new_id = created[-1].get("key_id") if created else None
        self.journal = Journal(path)
        self._j("resumed", steps=sorted(e for e in events if isinstance(e, str)))
        try:
            if half_made:
                return await self._resume_half_made(old_key, manager_key)
            return await self._resume(log, events, old_key, manager_key)
        finally:
            await self.aclose()

    async def _resume_half_made(self, old_key: Secret | None, manager_key: Secret | None) -> HandOffResult:
        """The undo ended with the half-made key still live (its revoke failed): the sink is already back as it
        was (it holds the old key, or nothing); only the half-made key is left to revoke, by id or by name."""
        self.store_attempted = False  # the sink was put back when the undo ran
        restored = _safe(self.sink.load) if self.sink_had_value else None
        for candidate in (old_key, _safe(self.sink.load_backup), restored):
            if candidate:
                self.old = await self._working(candidate)
                if self.old is not None:
                    break
        self._own_old = self.old is not None
        if self.scope == PROJECT:
            if manager_key is None:
                raise NeedsPersonalKey("this hand-off manages a project-scoped key: a personal API key is needed")
            self.manager = self.factory(manager_key)
        if self.new_id is not None:
            return await self._undo("resume", f"the new key {self.new_id} was left live by an undo")
        client = self._keys_client()
        if client is None:
            return self._finish("half_made_live", "no usable old key to look for the half-made key with: set "
                                f"NEON_API_KEY to the old key and resume again, or revoke any key named {self.name}")
        try:
            await self._revoke_by_name(client)
        except NeonError as e:
            return self._finish("half_made_live", f"could not look for the half-made key {self.name} "
                                f"({_reason(e)}): resume again, or revoke any key named {self.name} in the console")
        return self._finish("undone", f"any key named {self.name} is revoked; the old key is still the one in use")

    async def _resume(self, log, events: set, old_key: Secret | None, manager_key: Secret | None) -> HandOffResult:
        sink, client_factory = self.sink, self.factory
        stored = "key_proven" in events or "key_stored" in events
        new_secret = _safe(sink.load) if stored else None
        # the old key: the caller's if it answers for this account, else the sink's backup; never the new key
        candidates = [old_key, _safe(sink.load_backup)]
        if not stored and self.sink_had_value and not _safe(sink.has_backup):
            # no backup was taken, so the store never began: the sink still holds the old key
            candidates.append(_safe(sink.load))
        for candidate in candidates:
            if candidate and candidate != new_secret:
                self.old = await self._working(candidate)
                if self.old is not None:
                    break
        self._own_old = self.old is not None
        if self.scope == PROJECT:
            if manager_key is None:
                raise NeedsPersonalKey("this hand-off manages a project-scoped key: a personal API key is needed")
            self.manager = client_factory(manager_key)
        if stored:
            self.new_key = new_secret
            if self.new_key is None:
                return self._finish("failed", f"the new key is not in {sink.describe()} any more: check the sink")
            if "key_proven" not in events:
                return await self._from_switch()
            self.new_client = client_factory(self.new_key)
            if "key_revoked" in events and any(r.get("which") == "old" for r in log.events("key_revoked")):
                return await self._from_prove_old()
            return await self._from_revoke()
        # before the new key was known stored: undo
        if self.new_id is None:
            client = self._keys_client()
            if client is None:
                return self._finish("failed", "no usable old key to look for the half-made key with: set "
                                    f"NEON_API_KEY to the old key, or revoke any key named {self.name}")
            try:
                await self._revoke_by_name(client)
            except NeonError as e:
                return self._finish("failed", f"could not look for the half-made key {self.name}: {_reason(e)}")
            return self._finish("undone", f"the hand-off stopped before its key was created or journaled; any key "
                                f"named {self.name} is revoked; the old key is still the one in use")
        return await self._undo("resume", f"the hand-off stopped before the new key {self.new_id} was stored")

    async def _working(self, key: Secret | None):
        if not key:
            return None
        try:
            client = self.factory(key)
        except NeonError:
            return None
        try:
            auth = await client.get_auth()
        except NeonError:
            await _close(client)
            return None
        if auth.account_id != self.account:
            await _close(client)
            return None
        return client


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None


async def _close(client) -> None:
    try:
        await client.aclose()
    except Exception:
        pass


def abandon_demo_handoffs(directory: Path | None = None) -> list[Path]:
    """Demo hand-offs (sink "memory") that did not end, or left a key live: their simulated account ended with
    the process that ran them, so nothing can resume them. Each is closed (done outcome=abandoned) so it blocks
    nothing any more; returns those closed (the caller says so, once)."""
    out = []
    for p in list_action_journals("keys", directory):
        try:
            log = read_action_journal(p)
        except Exception:
            continue
        done = log.events("done")
        if log.header.get("sink") in DEMO_SINKS and (not done or done[-1].get("outcome") in RESUMABLE):
            j = Journal(p)
            try:
                j.write("done", outcome="abandoned", reason="a demo hand-off: its simulated account ended with "
                        "the process that ran it, so it cannot be resumed")
            finally:
                j.close()
            out.append(p)
    return out


def find_unfinished_handoffs(directory: Path | None = None, host: str | None = None) -> list[Path]:
    """Key hand-off journals without a `done` record, or whose old key was left live; oldest first."""
    out = []
    for p in list_action_journals("keys", directory):
        try:
            log = read_action_journal(p)
        except Exception:
            continue
        done = log.events("done")
        # unfinished: no end yet, or it ended with the old key still live (resume tries the revoke again)
        if host is not None and log.header.get("host") != host:
            continue
        if log.header.get("sink") in DEMO_SINKS:
            continue  # a demo's simulated account is gone: see abandon_demo_handoffs
        if log.header.get("old_key_id") is not None and (not done or done[-1].get("outcome") in RESUMABLE):
            out.append(p)
    return out


# --- revoking other keys ----------------------------------------------------------------------------------

@dataclass
class RevokeResult:
    journal: Path
    revoked: list[int]
    failed: dict[int, str]


async def revoke_selected(client, listing: KeyListing, key_ids: list[int], *, host: str,
                          directory: Path | None = None, progress: Progress | None = None) -> RevokeResult:
    """Revoke the chosen keys (never the one in use: that takes a rotation), journaled as kind "keys"."""
    rows = []
    for kid in key_ids:
        row = listing.row(kid)
        if row is None:
            raise KeyError_(f"no key with id {kid} is visible to this key")
        if listing.in_use_id == kid:
            raise KeyError_(f"key {kid} is the key in use: replace it with `neon-tui keys rotate` instead")
        rows.append(row)
    journal = create_action_journal("keys", host=host, account=listing.account, key_kind=listing.key_kind,
                                    directory=directory or actions_dir(), selected=[r.id for r in rows],
                                    in_use=listing.in_use_id)
    revoked: list[int] = []
    failed: dict[int, str] = {}
    try:
        for row in rows:
            if progress:
                progress("revoke", f"revoking key {row.id} ({row.name})")
            try:
                if row.scope == PERSONAL:
                    await client.revoke_api_key(row.id)
                else:
                    await client.revoke_org_api_key(row.org_id, row.id)
            except NeonError as e:
                failed[row.id] = _reason(e)
                journal.write("key_revoke_failed", key_id=row.id, which="selected", reason=_reason(e))
                continue
            journal.write("key_revoked", key_id=row.id, which="selected",
                          request_id=KeyRotation._last_rid(client))
            revoked.append(row.id)
        outcome = "revoked" if not failed else "partial"
        journal.write("done", outcome=outcome, reason=f"{len(revoked)} revoked, {len(failed)} failed")
    finally:
        journal.close()
    return RevokeResult(journal.path, revoked, failed)


async def create_key(client, *, name: str, sink: KeySink, host: str, org_id: str | None = None,
                     project_id: str | None = None, directory: Path | None = None) -> tuple[int, Path]:
    """Create a key and put its secret only into `sink` (journaled). On a store failure the key is revoked."""
    if isinstance(sink, KeyringKeySink) and sink.is_default:
        raise KeyError_("the NEON_API_KEY keyring entry holds the key neon-tui uses: replace it with "
                        "`neon-tui keys rotate`, or pick another entry (keyring:NAME) or a file")
    if sink.load() is not None:
        raise KeyError_(f"{sink.describe()} already holds a value; refusing to overwrite it")
    auth = await client.get_auth()
    scope = PERSONAL if org_id is None else (PROJECT if project_id else ORGANIZATION)
    journal = create_action_journal("keys", host=host, account=auth.account_id, key_kind=scope,
                                    directory=directory or actions_dir(), sink=sink_spec(sink))
    try:
        journal.write("key_intent", name=name, scope=scope, org_id=org_id, project_id=project_id, old_key_id=None)

        async def listed() -> list[ApiKey]:
            return await (client.list_api_keys() if org_id is None else client.list_org_api_keys(org_id))

        existing: set[int] | None = None
        try:
            # keys of this name that exist already: a lost answer must never get one of them revoked
            existing = {k.id for k in await listed() if k.name == name}
            created = await (client.create_api_key(name) if org_id is None
                             else client.create_org_api_key(org_id, name, project_id=project_id))
        except NeonError as e:
            reason = f"creating the key failed: {_reason(e)}"
            definite = isinstance(e, ApiError) and not isinstance(e, OutcomeUnknownError) and (e.status or 0) < 500
            changed = False
            if not definite and existing is not None:
                changed = True
                # the key may exist with a lost answer: find it by its name and revoke it
                try:
                    for k in await listed():
                        if k.name == name and k.id not in existing:
                            await (client.revoke_api_key(k.id) if org_id is None
                                   else client.revoke_org_api_key(org_id, k.id))
                            journal.write("key_revoked", key_id=k.id, which="half-made",
                                          request_id=KeyRotation._last_rid(client))
                    reason += f"; any key named {name} it may have made is revoked"
                except NeonError as e2:
                    reason += (f"; a key named {name} MAY EXIST AND BE LIVE and could not be checked ({_reason(e2)}):"
                               " look for it with `neon-tui keys list` and revoke it")
            journal.write("done", outcome="failed", reason=reason)
            err = KeyError_(reason)
            err.changed = changed  # a key may have been made (and revoked, or not): not "nothing was changed"
            raise err from None
        journal.write("key_created", key_id=created.id, name=created.name, scope=scope, org_id=org_id,
                      project_id=project_id, request_id=KeyRotation._last_rid(client))
        try:
            sink.store(created.key)
            if sink.load() != created.key:
                raise OSError(0, "reading the key back gave something else")
        except Exception as e:
            reason = _reason(e)
            try:
                await (client.revoke_api_key(created.id) if org_id is None
                       else client.revoke_org_api_key(org_id, created.id))
                journal.write("key_revoked", key_id=created.id, which="half-made", request_id=None)
            except NeonError as e2:
                journal.write("key_revoke_failed", key_id=created.id, which="half-made", reason=_reason(e2))
                reason += f"; revoking it failed too ({_reason(e2)}): revoke key {created.id} in the console"
            journal.write("done", outcome="failed", reason=reason)
            raise KeyError_(f"storing the new key failed: {reason}") from None
        journal.write("key_stored", key_id=created.id, sink=sink_spec(sink))
        journal.write("done", outcome="created", reason=f"key {created.id} in {sink.describe()}")
        return created.id, journal.path
    finally:
        journal.close()

