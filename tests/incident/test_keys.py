"""API keys: listing with the key in use, and the hand-off with a fault at each step (in-process simulator)."""

from __future__ import annotations

import asyncio

import keyring
import pytest
from keyring.backend import KeyringBackend

from neon_tui.incident.actions import read_action_journal
from neon_tui.incident.keys import (
    FileKeySink,
    KeyError_,
    KeyringKeySink,
    KeyRotation,
    NeedsConfirmation,
    NeedsPersonalKey,
    list_keys,
    revoke_selected,
)
from neon_tui.neon import NeonClient
from neon_tui.neon.errors import AuthenticationError
from neon_tui.neon.secret import Secret
from neon_tui.simulator import SimConfig, Simulator

HOST = "https://neon-sim.invalid/api/v2"


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.fail_writes = False

    def set_password(self, service, username, password):
        if self.fail_writes:
            raise keyring.errors.PasswordSetError("refused")
        self.entries[(service, username)] = password

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def delete_password(self, service, username):
        self.entries.pop((service, username), None)


ALLOW = (f"{MemoryKeyring.__module__}.{MemoryKeyring.__qualname__}",)


async def _nosleep(_s: float) -> None:
    return None


@pytest.fixture
def sim():
    return Simulator(SimConfig(op_seconds=0.05))


@pytest.fixture
def kr(monkeypatch, tmp_path):
    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(tmp_path / "state"))
    previous = keyring.get_keyring()
    k = MemoryKeyring()
    keyring.set_keyring(k)
    yield k
    keyring.set_keyring(previous)


def factory(sim):
    return lambda key: NeonClient(key, host=HOST, transport=sim.transport(), sleep=_nosleep)


def live_keys(sim) -> dict[int, str]:
    return {k.id: k.key for k in sim.account.keys.values() if not k.revoked}


def works(sim, secret: str) -> bool:
    async def go():
        async with factory(sim)(Secret(secret)) as c:
            try:
                await c.get_auth()
                return True
            except AuthenticationError:  # refused (401); any other error is a failure of the test, not "dead"
                return False
    return asyncio.run(go())


def rotate(sim, tmp_path, sink, *, old=None, **kw):
    old = old or sim.api_key

    async def go():
        client = factory(sim)(Secret(old))
        rot = KeyRotation(client, old_key=Secret(old), sink=sink, client_factory=factory(sim), host=HOST,
                          confirmed=True, directory=tmp_path / "actions", **kw)
        try:
            return await rot.run()
        finally:
            await client.aclose()
    return asyncio.run(go())


def resume(sim, tmp_path, sink, path, old):
    async def go():
        return await KeyRotation.resume(path, old_key=Secret(old) if old else None, sink=sink,
                                        client_factory=factory(sim), host=HOST)
    return asyncio.run(go())


def no_secret_in(path, secrets):
    text = path.read_text()
    for s in secrets:
        assert s not in text


def old_id(sim):
    return next(k.id for k in sim.account.keys.values() if k.key == sim.api_key)


def test_listing_marks_the_key_in_use_by_probe_and_shows_org_keys(sim, kr):
    org = sim.inspect.primary_org_id
    org_key = sim.org_api_key(org)

    async def go():
        async with factory(sim)(Secret(sim.api_key)) as c:
            return await list_keys(c, host=HOST)
    listing = asyncio.run(go())
    assert listing.key_kind == "personal"
    assert listing.in_use_id == old_id(sim) and listing.in_use_how == "probe"
    in_use = [r for r in listing.rows if r.in_use]
    assert [r.id for r in in_use] == [old_id(sim)]
    org_rows = [r for r in listing.rows if r.scope == "organization"]
    assert sim.account.key_by_secret(org_key).id in {r.id for r in org_rows}
    assert all(r.org_id == org for r in org_rows if r.id == sim.account.key_by_secret(org_key).id)
    assert in_use[0].last_used_at is not None and in_use[0].last_used_from_addr != ""


