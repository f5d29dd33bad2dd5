"""The UI test helpers fail loudly: a helper that waits must not let a test pass when what it waits for never came."""

from __future__ import annotations

import pytest
from ui_helpers import make_app, make_sim, review_staging_app, wait_run

from neon_tui.screens.run import RunScreen


async def test_wait_run_fails_when_the_run_does_not_finish_in_time(tmp_path):
    sim = make_sim(op_seconds=60)  # the reset's operations outlast the wait by far
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await review_staging_app(app, pilot)
        await pilot.press("y")
        await pilot.pause()
        assert type(app.screen) is RunScreen
        with pytest.raises(AssertionError, match=r"the run did not finish within 0\.5s"):
            await wait_run(app, pilot, timeout=0.5)
        assert app.screen.session.running
        app.screen.session.abort()
