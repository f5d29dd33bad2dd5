"""The API keys view (K): the key in use marked, R hands off to a new key (the app then runs on it), x + d revoke."""

from __future__ import annotations

import pytest
from ui_helpers import IN_PROCESS, make_app, make_sim, screen_text, settle

from neon_tui.incident.actions import list_action_journals, read_action_journal
from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.screens.keys import KeysScreen, PersonalKeyModal

pytestmark = pytest.mark.slow  # every test here takes over ~2 s


def factory(sim):
    return lambda key: NeonClient(key, host=IN_PROCESS, transport=sim.transport(),
                                  retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05))


async def open_keys(app, pilot):
    await settle(app, pilot)
    await pilot.press("K")
    await settle(app, pilot)
    assert isinstance(app.screen, KeysScreen)


async def test_rotate_the_key_in_use_from_the_keys_view(tmp_path, memory_keyring):
    sim = make_sim()
    old = sim.api_key
    old_id = sim.account.key_by_secret(old).id
    app = make_app(sim, tmp_path)
    app.client_factory = factory(sim)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_keys(app, pilot)
        text = screen_text(app)
        assert "● in use" in text and str(old_id) in text and "a guess" in text
        old_client = app.client
        await pilot.press("R")
        await settle(app, pilot)
        # a guess must be confirmed by typing the key's id
        await pilot.press(*str(old_id), "enter")
        await settle(app, pilot)
        assert "create a new key" in screen_text(app)
        await pilot.press(*"rotate", "enter")
        await settle(app, pilot)
        new = memory_keyring.entries[("neon-tui", "NEON_API_KEY")]
        new_key = sim.account.key_by_secret(new)
        assert new != old and not new_key.revoked and sim.account.keys[old_id].revoked
        # the app, its inventory and the keys view now run on the new key
        assert app.client is not old_client and app.inventory.client is app.client
        assert (await app.client.get_auth()).account_id == sim.inspect.user_id
        assert "[prove-old]" in screen_text(app)
        assert app.client.history[-1].status == 200
        await pilot.press("escape")
        await settle(app, pilot)
        orgs = await app.inventory.client.list_organizations()
        assert orgs
    (path,) = list_action_journals("keys")
    log = read_action_journal(path)
    assert log.events("done")[0]["outcome"] == "rotated"
    assert old not in path.read_text() and new not in path.read_text()


async def test_select_and_revoke_another_key_with_typed_confirmation(tmp_path, memory_keyring):
    sim = make_sim()
    with sim.lock:
        other = sim.account.new_key("old-laptop", sim.clock())
    app = make_app(sim, tmp_path)
    app.client_factory = factory(sim)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_keys(app, pilot)
        table = app.screen.query_one("DataTable")
        row = next(i for i, r in enumerate(app.screen.listing.rows) if r.id == other.id)
        table.move_cursor(row=row)
        await pilot.press("x")
        await pilot.press("d")
        await settle(app, pilot)
        assert "old-laptop" in screen_text(app)
        await pilot.press(*"nope", "enter")
        await settle(app, pilot)
        assert not other.revoked
        await pilot.press("ctrl+a", "ctrl+k", *"revoke", "enter")
        await settle(app, pilot)
        assert other.revoked and not sim.account.key_by_secret(sim.api_key).revoked


async def test_project_scoped_key_asks_for_a_personal_key_masked(tmp_path, memory_keyring):
    sim = make_sim()
    org = sim.inspect.primary_org_id
    pid = sim.inspect.project_ids(org)[0]
    with sim.lock:
        scoped = sim.account.new_key("ci", sim.clock(), org_id=org, project_id=pid)
    app = make_app(sim, tmp_path)
    app.client = factory(sim)(scoped.key)
    app.client_factory = factory(sim)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("K")
        await settle(app, pilot)
        assert isinstance(app.screen, PersonalKeyModal)
        await pilot.press(*sim.api_key, "enter")
        await settle(app, pilot)
        assert sim.api_key not in screen_text(app)
        keys = app.screen.listing
        assert keys.key_kind == "project" and keys.in_use_id == scoped.id