@pytest.mark.slow
def test_rotation_to_the_keyring_hands_off_and_old_key_answers_401(sim, kr, tmp_path):
    old = sim.api_key
    oid = old_id(sim)
    kr.entries[("neon-tui", "NEON_API_KEY")] = old
    sink = KeyringKeySink(allow=ALLOW)
    res = rotate(sim, tmp_path, sink, key_source="keyring")
    assert res.outcome == "rotated" and res.old_status == "revoked", res.messages
    new = kr.entries[("neon-tui", "NEON_API_KEY")]
    assert new != old and works(sim, new) and not works(sim, old)
    assert set(live_keys(sim).values()) & {new, old} == {new}
    assert sim.account.keys[oid].revoked and sim.account.key_by_secret(new).id == res.new_key_id
    assert ("neon-tui", "NEON_API_KEY.previous") not in kr.entries
    # the old key was revoked WITH the new one
    revoke = [r for r in sim.requests if r.method == "DELETE" and r.path.endswith(f"/api_keys/{oid}")]
    assert [r.key_id for r in revoke] == [res.new_key_id]
    log = read_action_journal(res.journal)
    assert [r["event"] for r in log.records] == ["key_intent", "key_created", "key_stored", "key_switched",
                                                 "key_proven", "key_revoked", "key_dead", "done"]
    assert log.records[0]["name"] == sim.account.keys[res.new_key_id].name
    no_secret_in(res.journal, [old, new])
    # next time the key in use is the recorded one
    async def listing():
        async with factory(sim)(Secret(new)) as c:
            return await list_keys(c, key_source="keyring", host=HOST)
    lst = asyncio.run(listing())
    assert lst.in_use_id == res.new_key_id and lst.in_use_how == "recorded"


def test_create_answer_lost_revokes_the_half_made_key_by_name(sim, kr, tmp_path):
    old = sim.api_key
    before = set(live_keys(sim))
    sim.fail_next("POST /api_keys", "drop")
    res = rotate(sim, tmp_path, FileKeySink(tmp_path / "key"))
    assert res.outcome == "undone"
    assert set(live_keys(sim)) == before and works(sim, old)
    made = [k for k in sim.account.keys.values() if k.name.startswith("neon-tui-")]
    assert len(made) == 1 and made[0].revoked
    assert not (tmp_path / "key").exists()


def test_store_failure_revokes_the_half_made_key_and_keeps_the_old_one(sim, kr, tmp_path):
    old = sim.api_key
    kr.entries[("neon-tui", "NEON_API_KEY")] = old
    kr.fail_writes = True
    res = rotate(sim, tmp_path, KeyringKeySink(allow=ALLOW), key_source="keyring")
    assert res.outcome == "undone"
    assert kr.entries[("neon-tui", "NEON_API_KEY")] == old and works(sim, old)
    made = [k for k in sim.account.keys.values() if k.name.startswith("neon-tui-")]
    assert len(made) == 1 and made[0].revoked


def test_prove_failure_puts_the_old_key_back_and_revokes_the_new(sim, kr, tmp_path):
    old = sim.api_key
    kr.entries[("neon-tui", "NEON_API_KEY")] = old
    # every /auth of the *new* key fails: its id is the next one the simulator hands out
    next_id = max(sim.account.keys) + 1
    real_new_key = sim.account.new_key

    def new_key(*a, **k):
        key = real_new_key(*a, **k)
        sim.fail_next("GET /auth", "500", times=20, key_id=key.id)
        return key
    sim.account.new_key = new_key
    res = rotate(sim, tmp_path, KeyringKeySink(allow=ALLOW), key_source="keyring")
    assert res.outcome == "undone", res.messages
    assert kr.entries[("neon-tui", "NEON_API_KEY")] == old and works(sim, old)
    assert ("neon-tui", "NEON_API_KEY.previous") not in kr.entries
    assert sim.account.keys[res.new_key_id].revoked and res.new_key_id >= next_id - 1


def test_failed_old_revoke_is_reported_live_and_the_new_key_is_held(sim, kr, tmp_path):
    old = sim.api_key
    oid = old_id(sim)
    sim.fail_next("DELETE /api_keys/{key_id}", "500", times=20)
    res = rotate(sim, tmp_path, FileKeySink(tmp_path / "key"))
    assert res.outcome == "old_live" and res.old_status == "LIVE"
    assert any("STILL LIVE" in m for m in res.messages)
    new = (tmp_path / "key").read_text().strip()
    assert works(sim, new) and works(sim, old) and not sim.account.keys[oid].revoked
    log = read_action_journal(res.journal)
    assert log.events("key_revoke_failed")[0]["which"] == "old"
    assert oct((tmp_path / "key").stat().st_mode & 0o777) == "0o600"
    # the old key is live: never called dead next to STILL LIVE (the env warning says it is live)
    assert not any("now dead" in m for m in res.messages)
    assert any("NEON_API_KEY in your environment holds the OLD key, which is STILL LIVE" in m for m in res.messages)


