"""Findings of issue 11's adversarial review, each a test that failed before its fix: the review's `a` raced by
enter, the marks `a` adds outside undo, and credentials written into NEON_API_HOST reaching the screen."""

from __future__ import annotations

import pytest

from textual import events
from ui_helpers import make_app, make_sim, review_staging_app, settle, staging_ids, until

from neon_tui.screens.review import ReviewScreen


@pytest.mark.slow
async def test_a_then_enter_typed_ahead_does_not_silently_drop_the_flagged_copies(tmp_path):
    """`a` and enter arriving in one terminal read: `a` starts the widening worker, enter starts the run on the
    narrow plan, switching the review away, which cancels the worker. No notice, no widened review: the
    flagged copies (same leaked password) are silently left out of the run the user believes covers them."""
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, staging = staging_ids(sim)
    async with app.run_test(size=(100, 30)) as pilot:
        await review_staging_app(app, pilot)
        review = app.screen
        assert isinstance(review, ReviewScreen) and review.flagged_keys()
        flagged = set(review.flagged_keys())
        app.post_message(events.Key("a", "a"))  # one terminal read: both keys queued before either is handled
        app.post_message(events.Key("enter", "\r"))
        await settle(app, pilot)
        await pilot.pause(0.2)
        await settle(app, pilot)
        # enter did not start the narrow plan: it said why, and the widened review is on screen to confirm
        assert app.session is None
        assert any("Adding the flagged copies" in n.message for n in app.notices), app.notices
        assert isinstance(app.screen, ReviewScreen) and app.screen is not review
        assert flagged <= {t.key for t in app.screen.plan.targets}
        await pilot.press("enter")  # now it starts, on the widened plan
        await settle(app, pilot)
        assert app.session is not None and flagged <= {v.target.key for v in app.session.views()}


@pytest.mark.slow
async def test_a_then_start_in_one_callback_starts_nothing(tmp_path):
    """The same race with both actions in one callback (it used to start the narrow run and crash the app)."""
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await review_staging_app(app, pilot)
        review = app.screen
        review.action_add_flagged()
        review.action_start()
        await settle(app, pilot)
        assert app.session is None and isinstance(app.screen, ReviewScreen)


async def test_credentials_in_neon_api_host_never_reach_the_screen(tmp_path, monkeypatch):
    """NEON_API_HOST with user:password is refused (nothing sent), and neither the start-up screen's host line,
    the header, a screenshot nor the host field that h pre-fills shows the password."""
    import html

    from neon_tui.app import make_app as make_cli_app
    from neon_tui.screens.connect import ConnectScreen

    monkeypatch.setenv("NEON_TUI_CONFIG", str(tmp_path / "none.toml"))
    app = make_cli_app(env={"NEON_API_KEY": "napi_x", "NEON_API_HOST": "https://bob:Hunter2secret@neon.example.com/api/v2"})
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.waiting_for_user,
                    what="the start-up screen to wait for the user")
        shot = html.unescape(app.export_screenshot()).replace("\xa0", " ")
        header = " ".join(p[0] for p in app.header_parts())
        status = app.screen.status_text()
        await pilot.press("h")
        await pilot.pause()
        from textual.widgets import Input

        field = app.screen.query_one("#connect-host-input", Input).value
        assert "neon.example.com" in status and "neon.example.com" in field
        assert "Hunter2secret" not in field and "bob" not in field
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("q")
    leaks = [n for n, v in (("header", header), ("status", status), ("screenshot", shot)) if "Hunter2secret" in v]
    assert not leaks, (leaks, header, status)
    assert "Hunter2secret" not in status, status
    assert "Hunter2secret" not in shot


@pytest.mark.slow
async def test_marks_added_by_a_are_one_undo_step(tmp_path):
    """The copies `a` adds to the tree's marks are one undo step: U after leaving the widened review takes back
    exactly those, and the user's own mark stays."""
    from neon_tui.screens.main import MainScreen

    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, staging = staging_ids(sim)
    async with app.run_test(size=(100, 30)) as pilot:
        await review_staging_app(app, pilot)
        await pilot.press("a")
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        main = app.screen
        assert isinstance(main, MainScreen)
        assert len(main.tree.marks) == 3
        await pilot.press("U")
        await settle(app, pilot)
        left = set(main.tree.marks)
        assert left == {(pid, staging, "app")}, left


@pytest.mark.slow
async def test_escape_then_enter_typed_ahead_leaves_the_review_and_starts_nothing(tmp_path):
    """enter is a priority binding (the table would take it); a key typed before it must still act first."""
    from neon_tui.screens.main import MainScreen

    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await review_staging_app(app, pilot)
        assert isinstance(app.screen, ReviewScreen)
        app.post_message(events.Key("escape", None))
        app.post_message(events.Key("enter", "\r"))
        await settle(app, pilot)
        assert app.session is None
        assert isinstance(app.screen, MainScreen)
    assert not [r for r in sim.inspect.requests if r.method != "GET"]
