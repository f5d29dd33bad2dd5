"""`neon-tui keys list|create|revoke|rotate`: Neon API keys from a script or a terminal (see incident/keys.py)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from neon_tui.neon.errors import NeonError
from neon_tui.neon.secret import Secret

DESCRIPTION = """\
list    every key the key in use can see: personal keys, each organization's keys and project-scoped keys,
        with created, created by, last used and from where; the key in use is marked (*) when neon-tui can
        tell which it is: recorded (neon-tui put it in its keyring entry), probe (the only key whose last use
        moved when neon-tui used its key: a guess), or named (--old-key-id).
create  NAME --sink keyring:ENTRY|file:PATH: a new key whose secret goes only into that sink (a keyring entry
        of service neon-tui other than NEON_API_KEY, or a new 0600 file); --print shows it on a terminal too.
revoke  ID...: review, then type the count or "revoke" (or --yes); never the key in use (rotate replaces it).
rotate  replace the key neon-tui uses without ever leaving you locked out: create the new key (its name,
        neon-tui-<id8>, journaled first), store it (--sink, default: the keyring entry neon-tui reads, service
        neon-tui user NEON_API_KEY; or keyring:ENTRY or file:PATH), prove it (same account, one read), revoke
        the old key with the new one, prove the old key answers 401. A failure before the new key is proven
        puts the sink back and revokes the new key. `--resume` finishes or undoes an interrupted hand-off.
        A project-scoped key cannot manage keys: a personal key is asked for (hidden) or read from
        NEON_PERSONAL_API_KEY.

Exit status: 0 done; 1 the hand-off was undone or failed, or an old/selected key may STILL BE LIVE;
2 bad input or the API could not be used (nothing was changed).

Environment: NEON_API_KEY (else the keyring entry neon-tui/NEON_API_KEY), NEON_API_HOST, NEON_PERSONAL_API_KEY.
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEMO_HOST = "https://neon-sim.invalid/api/v2"


class UsageError(Exception):
    pass


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_command", required=True, metavar="list|create|revoke|rotate")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        q.add_argument("--demo", action="store_true", help="use an in-process simulated account")

    ls = sub.add_parser("list", help="every key, the key in use marked")
    ls.add_argument("--old-key-id", type=int, metavar="ID", help="the id of the key in use, if you know it")
    common(ls)
    cr = sub.add_parser("create", help="a new key, stored only where you say")
    cr.add_argument("name", help="the key's name (at most 64 characters)")
    cr.add_argument("--sink", required=True, metavar="SINK", help="keyring:ENTRY or file:PATH (a new 0600 file)")
    cr.add_argument("--org", metavar="ORG_ID", help="an organization key (default: a personal key)")
    cr.add_argument("--project", metavar="PROJECT_ID", help="with --org: a project-scoped key")
    cr.add_argument("--print", action="store_true", help="also show the new key, on a terminal only")
    common(cr)
    rv = sub.add_parser("revoke", help="revoke keys other than the one in use")
    rv.add_argument("ids", nargs="+", type=int, metavar="ID")
    rv.add_argument("--yes", action="store_true", help="do not ask (required without a terminal)")
    rv.add_argument("--old-key-id", type=int, metavar="ID", help="the id of the key in use, if you know it")
    common(rv)
    ro = sub.add_parser("rotate", help="replace the key neon-tui uses, safely")
    ro.add_argument("--sink", metavar="SINK",
                    help="where the new key goes: keyring (default: the entry neon-tui reads), keyring:ENTRY, "
                         "or file:PATH; with --demo: memory (default), never the keyring")
    ro.add_argument("--old-key-id", type=int, metavar="ID",
                    help="the id of the key in use (needed when neon-tui cannot tell, or without a terminal "
                         "when it can only guess)")
    ro.add_argument("--yes", action="store_true", help="do not ask (required without a terminal)")
    ro.add_argument("--resume", nargs="?", const="latest", metavar="JOURNAL",
                    help="finish or undo an interrupted hand-off (the latest, or a journal path)")
    common(ro)


def _err(msg: str) -> None:
    print(f"neon-tui keys: {msg}", file=sys.stderr, flush=True)