async def test_a_failed_old_key_revoke_is_shown_as_still_live_and_the_app_keeps_the_new_key(tmp_path, memory_keyring):
    sim = make_sim()
    old = sim.api_key
    old_id = sim.account.key_by_secret(old).id
    app = make_app(sim, tmp_path)
    app.client_factory = factory(sim)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_keys(app, pilot)
        sim.fail_next("DELETE /api_keys/{key_id}", "500", times=20)
        await pilot.press("R")
        await settle(app, pilot)
        await pilot.press(*str(old_id), "enter")
        await settle(app, pilot)
        await pilot.press(*"rotate", "enter")
        await settle(app, pilot)
        assert "STILL LIVE" in screen_text(app)
        new = memory_keyring.entries[("neon-tui", "NEON_API_KEY")]
        assert new != old and not sim.account.keys[old_id].revoked
        assert (await app.client.get_auth()).account_id == sim.inspect.user_id
        assert app.client.history[-1].status == 200 and sim.account.key_by_secret(new).id == sim.requests[-1].key_id


async def test_R_resumes_an_interrupted_hand_off_and_the_app_runs_on_the_key_put_back(tmp_path, memory_keyring,
                                                                                       monkeypatch):
    import neon_tui.incident.keys as keys_mod
    from ui_helpers import MEMORY_KEYRING

    from neon_tui.incident.keys import KeyringKeySink, KeyRotation
    from neon_tui.neon.secret import Secret

    sim = make_sim()
    old = sim.api_key
    old_id = sim.account.key_by_secret(old).id
    memory_keyring.entries[("neon-tui", "NEON_API_KEY")] = old

    class Crash(BaseException):
        pass

    def crash(step):
        if step == "after_store":
            raise Crash()
    monkeypatch.setattr(keys_mod, "_test_hook", crash)
    c = factory(sim)(Secret(old))
    rot = KeyRotation(c, old_key=Secret(old), sink=KeyringKeySink(allow=(MEMORY_KEYRING,)),
                      client_factory=factory(sim), host=IN_PROCESS, key_source="keyring", old_key_id=old_id)
    with pytest.raises(Crash):  # the hand-off is interrupted right after it stored the new key
        await rot.run()
    await c.aclose()
    monkeypatch.setattr(keys_mod, "_test_hook", lambda step: None)
    half = memory_keyring.entries[("neon-tui", "NEON_API_KEY")]
    assert half != old  # the crash left the half-made key where neon-tui reads its key
    app = make_app(sim, tmp_path)
    app.client = factory(sim)(half)  # as the app would start: on the key in the keyring
    app.key_source, app.api_key = "keyring", Secret(half)
    app.client_factory = factory(sim)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_keys(app, pilot)
        assert "An interrupted key hand-off exists" in screen_text(app)
        await pilot.press("R")
        await settle(app, pilot)
        await pilot.press("y")
        await settle(app, pilot)
        assert memory_keyring.entries[("neon-tui", "NEON_API_KEY")] == old
        assert sim.account.key_by_secret(half).revoked and not sim.account.keys[old_id].revoked
        assert app.inventory.client is app.client and (await app.client.get_auth()).account_id == sim.inspect.user_id
        assert app.client.history[-1].status == 200 and sim.requests[-1].key_id == old_id
        assert "the old key is still the one in use" in screen_text(app)



async def test_the_demo_app_keeps_a_rotated_key_in_memory_not_in_the_keyring(tmp_path, memory_keyring, monkeypatch):
    """`neon-tui --demo` (neon_tui.app.make_app): rotating the simulated key from the keys view leaves the
    user's keyring entry untouched and the app runs on the new key."""
    from neon_tui.app import make_app as real_make_app

    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(tmp_path))
    memory_keyring.entries[("neon-tui", "NEON_API_KEY")] = "napi_the_users_real_key"
    app = real_make_app(demo=True, env={})
    sim = app.simulator
    old_id = sim.account.key_by_secret(sim.api_key).id
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await settle(app, pilot)
            await open_keys(app, pilot)
            await pilot.press("R")
            await settle(app, pilot)
            await pilot.press(*str(old_id), "enter")
            await settle(app, pilot)
            assert "memory (demo: never your keyring)" in screen_text(app)
            await pilot.press(*"rotate", "enter")
            await settle(app, pilot)
            assert sim.account.keys[old_id].revoked
            live = [k for k in sim.account.keys.values() if not k.revoked and k.name.startswith("neon-tui-")]
            assert len(live) == 1
            assert (await app.client.get_auth()).account_id == sim.inspect.user_id
    finally:
        backend = getattr(app, "demo_postgres", None)
        if backend is not None:
            backend.close()
    assert memory_keyring.entries == {("neon-tui", "NEON_API_KEY"): "napi_the_users_real_key"}
