"""Getting started and failure: key from env, keyring or a masked prompt; bad keys; unreachable API; resume."""

from __future__ import annotations

import re
import socket
import time

import pytest
from ui_helpers import IN_PROCESS, MEMORY_KEYRING, NOW, make_sim, screen_text, settle, until, wait_run

from neon_tui.app import NeonApp
from neon_tui.clipboard import Clipboard
from neon_tui.config import Settings
from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import Journal
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.screens.main import MainScreen
from neon_tui.screens.modals import ApiKeyModal, ErrorModal, ResumeModal
from neon_tui.screens.review import ReviewScreen
from neon_tui.screens.run import RunScreen
from neon_tui.screens.connect import ConnectScreen, normalize_host

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


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def unreachable_app(port: int, retry: RetryPolicy, **kw) -> NeonApp:
    """The app on a loopback port nobody listens on (a typed host, h, gets the same retry policy)."""
    return NeonApp(client_factory=lambda key, host=None: NeonClient(
        key, host=host or f"http://127.0.0.1:{port}/api/v2", retry=retry),
        env={"NEON_API_KEY": "napi_x"}, now=lambda: NOW, offer_resume=False, **kw)


async def wait_for(pilot, predicate, timeout: float = 30.0) -> None:
    await until(pilot, predicate, timeout=timeout, what="the start-up screen", step=0.05)


SLOW = RetryPolicy(max_attempts=5, base_delay=8.0, max_delay=8.0)  # waits of 4-8 s: time to look and press keys


async def test_unreachable_api_shows_host_attempts_error_and_countdown(tmp_path):
    port = free_port()
    app = unreachable_app(port, SLOW)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.retry_at is not None)
        text = screen_text(app)
        assert f"http://127.0.0.1:{port}/api/v2" in text
        assert "attempt  1 of 5" in text
        assert "could not reach the Neon API (ConnectError)" in text and "Traceback" not in text
        assert "request" not in text  # no answer, so no Neon request id to quote: the error fits one line
        assert re.search(r"next     retry in [4-8]s", text), text
        assert "q (or ctrl+q) quits at any time" in text


async def test_q_quits_during_the_retries(tmp_path):
    app = unreachable_app(free_port(), SLOW)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.retry_at is not None)
        started = time.monotonic()
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, timeout=3)
    assert time.monotonic() - started < 3  # not after the next attempt


async def test_ctrl_q_quits_during_the_retries(tmp_path):
    app = unreachable_app(free_port(), SLOW)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.retry_at is not None)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None, timeout=3)


async def test_gives_up_after_the_attempts_and_r_tries_again(tmp_path):
    port = free_port()
    made: list[NeonClient] = []

    def factory(key):
        made.append(NeonClient(key, host=f"http://127.0.0.1:{port}/api/v2", retry=FAST))
        return made[-1]

    app = NeonApp(client_factory=factory, env={"NEON_API_KEY": "napi_x"}, now=lambda: NOW, offer_resume=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.waiting_for_user)
        text = screen_text(app)
        assert "Could not connect after 2 attempt(s)." in text and "attempt  2 of 2" in text
        assert "r tries again · h changes the API host · q quits" in text
        assert len(made) == 1 and made[0].requests_sent == 2  # one attempt is one request: no hidden retries
        await pilot.press("r")
        await wait_for(pilot, lambda: len(made) == 2 and made[1].requests_sent == 2 and app.screen.waiting_for_user)
        assert isinstance(app.screen, ConnectScreen) and app.client is None