def main(ns: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(ns))
    except UsageError as e:
        _err(str(e))
        return EXIT_USAGE
    except (KeyboardInterrupt, asyncio.CancelledError):
        _err("interrupted; `neon-tui keys rotate --resume` finishes or undoes a hand-off")
        return 130


class _Ctx:
    def __init__(self, ns: argparse.Namespace) -> None:
        from neon_tui.config import load_settings

        settings, problem = load_settings()
        if problem:
            _err(f"settings: {problem}")
        self.allow = settings.keyring_allow
        self.sim = None
        from neon_tui.neon import NeonClient

        if ns.demo:
            from neon_tui.simulator import SimConfig, Simulator

            self.sim = Simulator(SimConfig(op_seconds=0.2))
            self.host = DEMO_HOST
            self.key: Secret | None = Secret(self.sim.api_key)
            self.source = "demo"
            self.factory = lambda k: NeonClient(k, host=DEMO_HOST, transport=self.sim.transport())
            return
        from neon_tui.neon.client import DEFAULT_HOST, check_host

        try:
            self.host = check_host((os.environ.get("NEON_API_HOST") or "").strip() or DEFAULT_HOST)
        except NeonError as e:
            raise UsageError(str(e)) from None
        env = os.environ.get("NEON_API_KEY", "").strip()
        if env:
            self.key, self.source = Secret(env), "env"
        else:
            from neon_tui import secrets

            self.key, self.source = secrets.load_api_key(allow=self.allow), "keyring"
        self.factory = lambda k: NeonClient(k, host=self.host)

    def client(self, key: Secret | None = None):
        key = key if key is not None else self.key
        if not key:
            raise UsageError("no API key: set NEON_API_KEY, or save one in the keyring from the TUI")
        try:
            return self.factory(key)
        except NeonError as e:
            raise UsageError(str(e)) from None


async def _main(ns: argparse.Namespace) -> int:
    ctx = _Ctx(ns)
    cmd = ns.keys_command
    try:
        if cmd == "list":
            return await _list(ns, ctx)
        if cmd == "create":
            return await _create(ns, ctx)
        if cmd == "revoke":
            return await _revoke(ns, ctx)
        return await _rotate(ns, ctx)
    except NeonError as e:
        raise UsageError(str(e)) from None


def _json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    sys.stdout.flush()


def _when(d) -> str:
    return d.strftime("%Y-%m-%d %H:%M") if d else "never"


