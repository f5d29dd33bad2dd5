"""Getting started and failure: key from env, keyring or a masked prompt; bad keys; unreachable API; resume."""

from __future__ import annotations

import socket

import pytest
from ui_helpers import IN_PROCESS, MEMORY_KEYRING, NOW, make_sim, screen_text, settle, wait_run

from neon_tui.app import NeonApp
from neon_tui.clipboard import Clipboard
from neon_tui.config import Settings
from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import Journal
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.screens.main import MainScreen
from neon_tui.screens.modals import ApiKeyModal, ErrorModal, ResumeModal
from neon_tui.screens.run import RunScreen

FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


def app_for(sim, env, **kw):
    kw.setdefault("settings", Settings(keyring_allow=(MEMORY_KEYRING,)))  # the memory_keyring fixture's backend
    app = NeonApp(client_factory=lambda key: NeonClient(key, host=IN_PROCESS, transport=sim.transport(), retry=FAST),
                  env=env, now=lambda: NOW, offer_resume=kw.pop("offer_resume", False), **kw)
    app.clip = Clipboard("osc52", osc52=app.copy_to_clipboard, env={})
    return app


async def test_key_from_env(tmp_path):
    sim = make_sim()
    app = app_for(sim, {"NEON_API_KEY": sim.api_key})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is MainScreen


@pytest.mark.slow
async def test_bad_key_gets_a_clear_message_and_a_new_prompt(tmp_path, memory_keyring):
    sim = make_sim()
    app = app_for(sim, {"NEON_API_KEY": "napi_definitely_wrong_key_123"})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is ApiKeyModal
        text = screen_text(app)
        assert "API key rejected" in text and "napi_definitely_wrong_key_123" not in text
        # the masked prompt: typing the right key (and saving it) gets in
        await pilot.press(*sim.api_key)
        assert sim.api_key not in screen_text(app)
        await pilot.click("#save")
        await pilot.click("#ok")
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
    assert memory_keyring.entries[("neon-tui", "NEON_API_KEY")] == sim.api_key


async def test_key_from_keyring(tmp_path, memory_keyring):
    sim = make_sim()
    memory_keyring.entries[("neon-tui", "NEON_API_KEY")] = sim.api_key
    app = app_for(sim, {})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is MainScreen


async def test_revoked_key_is_a_message_not_a_traceback(tmp_path):
    sim = make_sim()
    sim.inspect.revoke_key(sim.api_key)
    app = app_for(sim, {"NEON_API_KEY": sim.api_key})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is ApiKeyModal
        assert "HTTP 401" in screen_text(app)


async def test_unreachable_api_is_a_message(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    app = NeonApp(client_factory=lambda key: NeonClient(key, host=f"http://127.0.0.1:{port}/api/v2", retry=FAST),
                  env={"NEON_API_KEY": "napi_x"}, now=lambda: NOW, offer_resume=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is ErrorModal
        text = screen_text(app)
        assert "could not reach" in text and "Traceback" not in text


async def test_api_error_mid_session_is_a_modal(tmp_path):
    from ui_helpers import make_app

    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        sim.inspect.revoke_key(sim.api_key)
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert type(app.screen) is ErrorModal
        assert "HTTP 401" in screen_text(app)


@pytest.mark.slow
async def test_offers_to_resume_an_interrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(tmp_path / "state"))
    sim = make_sim()
    client = NeonClient(sim.api_key, host=IN_PROCESS, transport=sim.transport(), retry=FAST)
    inv = Inventory(client)
    plan = await plan_from_selectors(inv, ["acme-prod/staging"], sim.inspect.org_of(
        sim.inspect.project_by_name("acme-prod").id))
    from neon_tui.rotation.engine import RotationEngine
    from neon_tui.rotation.events import TargetChanged

    engine = RotationEngine(client, journal=Journal.create(), first_poll=0.02, poll_min=0.01)
    async for ev in engine.run(plan):
        if isinstance(ev, TargetChanged) and ev.state == "rotated":
            engine.cancel()  # one target done, the rest never started: a run to resume, not to redo
    engine.journal.close()
    done = [k for k, s in engine.states.items() if s == "rotated"]
    assert done and "cancelled" in engine.states.values()
    assert all(sim.inspect.reset_count(*k) == 1 for k in done)
    app = NeonApp(client=NeonClient(sim.api_key, host=IN_PROCESS, transport=sim.transport(), retry=FAST),
                  now=lambda: NOW, offer_resume=True)
    app.clip = Clipboard("osc52", osc52=app.copy_to_clipboard, env={})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is ResumeModal
        await pilot.press("y")
        await settle(app, pilot)
        await wait_run(app, pilot)
        assert type(app.screen) is RunScreen
        assert set(app.screen.states.values()) == {"rotated"}
        assert app.session.journal_path == engine.journal.path  # the interrupted run's journal, continued
    for t in plan.targets:
        assert sim.inspect.reset_count(*t.key) == 1  # what the first run rotated was not reset again