def test_prove_old_unknown_is_reported_not_claimed_dead(sim, kr, tmp_path):
    oid = old_id(sim)
    # the revoke works, but the check of the old key cannot be made (5xx all along)
    real = sim.api.revoke_key

    def revoke_then_break(ctx):
        reply = real(ctx)
        sim.fail_next("GET /auth", "500", times=20)
        return reply
    sim.api.revoke_key = revoke_then_break
    for r in sim.api.routes:
        if r.name == "DELETE /api_keys/{key_id}":
            object.__setattr__(r, "handler", revoke_then_break)
    res = rotate(sim, tmp_path, FileKeySink(tmp_path / "key"))
    assert res.outcome == "old_live" and res.old_status == "unknown"
    assert sim.account.keys[oid].revoked  # it is in fact dead, but neon-tui could not prove it and says so


def test_guessed_key_needs_confirmation_before_anything_is_created(sim, kr, tmp_path):
    before = set(sim.account.keys)

    async def go():
        async with factory(sim)(Secret(sim.api_key)) as c:
            rot = KeyRotation(c, old_key=Secret(sim.api_key), sink=FileKeySink(tmp_path / "k"),
                              client_factory=factory(sim), host=HOST, directory=tmp_path)
            await rot.run()
    with pytest.raises(NeedsConfirmation) as e:
        asyncio.run(go())
    assert e.value.key_id == old_id(sim)
    assert set(sim.account.keys) == before and not list(tmp_path.glob("keys-*.jsonl"))


def test_project_scoped_key_asks_for_a_personal_key_then_rotates_with_it(sim, kr, tmp_path):
    org = sim.inspect.primary_org_id
    pid = sim.inspect.project_ids(org)[0]
    scoped = sim.account.new_key("ci", 0.0, org_id=org, project_id=pid)
    before = set(sim.account.keys)

    async def go(manager):
        async with factory(sim)(Secret(scoped.key)) as c:
            rot = KeyRotation(c, old_key=Secret(scoped.key), sink=FileKeySink(tmp_path / "k"),
                              client_factory=factory(sim), host=HOST, directory=tmp_path / "a",
                              manager_key=manager, confirmed=True)
            return await rot.run()
    with pytest.raises(NeedsPersonalKey):
        asyncio.run(go(None))
    assert set(sim.account.keys) == before
    res = asyncio.run(go(Secret(sim.api_key)))
    assert res.outcome == "rotated", res.messages
    new = sim.account.keys[res.new_key_id]
    assert new.org_id == org and new.project_id == pid and scoped.revoked
    assert works(sim, (tmp_path / "k").read_text().strip()) and works(sim, sim.api_key)


def test_revoke_selected_refuses_the_key_in_use_and_journals(sim, kr, tmp_path):
    other = sim.account.new_key("old-ci", 0.0)

    async def go():
        async with factory(sim)(Secret(sim.api_key)) as c:
            listing = await list_keys(c, host=HOST)
            with pytest.raises(KeyError_):
                await revoke_selected(c, listing, [listing.in_use_id], host=HOST, directory=tmp_path)
            return await revoke_selected(c, listing, [other.id], host=HOST, directory=tmp_path)
    res = asyncio.run(go())
    assert res.revoked == [other.id] and other.revoked and works(sim, sim.api_key)
    log = read_action_journal(res.journal)
    assert log.events("key_revoked")[0] == {**log.events("key_revoked")[0], "key_id": other.id,
                                            "which": "selected"}


@pytest.mark.parametrize("step", ["after_intent", "after_create_sent", "after_created", "after_store",
                                  "after_stored", "after_switch", "after_proven", "after_revoked"])
