"""The UI test helpers fail loudly: a helper that waits must not let a test pass when what it waits for never came."""

from __future__ import annotations

import time

import pytest
from ui_helpers import make_app, make_sim, settle, until, wait_run

from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.screens.run import RunScreen


async def test_wait_run_fails_when_the_run_does_not_finish_in_time(tmp_path):
    sim = make_sim(op_seconds=60)  # the reset's operations outlast the wait by far
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        org = sim.inspect.org_of(sim.inspect.project_by_name("acme-prod").id)
        app.start_run(await plan_from_selectors(Inventory(app.client), ["acme-prod/staging/app"], org))
        await until(pilot, lambda: type(app.screen) is RunScreen, what="the run screen")
        with pytest.raises(AssertionError, match=r"the run did not finish within 0\.5s"):
            await wait_run(app, pilot, timeout=0.5)
        assert app.screen.session.running  # it was still going: the helper did not give up early
        app.screen.session.abort()


async def test_until_fails_after_its_deadline_and_returns_as_soon_as_the_condition_holds(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        started = time.monotonic()
        with pytest.raises(AssertionError, match=r"timed out after 0\.3s waiting for the impossible"):
            await until(pilot, lambda: False, timeout=0.3, what="the impossible")
        assert time.monotonic() - started >= 0.3
        with pytest.raises(AssertionError, match=r"waiting for 7 things"):
            await until(pilot, lambda: False, timeout=0.1, what=lambda: f"{3 + 4} things")  # said at the deadline
        calls = []
        await until(pilot, lambda: calls.append(1) or len(calls) >= 3, timeout=30)
        assert len(calls) == 3  # asked again after each pause, and not once more after it held
