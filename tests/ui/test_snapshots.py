"""Snapshot tests of each screen at 80x24 (the smallest terminal the app supports). Nothing secret is on them."""

from __future__ import annotations

import pytest
from ui_helpers import make_app, make_sim, mark_role, settle, wait_run

SIZE = (80, 24)


@pytest.fixture
def app(tmp_path):
    return make_app(make_sim(), tmp_path)


async def _loaded(pilot):
    await settle(pilot.app, pilot)


async def _marked(pilot):
    await mark_role(pilot.app, pilot, "staging", "app")


async def _review(pilot):
    await _marked(pilot)
    await pilot.press("r")
    await settle(pilot.app, pilot)


async def _finished_run(pilot):
    await _review(pilot)
    await pilot.press("y")
    await wait_run(pilot.app, pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


def test_main_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_loaded)


def test_main_screen_filtered_and_marked(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_marked)


@pytest.mark.slow
def test_review_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_review)


@pytest.mark.slow
def test_run_screen_finished_masked(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_finished_run)


def test_help(snap_compare, app, monkeypatch):
    # the help names the settings file (here: where NEON_TUI_CONFIG points, the same on every machine)
    monkeypatch.setenv("NEON_TUI_CONFIG", "/etc/neon-tui/config.toml")

    async def run_before(pilot):
        await _loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_api_key_prompt(snap_compare, tmp_path, monkeypatch):
    from ui_helpers import IN_PROCESS, NOW

    from neon_tui.app import NeonApp
    from neon_tui.neon import NeonClient

    import itertools
    import uuid

    counter = itertools.count()
    monkeypatch.setattr("neon_tui.neon.client.uuid.uuid4",
                        lambda: uuid.UUID(int=next(counter)))  # request ids show in the message
    sim = make_sim()
    app = NeonApp(client_factory=lambda key: NeonClient(key, host=IN_PROCESS, transport=sim.transport()),
                  env={"NEON_API_KEY": "napi_wrong"}, now=lambda: NOW, offer_resume=False)

    async def run_before(pilot):
        await settle(pilot.app, pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