def test_crash_at_each_step_then_resume_leaves_exactly_one_working_key_held(sim, kr, tmp_path, monkeypatch, step):
    old = sim.api_key
    oid = old_id(sim)
    kr.entries[("neon-tui", "NEON_API_KEY")] = old

    class Crash(BaseException):
        pass

    import neon_tui.incident.keys as keys_mod

    def hook(name):
        if name == step:
            raise Crash()
    monkeypatch.setattr(keys_mod, "_test_hook", hook)
    sink = KeyringKeySink(allow=ALLOW)
    with pytest.raises(Crash):
        rotate(sim, tmp_path, sink, key_source="keyring")
    monkeypatch.setattr(keys_mod, "_test_hook", lambda name: None)
    (path,) = (tmp_path / "actions").glob("keys-*.jsonl")
    # resume without the old key in the environment: it comes from the keyring (or its backup)
    res = resume(sim, tmp_path, sink, path, None)
    held = kr.entries[("neon-tui", "NEON_API_KEY")]
    live = live_keys(sim)
    mine = [kid for kid, s in live.items() if s == held]
    assert len(mine) == 1 and works(sim, held)
    made = [k for k in sim.account.keys.values() if k.name.startswith("neon-tui-")]
    assert all(k.revoked for k in made if k.key != held)
    if res.outcome == "rotated":
        assert sim.account.keys[oid].revoked and held != old
    else:
        assert res.outcome == "undone" and held == old and not sim.account.keys[oid].revoked
    assert ("neon-tui", "NEON_API_KEY.previous") not in kr.entries
    expect = "undone" if step in ("after_intent", "after_create_sent", "after_created", "after_store") else "rotated"
    assert res.outcome == expect, res.messages
    no_secret_in(path, [old, held])


def test_new_key_revoked_before_the_old_revoke_puts_the_live_old_key_back(sim, kr, tmp_path, monkeypatch):
    """Whoever holds the leaked key revokes the brand-new key right after it was proven: neon-tui must not end
    with the dead new key in its keyring entry and the live old key's secret thrown away."""
    import neon_tui.incident.keys as keys_mod

    old = sim.api_key
    oid = old_id(sim)
    kr.entries[("neon-tui", "NEON_API_KEY")] = old

    def hook(step):
        if step == "after_proven":
            newest = max(sim.account.keys.values(), key=lambda k: k.id)
            newest.revoked = True
    monkeypatch.setattr(keys_mod, "_test_hook", hook)
    res = rotate(sim, tmp_path, KeyringKeySink(allow=ALLOW), key_source="keyring")
    assert res.outcome == "new_key_dead", res.messages
    assert res.new_client is None and res.new_key is None and res.old_status == "LIVE"
    assert kr.entries[("neon-tui", "NEON_API_KEY")] == old and works(sim, old)
    assert not sim.account.keys[oid].revoked
    assert ("neon-tui", "NEON_API_KEY.previous") not in kr.entries
    assert "REVOKED BY SOMEONE ELSE" in res.messages[0] and "keyring:NEON_API_KEY" in res.messages[0]
    assert "ROTATE AGAIN" in res.messages[0]
    log = read_action_journal(res.journal)
    assert log.events("key_new_dead")[0]["key_id"] == res.new_key_id
    assert log.events("done")[-1]["outcome"] == "new_key_dead"
    from neon_tui.incident.keys import find_unfinished_handoffs
    assert find_unfinished_handoffs(tmp_path / "actions") == []
    no_secret_in(res.journal, [old])
    # the checklist and the report do not read this hand-off as done: the old key is still live
    from neon_tui.incident.checklist import ATTENTION, checklist
    from neon_tui.incident.journals import load

    inputs = load(None, runs_dir=tmp_path / "no-runs", acts_dir=tmp_path / "actions")
    step = {x.id: x for x in checklist(inputs.runs, inputs.actions)}["keys"]
    assert step.state == ATTENTION, step
    assert any(f"API key {oid}: hand-off stopped: the new key was revoked by someone else" in d for d in step.details)


def test_failed_old_revoke_keeps_the_backup_until_the_old_key_is_dead(sim, kr, tmp_path):
    old = sim.api_key
    kr.entries[("neon-tui", "NEON_API_KEY")] = old
    sim.fail_next("DELETE /api_keys/{key_id}", "500", times=20)
    sink = KeyringKeySink(allow=ALLOW)
    res = rotate(sim, tmp_path, sink, key_source="keyring")
    assert res.outcome == "old_live"
    assert kr.entries[("neon-tui", "NEON_API_KEY.previous")] == old
    sim.clear_scripted_faults()
    r2 = resume(sim, tmp_path, sink, res.journal, None)
    assert r2.outcome == "rotated", r2.messages
    assert not works(sim, old) and ("neon-tui", "NEON_API_KEY.previous") not in kr.entries


def _rotate_named(sim, tmp_path, named):
    async def go():
        async with factory(sim)(Secret(sim.api_key)) as c:
            rot = KeyRotation(c, old_key=Secret(sim.api_key), sink=FileKeySink(tmp_path / "k"),
                              client_factory=factory(sim), host=HOST, directory=tmp_path / "actions",
                              old_key_id=named)
            return await rot.run()
    return asyncio.run(go())


