"""The review: unselected copies grouped by branch with the reason, `a` widening the plan, columns that fit."""

from __future__ import annotations

import pytest

from textual.widgets import DataTable, Static
from ui_helpers import footer_keys, make_app, make_sim, mark_role, review_staging_app, settle, staging_ids

from neon_tui.screens.main import MainScreen
from neon_tui.screens.review import ReviewScreen


@pytest.mark.slow
async def test_copies_are_grouped_by_branch_and_a_adds_the_flagged_ones(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, staging = staging_ids(sim)
    pr142 = sim.inspect.branch_by_name(pid, "preview/pr-142").id
    async with app.run_test(size=(80, 24)) as pilot:
        await review_staging_app(app, pilot)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        notes = str(review.query_one("#notes", Static).render())
        assert "! acme-prod/preview/pr-142: same password as staging" in notes
        assert "- acme-prod/main: its own password" in notes
        assert "inherited from its parent" not in notes
        assert notes.count("acme-prod/preview/pr-142") == 1  # said once
        assert "2 flagged" in str(review.query_one("#review-head", Static).render())
        assert footer_keys(app)["a"] == "Add flagged" and "esc" in footer_keys(app)
        table = review.query_one(DataTable)
        assert table.virtual_size.width <= table.size.width and not table.show_horizontal_scrollbar
        await pilot.press("a")
        await settle(app, pilot)
        widened = app.screen
        assert isinstance(widened, ReviewScreen) and widened is not review
        keys = {t.key for t in widened.plan.targets}
        assert {(pid, staging, "app"), (pid, pr142, "app")} <= keys and len(keys) == 3
        assert not widened.flagged_keys() and "a" not in footer_keys(app)
        assert app.session is None  # nothing starts without the user's confirmation
        main = next(s for s in app.screen_stack if isinstance(s, MainScreen))
        assert keys <= main.tree.marks
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, MainScreen)


@pytest.mark.slow
async def test_nothing_flagged_offers_no_add_key(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await mark_role(app, pilot, "main", "app")
        await pilot.press("r")
        await settle(app, pilot)
        review = app.screen
        assert isinstance(review, ReviewScreen) and review.plan.warnings and not review.flagged_keys()
        keys = footer_keys(app)
        assert "a" not in keys and "esc" in keys
        await pilot.press("a")
        await settle(app, pilot)
        assert app.screen is review and len(review.plan.targets) == 1