async def test_connects_when_a_served_simulator_comes_up_on_that_port(tmp_path):
    from neon_tui.simulator.serve import serve_in_thread

    port = free_port()
    sim = make_sim()
    app = NeonApp(client_factory=lambda key: NeonClient(key, host=f"http://127.0.0.1:{port}/api/v2",
                                                        retry=RetryPolicy(max_attempts=40, base_delay=0.3,
                                                                          max_delay=0.3)),
                  env={"NEON_API_KEY": sim.api_key}, now=lambda: NOW, offer_resume=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.attempt >= 2)
        assert "could not reach" in screen_text(app)
        with serve_in_thread(sim, port=port) as url:
            assert url == f"http://127.0.0.1:{port}/api/v2"
            await wait_for(pilot, lambda: type(app.screen) is MainScreen)
            await settle(app, pilot)
            assert app.client is not None and app.client.base_url == url
            assert app.client.retry.max_attempts == 40  # the client's own retries are back on
            assert f"127.0.0.1:{port}" in app.sub_title and "personal key" in app.sub_title
            await pilot.press("q")


@pytest.mark.slow
async def test_h_changes_the_host_validated_then_connects(tmp_path):
    from neon_tui.simulator.serve import serve_in_thread

    sim = make_sim()
    app = NeonApp(client_factory=lambda key, host=None: NeonClient(
        key, host=host or f"http://127.0.0.1:{free_port()}/api/v2", retry=SLOW),
        env={"NEON_API_KEY": sim.api_key}, now=lambda: NOW, offer_resume=False)
    with serve_in_thread(sim) as url:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.retry_at is not None)
            await pilot.press("h")
            field = app.screen.query_one("#connect-host-input")
            assert field.has_focus
            field.value = ""
            # plain http off loopback is refused, as everywhere in the app; nothing is tried
            await pilot.press(*"http://example.com/api/v2", "enter")
            problem = str(app.screen.query_one("#connect-host-problem").render())
            assert "plain http" in problem and "example.com" in problem
            assert app.api_host is None
            field.value = ""
            await pilot.press(*url, "enter")
            await wait_for(pilot, lambda: type(app.screen) is MainScreen)
            assert app.client.base_url == url and app.api_host == url


def test_typed_host_gets_https_and_the_api_path():
    assert normalize_host("console.neon.tech") == "https://console.neon.tech/api/v2"
    assert normalize_host(" https://api.example.com/api/v2/ ") == "https://api.example.com/api/v2"
    assert normalize_host("http://127.0.0.1:8123") == "http://127.0.0.1:8123/api/v2"
    for bad, why in [("http://10.0.0.5/api/v2", "plain http"), ("", "type an API host"),
                     ("https://a b", "whitespace"), ("ftp://x/api", "http(s) URL")]:
        with pytest.raises(ValueError) as e:
            normalize_host(bad)
        assert why in str(e.value) and "NEON_API_HOST" not in str(e.value)


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


async def _interrupted_run(sim, client) -> None:
    """A run stopped mid-reset: its journal (host = the client's) has not ended."""
    inv = Inventory(client)
    plan = await plan_from_selectors(inv, ["acme-prod/staging"], sim.inspect.org_of(
        sim.inspect.project_by_name("acme-prod").id))
    from neon_tui.rotation.engine import RotationEngine
    from neon_tui.rotation.events import TargetChanged

    engine = RotationEngine(client, journal=Journal.create(), first_poll=0.02, poll_min=0.01)
    async for ev in engine.run(plan):
        if isinstance(ev, TargetChanged) and ev.state == "resetting":
            engine.cancel()
    engine.journal.close()


async def test_demo_never_offers_a_journal_for_resume(tmp_path, monkeypatch):
    from neon_tui.incident.journals import DEMO_HOST
    from neon_tui.rotation.journal import find_unfinished

    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(tmp_path / "state"))
    old_demo = make_sim()
    await _interrupted_run(old_demo, NeonClient(old_demo.api_key, host=DEMO_HOST, transport=old_demo.transport(),
                                                retry=FAST))
    fresh = make_sim()  # a new demo: the same simulated account id, other state
    assert find_unfinished(DEMO_HOST, None).state is not None  # there is one to (wrongly) offer
    app = NeonApp(client=NeonClient(fresh.api_key, host=DEMO_HOST, transport=fresh.transport(), retry=FAST),
                  demo=True, now=lambda: NOW, offer_resume=True)
    app.clip = Clipboard("osc52", osc52=app.copy_to_clipboard, env={})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
        assert not [s for s in app.screen_stack if type(s) is ResumeModal]
    # and a real account (another host) is not offered the demo's journal either
    real = NeonApp(client=NeonClient(fresh.api_key, host="https://console.neon.tech/api/v2",
                                     transport=fresh.transport(), retry=FAST), now=lambda: NOW, offer_resume=True)
    real.clip = Clipboard("osc52", osc52=real.copy_to_clipboard, env={})
    async with real.run_test(size=(100, 30)) as pilot:
        await settle(real, pilot)
        assert type(real.screen) is MainScreen