def test_old_key_id_naming_a_key_not_in_use_is_refused_before_anything_is_created(sim, kr, tmp_path):
    other = sim.account.new_key("ci-deploy", 0.0)
    org = sim.inspect.primary_org_id
    org_key = sim.account.new_key("org-ci", 0.0, org_id=org)
    before = set(sim.account.keys)
    with pytest.raises(KeyError_) as e:
        _rotate_named(sim, tmp_path, other.id)
    assert f"key {old_id(sim)} is the one that answered" in str(e.value)
    # a personal key cannot be an organization's key (its revoke would 404 and pass for "already gone")
    with pytest.raises(KeyError_) as e2:
        _rotate_named(sim, tmp_path, org_key.id)
    assert "personal key" in str(e2.value)
    assert set(sim.account.keys) == before and not other.revoked and not org_key.revoked
    assert not (tmp_path / "k").exists() and not list((tmp_path / "actions").glob("keys-*.jsonl"))


def test_old_key_id_naming_the_wrong_key_when_the_probe_is_inconclusive_ends_wrong_key(sim, kr, tmp_path):
    """The probe cannot tell (another key is used at the same moment): the named key is revoked, the key in use
    still answers; that is said plainly and the hand-off ends (no endless --resume)."""
    from neon_tui.incident.keys import find_unfinished_handoffs

    old = sim.api_key
    other = sim.account.new_key("ci-deploy", 0.0)
    in_use = sim.account.key_by_secret(old)
    for r in sim.api.routes:
        if r.name == "GET /auth":
            real = r.handler

            def auth_and_ci(ctx, real=real):
                reply = real(ctx)
                other.last_used_t = in_use.last_used_t  # ci-deploy runs at the same moment
                return reply
            object.__setattr__(r, "handler", auth_and_ci)
    res = _rotate_named(sim, tmp_path, other.id)
    assert res.outcome == "wrong_key", res.messages
    assert other.revoked and works(sim, old) and not in_use.revoked
    assert f"{other.id} was not the key in use" in res.messages[0] and "STILL LIVE" in res.messages[0]
    new = (tmp_path / "k").read_text().strip()
    assert works(sim, new) and res.new_key_id == sim.account.key_by_secret(new).id
    assert find_unfinished_handoffs(tmp_path / "actions") == []
    assert read_action_journal(res.journal).events("done")[-1]["outcome"] == "wrong_key"


def test_failed_undo_ends_half_made_live_and_resume_revokes_the_half_made_key(sim, kr, tmp_path):
    """The proof of the new key fails and so does the revoke of it: the message points to --resume, and --resume
    (which lists the hand-off as unfinished) revokes it."""
    from neon_tui.incident.keys import find_unfinished_handoffs

    old = sim.api_key
    before = set(live_keys(sim))
    for r in sim.api.routes:
        if r.name == "POST /api_keys":
            real = r.handler

            def create_then_break(ctx, real=real):
                reply = real(ctx)
                sim.fail_next("GET /users/me/organizations", "500", times=50)
                sim.fail_next("DELETE /api_keys/{key_id}", "500", times=50)
                return reply
            object.__setattr__(r, "handler", create_then_break)
    sink = FileKeySink(tmp_path / "key")
    res = rotate(sim, tmp_path, sink)
    assert res.outcome == "half_made_live", res.messages
    assert "--resume" in res.messages[0] and "STILL LIVE" in res.messages[0]
    (extra,) = set(live_keys(sim)) - before
    assert extra == res.new_key_id and not (tmp_path / "key").exists()
    sim.clear_scripted_faults()
    assert find_unfinished_handoffs(tmp_path / "actions") == [res.journal]
    r2 = resume(sim, tmp_path, sink, res.journal, old)
    assert r2.outcome == "undone", r2.messages
    assert set(live_keys(sim)) == before and works(sim, old) and not (tmp_path / "key").exists()
    assert find_unfinished_handoffs(tmp_path / "actions") == []


