"""At 80x24 (a laptop's tmux split) nothing essential of a dialog is cut off: every button is on screen."""

from __future__ import annotations

import pytest
from textual.widgets import Button
from ui_helpers import make_app, make_sim, review_staging_app, settle

from neon_tui.screens.modals import DeliveryModal, LeakModal


def _cut_buttons(app) -> list[str]:
    screen = app.screen.region
    return [str(b.label) for b in app.screen.query(Button)
            if b.display and not screen.contains_region(b.region)]


@pytest.mark.slow
async def test_the_leak_dialog_and_the_delivery_dialog_fit_80x24(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    app.simulator = sim  # the demo's sample leak button is offered
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("L")
        await settle(app, pilot)
        assert isinstance(app.screen, LeakModal)
        assert {str(b.label) for b in app.screen.query(Button)} == {"Scan", "Demo's sample leak", "Back"}
        assert _cut_buttons(app) == []
        await pilot.click("#sample")  # reachable by a click, as a user would
        await settle(app, pilot)
        assert not isinstance(app.screen, LeakModal)
        await review_staging_app(app, pilot)
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, DeliveryModal)
        assert app.screen.query(Button) and _cut_buttons(app) == []