@pytest.mark.slow
async def test_read_only_enter_on_the_review_says_why_nothing_starts(tmp_path):
    from ui_helpers import make_app, mark_role

    from neon_tui.screens.main import MainScreen
    from neon_tui.widgets.org_tree import OrgTree

    sim = make_sim()
    app = make_app(sim, tmp_path, read_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await mark_role(app, pilot, "staging", "app")
        await pilot.press("r")
        await settle(app, pilot)
        assert type(app.screen) is ReviewScreen
        assert "Start rotation" not in screen_text(app)  # not offered…
        await pilot.press("enter")  # …but enter says why, instead of nothing
        await settle(app, pilot)
        said = [n.message for n in app.notices]
        assert any(m.startswith("read-only: nothing is reset here.") for m in said), said
        copy = [b for cls in (MainScreen, OrgTree) for _, b in cls._merge_bindings() if b.action == "copy_command"]
        expected = f"Press {app.get_key_display(copy[0])}" if copy else "Run `neon-tui rotate`"
        assert any(expected in m for m in said), said
    assert not [r for r in sim.inspect.requests if r.method != "GET"]


async def test_every_settings_problem_is_a_notification_at_start_up(tmp_path, monkeypatch):
    from neon_tui.app import make_app as make_cli_app

    path = tmp_path / "config.toml"
    path.write_text('[clipboard]\nclear_after = nan\nmode = "sometimes"\n[keymap]\nmarc = "z"\nquit = "r"\n',
                    encoding="utf-8")
    monkeypatch.setenv("NEON_TUI_CONFIG", str(path))
    monkeypatch.delenv("NEON_TUI_CLIPBOARD", raising=False)
    app = make_cli_app(env={"NEON_API_KEY": "napi_x", "NEON_API_HOST": f"http://127.0.0.1:{free_port()}/api/v2"})
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen))
        said = "\n".join(n.message for n in app.notices if n.title == "Settings")
        for key in ("clipboard.mode", "clipboard.clear_after", "keymap.marc: no binding has this id",
                    'keymap.quit = "r": r is already review'):
            assert key in said, said
        await pilot.press("q")


@pytest.mark.slow
async def test_a_refused_api_host_is_said_and_h_fixes_it(tmp_path, monkeypatch):
    from neon_tui.app import make_app as make_cli_app
    from neon_tui.simulator.serve import serve_in_thread

    monkeypatch.setenv("NEON_TUI_CONFIG", str(tmp_path / "none.toml"))
    sim = make_sim()
    app = make_cli_app(env={"NEON_API_KEY": sim.api_key, "NEON_API_HOST": "http://neon.example.com/api/v2"})
    with serve_in_thread(sim) as url:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.waiting_for_user)
            text = screen_text(app)
            assert "Insecure API host: press h to type another host" in text
            assert "host     http://neon.example.com/api/v2" in text and "error    refusing to send" in text
            assert "plain http to neon.example.com" in app.screen.error  # on screen cut to one line
            assert not sim.inspect.requests  # nothing was sent anywhere
            await pilot.press("h")
            app.screen.query_one("#connect-host-input").value = ""
            await pilot.press(*url.removesuffix("/api/v2"), "enter")  # the API path is added
            await wait_for(pilot, lambda: type(app.screen) is MainScreen)
            assert app.client.base_url == url
            await pilot.press("q")