def test_the_recorded_key_is_forgotten_when_another_key_is_saved_and_needs_the_probe(sim, kr, tmp_path):
    """The record of the key in neon-tui's keyring entry is cleared when another key is saved there, and is
    used without the user's word only when the probe agrees."""
    from neon_tui.incident.keys import record_current, recorded_current

    old = sim.api_key
    oid = old_id(sim)
    other = sim.account.new_key("ci-deploy", 0.0)
    record_current(HOST, sim.inspect.user_id, oid)
    assert recorded_current(HOST, sim.inspect.user_id) == oid
    # the app (or anything of neon-tui) saves another key into its entry: the record is not true any more
    KeyringKeySink(allow=ALLOW).store(Secret(other.key))
    assert recorded_current(HOST, sim.inspect.user_id) is None

    # a record the probe cannot back (another key used at the same moment) needs a confirmation
    record_current(HOST, sim.inspect.user_id, oid)
    in_use = sim.account.key_by_secret(old)
    for r in sim.api.routes:
        if r.name == "GET /auth":
            real = r.handler

            def auth_and_ci(ctx, real=real):
                reply = real(ctx)
                other.last_used_t = in_use.last_used_t
                return reply
            object.__setattr__(r, "handler", auth_and_ci)
    before = set(sim.account.keys)

    async def go():
        async with factory(sim)(Secret(old)) as c:
            rot = KeyRotation(c, old_key=Secret(old), sink=FileKeySink(tmp_path / "k"), key_source="keyring",
                              client_factory=factory(sim), host=HOST, directory=tmp_path / "actions")
            await rot.run()
    with pytest.raises(NeedsConfirmation) as e:
        asyncio.run(go())
    assert e.value.key_id == oid and "could not confirm" in str(e.value)
    assert set(sim.account.keys) == before and not (tmp_path / "k").exists()


@pytest.mark.slow
def test_rotating_a_keyring_key_into_a_file_warns_that_the_keyring_entry_holds_the_old_key(sim, kr, tmp_path):
    old = sim.api_key
    kr.entries[("neon-tui", "NEON_API_KEY")] = old
    res = rotate(sim, tmp_path, FileKeySink(tmp_path / "key"), key_source="keyring")
    assert res.outcome == "rotated", res.messages
    assert kr.entries[("neon-tui", "NEON_API_KEY")] == old and not works(sim, old)
    (warning,) = [m for m in res.messages if m.startswith("WARNING")]
    assert "keyring entry" in warning and "OLD key, which is now dead" in warning and str(tmp_path / "key") in warning
    # into neon-tui's own entry there is nothing to warn about
    sim2 = Simulator(SimConfig(op_seconds=0.05))
    kr.entries[("neon-tui", "NEON_API_KEY")] = sim2.api_key
    res2 = rotate(sim2, tmp_path / "2", KeyringKeySink(allow=ALLOW), key_source="keyring")
    assert res2.outcome == "rotated" and not any(m.startswith("WARNING") for m in res2.messages)


def test_create_key_failures_end_their_journal_and_a_lost_answer_revokes_only_the_new_key(sim, kr, tmp_path):
    from neon_tui.incident.keys import create_key, find_unfinished_handoffs

    same_name = sim.account.new_key("ci-3", 0.0)  # a key of that name already exists: never touched

    async def create(name, sink, **kw):
        async with factory(sim)(Secret(sim.api_key)) as c:
            return await create_key(c, name=name, sink=sink, host=HOST, directory=tmp_path / "actions", **kw)
    # an organization that does not exist: a definite refusal, nothing made, the journal ends failed
    with pytest.raises(KeyError_) as e:
        asyncio.run(create("ci-2", FileKeySink(tmp_path / "a"), org_id="nope"))
    assert "creating the key failed" in str(e.value) and not e.value.changed
    (first,) = (tmp_path / "actions").glob("keys-*.jsonl")
    assert read_action_journal(first).events("done")[-1]["outcome"] == "failed"
    # the answer to the create is lost: the key it made (by name, not the older one of that name) is revoked
    before = set(live_keys(sim))
    sim.fail_next("POST /api_keys", "drop")
    with pytest.raises(KeyError_) as e2:
        asyncio.run(create("ci-3", FileKeySink(tmp_path / "b")))
    assert e2.value.changed and "is revoked" in str(e2.value)
    made = [k for k in sim.account.keys.values() if k.name == "ci-3" and k.id != same_name.id]
    assert len(made) == 1 and made[0].revoked and not same_name.revoked
    assert set(live_keys(sim)) == before and not (tmp_path / "b").exists()
    journals = list((tmp_path / "actions").glob("keys-*.jsonl"))
    assert len(journals) == 2  # ci-2's and ci-3's
    for p in journals:
        assert read_action_journal(p).events("done")[-1]["outcome"] == "failed"
    assert find_unfinished_handoffs(tmp_path / "actions") == []