def print_table(listing) -> None:
    rows = [("", "ID", "NAME", "SCOPE", "ORG / PROJECT", "CREATED", "BY", "LAST USED", "FROM")]
    for r in listing.rows:
        where = r.project_id or r.org_id or "-"
        rows.append(("*" if r.in_use else "", str(r.id), r.name, r.scope, where, _when(r.created_at),
                     r.created_by or "-", _when(r.last_used_at), r.last_used_from_addr or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _in_use_line(listing) -> str:
    if listing.in_use_id is None:
        return "key in use: unknown (name it with --old-key-id)"
    how = {"recorded": "recorded by neon-tui", "probe": "a guess: the only key whose last use moved",
           "named": "named by you"}[listing.in_use_how]
    return f"key in use: {listing.in_use_id} ({how})"


async def _manager_key(listing_needed: bool = True) -> Secret:
    env = os.environ.get("NEON_PERSONAL_API_KEY", "").strip()
    if env:
        return Secret(env)
    if not sys.stdin.isatty():
        raise UsageError("the key in use is project-scoped and cannot manage API keys: set NEON_PERSONAL_API_KEY "
                         "to a personal key (or run on a terminal to be asked)")
    value = await asyncio.to_thread(getpass.getpass, "The key in use cannot manage API keys. "
                                    "Personal API key (hidden): ")
    if not value.strip():
        raise UsageError("no personal key given; nothing was changed")
    return Secret(value.strip())


async def _listing(ns, ctx, client, named):
    from neon_tui.incident.keys import list_keys

    listing = await list_keys(client, key_source=ctx.source, named_id=named, host=ctx.host)
    if not listing.can_manage:
        manager = ctx.client(await _manager_key())
        async with manager:
            listing = await list_keys(client, key_source=ctx.source, named_id=named, manager=manager, host=ctx.host)
    return listing


async def _list(ns, ctx) -> int:
    async with ctx.client() as client:
        listing = await _listing(ns, ctx, client, ns.old_key_id)
    if ns.json:
        _json(listing.as_json())
    else:
        print_table(listing)
        _err(_in_use_line(listing))
    for p in listing.problems:
        _err(p)
    return EXIT_OK


async def _create(ns, ctx) -> int:
    from neon_tui.incident.keys import KeyError_, create_key, sink_from_spec

    if ns.project and not ns.org:
        raise UsageError("--project goes with --org (a project-scoped key is an organization key)")
    if ns.print and not sys.stdout.isatty():
        raise UsageError("--print shows the key on a terminal only; standard output is not one "
                         "(nothing was created): use --sink file:PATH")
    try:
        sink = sink_from_spec(ns.sink, allow=ctx.allow, demo=ctx.sim is not None)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if len(ns.name) > 64 or not ns.name.strip():
        raise UsageError("a key name has 1 to 64 characters")
    async with ctx.client() as client:
        try:
            key_id, journal = await create_key(client, name=ns.name, sink=sink, host=ctx.host, org_id=ns.org,
                                               project_id=ns.project)
        except KeyError_ as e:
            _err(str(e))
            return EXIT_FAILED if "storing" in str(e) or e.changed else EXIT_USAGE
    if ns.json:
        _json({"key_id": key_id, "name": ns.name, "sink": sink.describe(), "journal": str(journal)})
    else:
        _err(f"created key {key_id} ({ns.name}); it is in {sink.describe()}")
    if ns.print:
        print(sink.load().reveal(), flush=True)
    return EXIT_OK


def _confirm(prompt: str, accepted: set[str]) -> bool:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    return answer in accepted


async def _revoke(ns, ctx) -> int:
    from neon_tui.incident.keys import KeyError_, revoke_selected

    if not ns.yes and not sys.stdin.isatty():
        raise UsageError("revoking needs a typed confirmation: run on a terminal, or add --yes")
    ids = list(dict.fromkeys(ns.ids))
    async with ctx.client() as client:
        listing = await _listing(ns, ctx, client, ns.old_key_id)
        missing = [i for i in ids if listing.row(i) is None]
        if missing:
            raise UsageError(f"no key with id {', '.join(map(str, missing))} is visible to this key")
        if listing.in_use_id in ids:
            raise UsageError(f"key {listing.in_use_id} is the key in use: replace it with `neon-tui keys rotate`")
        if listing.probe_id is not None and listing.probe_id in ids:
            raise UsageError(f"key {listing.probe_id} looks like the key in use (the only key used when neon-tui "
                             "used its key): replace it with `neon-tui keys rotate`")
        if listing.in_use_id is None:
            _err("the key in use is unknown: make sure none of these is it (or name it with --old-key-id)")
        _err(f"about to revoke {len(ids)} key(s); revocation is immediate and cannot be undone:")
        for i in ids:
            r = listing.row(i)
            _err(f"  {r.id}  {r.name}  {r.scope}  {r.project_id or r.org_id or ''}  last used {_when(r.last_used_at)}"
                 f" from {r.last_used_from_addr or '-'}")
        if not ns.yes and not _confirm(f'type {len(ids)} or "revoke" to go on: ', {str(len(ids)), "revoke"}):
            _err("not confirmed; nothing was revoked")
            return EXIT_USAGE
        try:
            res = await revoke_selected(client, listing, ids, host=ctx.host)
        except KeyError_ as e:
            raise UsageError(str(e)) from None
    if ns.json:
        _json({"revoked": res.revoked, "failed": {str(k): v for k, v in res.failed.items()},
               "journal": str(res.journal)})
    for kid in res.revoked:
        _err(f"revoked key {kid}")
    for kid, why in res.failed.items():
        _err(f"REVOKING KEY {kid} FAILED ({why}): it is STILL LIVE")
    return EXIT_OK if not res.failed else EXIT_FAILED


def _progress(ns):
    def say(step: str, msg: str) -> None:
        if not ns.json:
            _err(f"[{step}] {msg}")
    return say


def _report(ns, res) -> int:
    if ns.json:
        _json(res.as_json())
    loud = res.outcome != "rotated"
    for m in res.messages:
        _err(("!! " if loud else "") + m)
    return EXIT_OK if res.outcome == "rotated" else EXIT_FAILED


async def _rotate(ns, ctx) -> int:
    from neon_tui.incident.keys import (
        KeyError_,
        KeyRotation,
        NeedsConfirmation,
        NeedsPersonalKey,
        find_unfinished_handoffs,
        sink_from_spec,
    )
    from neon_tui.incident.actions import read_action_journal

    if ctx.sim is not None:
        from neon_tui.incident.keys import abandon_demo_handoffs

        abandoned = abandon_demo_handoffs()
        if abandoned:
            _err(f"{len(abandoned)} earlier demo key hand-off(s) did not end; a demo's simulated account ends with "
                 "its process, so they cannot be resumed: closed as abandoned")
    if ns.resume:
        if ns.resume == "latest":
            found = find_unfinished_handoffs(host=ctx.host)
            if not found:
                raise UsageError("no interrupted key hand-off to resume")
            path = found[-1]
        else:
            path = Path(ns.resume)
        try:
            header = read_action_journal(path).header
        except Exception as e:
            raise UsageError(str(e)) from None
        try:
            sink = sink_from_spec(ns.sink or str(header.get("sink", "")), allow=ctx.allow, demo=ctx.sim is not None)
        except ValueError as e:
            raise UsageError(str(e)) from None
        manager = await _manager_key() if header.get("scope") == "project" else None
        try:
            res = await KeyRotation.resume(path, old_key=ctx.key if ctx.source == "env" else None, sink=sink,
                                           client_factory=ctx.factory, host=ctx.host, manager_key=manager,
                                           progress=_progress(ns))
        except KeyError_ as e:
            raise UsageError(str(e)) from None
        if res.new_client is not None:
            await res.new_client.aclose()
        return _report(ns, res)

    unfinished = find_unfinished_handoffs(host=ctx.host)
    if unfinished:
        raise UsageError(f"an interrupted key hand-off exists ({unfinished[-1]}): finish or undo it first with "
                         "`neon-tui keys rotate --resume`")
    if not ns.yes and not sys.stdin.isatty():
        raise UsageError("rotating the key needs a typed confirmation: run on a terminal, or add --yes")
    try:
        sink = sink_from_spec(ns.sink or ("memory" if ctx.sim is not None else "keyring"), allow=ctx.allow,
                              demo=ctx.sim is not None)
    except ValueError as e:
        raise UsageError(str(e)) from None
    manager = None
    old_id = ns.old_key_id
    async with ctx.client() as client:
        while True:
            rot = KeyRotation(client, old_key=ctx.key, sink=sink, client_factory=ctx.factory, host=ctx.host,
                              key_source=ctx.source, manager_key=manager, old_key_id=old_id,
                              progress=_progress(ns))
            try:
                await rot.prepare()
            except NeedsPersonalKey:
                if manager is not None:
                    raise
                manager = await _manager_key()
                continue
            except NeedsConfirmation as e:
                if not sys.stdin.isatty():
                    raise UsageError(f"{e} (nothing was changed): add --old-key-id {e.key_id} if it is") from None
                if not _confirm(f"{e}\ntype the key id {e.key_id} to confirm: ", {str(e.key_id)}):
                    _err("not confirmed; nothing was changed")
                    return EXIT_USAGE
                old_id = e.key_id  # the confirmation is for this id, not for whatever a new probe finds
                continue
            except KeyError_ as e:
                raise UsageError(f"{e} (nothing was changed)") from None
            break
        _err(f"about to replace key {rot.old_key_id} ({rot.scope}{', ' + rot.project_id if rot.project_id else ''}) "
             f"with a new key stored in {sink.describe()}; the old key is revoked once the new one works")
        if not ns.yes and not _confirm('type "rotate" to go on: ', {"rotate"}):
            _err("not confirmed; nothing was changed")
            return EXIT_USAGE
        res = await rot.execute()
        await rot.aclose()
        if res.new_client is not None:
            await res.new_client.aclose()
    return _report(ns, res)
