"""The IP allow view (I) with the pilot: rows and flags, edit -> review -> apply with the operations waited
for, the typed confirmation before excluding your own address, the paid-plan refusal, r journals."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input
from ui_helpers import IN_PROCESS, make_app, make_sim, screen_text, settle

from neon_tui.incident.actions import actions_dir, create_action_journal, list_action_journals, read_action_journal
from neon_tui.screens.ipallow import IpAllowEditModal, IpAllowReviewModal, IpAllowScreen
from neon_tui.screens.main import MainScreen
from neon_tui.screens.modals import ErrorModal


async def _open(app, pilot):
    await settle(app, pilot)
    await pilot.press("I")
    await settle(app, pilot)
    assert type(app.screen) is IpAllowScreen
    return app.screen


async def _edit(app, pilot, screen, project_id, text, protected=None):
    table = screen.query_one(DataTable)
    table.move_cursor(row=table.get_row_index(project_id))
    await pilot.pause()
    await pilot.press("e")
    await settle(app, pilot)
    assert type(app.screen) is IpAllowEditModal
    app.screen.query_one("#ipa-ips", Input).value = text
    if protected is not None:
        app.screen.query_one("#ipa-protected").value = protected
    await pilot.press("enter")
    await settle(app, pilot)


async def _wait_state(app, pilot, screen, pid, prefix):
    for _ in range(200):
        await settle(app, pilot)
        if screen.states.get(pid, "").startswith(prefix):
            return
    raise AssertionError(f"state of {pid}: {screen.states.get(pid)!r}")


@pytest.mark.slow
async def test_rows_flags_and_the_exposure_gap(tmp_path):
    sim = make_sim()
    prod = sim.inspect.project_by_name("acme-prod")
    staging = sim.inspect.branch_by_name(prod.id, "staging").id
    j = create_action_journal("exposure", host=IN_PROCESS, account=sim.inspect.user_id, directory=actions_dir())
    j.write("exposure_scanned", source="paste", exposed=[[prod.id, staging, "app"]], unchecked=[], counts={})
    j.close()
    # Newer scans of another API host and of another account on this host are not this account's business.
    import time

    time.sleep(1.05)  # journal names carry the second: these are the newest
    for host, account in (("https://other.example/api/v2", sim.inspect.user_id), (IN_PROCESS, "another-account")):
        other = create_action_journal("exposure", host=host, account=account, directory=actions_dir())
        other.write("exposure_scanned", source="paste", exposed=[], unchecked=[], counts={})
        other.close()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(160, 44)) as pilot:
        screen = await _open(app, pilot)
        table = screen.query_one(DataTable)
        assert table.row_count == 8
        row = table.get_row(prod.id)
        assert row[0] == "acme-prod" and row[3] == "protected only"
        assert row[1].startswith("exposed unprotected branch")
        blog = sim.inspect.project_by_name("blog").id
        assert table.get_row(blog)[4] == "free (no IP allow)" and table.get_row(blog)[1].startswith("open to all")
        text = screen_text(app)
        assert "8 projects, 7 flagged" in text and f"exposure journal {j.path.stem} (1 exposed)" in text
        table.move_cursor(row=table.get_row_index(prod.id))
        await settle(app, pilot)
        assert f"unprotected branch staging ({staging}) still holds an exposed password (app)" in screen_text(app)
        await pilot.press("r")
        await settle(app, pilot)
        assert "Reviewed (journaled)" in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
    (path,) = list_action_journals("ipallow")
    assert len(read_action_journal(path).events("ipallow_reviewed")) == 8


@pytest.mark.slow
async def test_edit_review_apply_and_the_own_address_guard(tmp_path):
    sim = make_sim(op_seconds=0.3)
    ml = sim.inspect.project_by_name("acme-ml-features")
    analytics = sim.inspect.project_by_name("acme-analytics")
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(160, 44)) as pilot:
        screen = await _open(app, pilot)
        await _edit(app, pilot, screen, ml.id, "203.0.113.0/24, 127.0.0.1", protected=True)
        assert type(app.screen) is IpAllowReviewModal
        text = screen_text(app)
        assert "+ 203.0.113.0/24, 127.0.0.1" in text and "your address: 127.0.0.1" in text
        await pilot.press("a")
        await _wait_state(app, pilot, screen, ml.id, "applied")
        assert ml.allowed_ips == ["203.0.113.0/24", "127.0.0.1"] and ml.protected_branches_only is True
        assert screen.query_one(DataTable).get_row(ml.id)[3] == "protected only"
        # Dropping 127.0.0.1 (where the key was used from) needs the project's name typed: "a" does nothing.
        await _edit(app, pilot, screen, analytics.id, "198.51.100.0/24")
        assert "YOUR ADDRESS 127.0.0.1 would be excluded" in screen_text(app)
        await pilot.press("a")
        await settle(app, pilot)
        assert type(app.screen) is IpAllowReviewModal and "127.0.0.1" in analytics.allowed_ips
        app.screen.query_one("#ipa-typed", Input).value = "acme-analytics"
        await pilot.press("enter")
        await _wait_state(app, pilot, screen, analytics.id, "applied")
        assert analytics.allowed_ips == ["198.51.100.0/24"]
    events = [r["event"] for r in read_action_journal(list_action_journals("ipallow")[0]).records]
    assert events == ["ipallow_changed", "ipallow_applied", "ipallow_changed", "ipallow_applied"]


@pytest.mark.slow
async def test_opening_a_project_to_every_address_needs_its_name_typed(tmp_path):
    sim = make_sim(op_seconds=0.05)
    ml = sim.inspect.project_by_name("acme-ml-features")
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(160, 44)) as pilot:
        screen = await _open(app, pilot)
        await _edit(app, pilot, screen, ml.id, "0.0.0.0/1, 128.0.0.0/1, 127.0.0.1")
        assert type(app.screen) is IpAllowReviewModal
        assert "cover every IPv4 address" in screen_text(app)
        await pilot.press("a")
        await settle(app, pilot)
        assert type(app.screen) is IpAllowReviewModal and ml.allowed_ips != ["0.0.0.0/1", "128.0.0.0/1",
                                                                                      "127.0.0.1"]
        app.screen.query_one("#ipa-typed", Input).value = "acme-ml-features"
        await pilot.press("enter")
        await _wait_state(app, pilot, screen, ml.id, "applied")
        assert ml.allowed_ips == ["0.0.0.0/1", "128.0.0.0/1", "127.0.0.1"]


@pytest.mark.slow
async def test_a_list_changed_elsewhere_is_shown_and_never_overwritten_unseen(tmp_path):
    sim = make_sim(op_seconds=0.05)
    ml = sim.inspect.project_by_name("acme-ml-features")
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(160, 44)) as pilot:
        screen = await _open(app, pilot)
        ml.allowed_ips = ["198.51.100.7"]  # someone else changes it after the view read it
        await _edit(app, pilot, screen, ml.id, "203.0.113.0/24, 127.0.0.1")
        assert type(app.screen) is IpAllowReviewModal
        text = screen_text(app)
        assert "now:   198.51.100.7 (all branches)" in text and "the list changed since this view read it" in text
        assert "- 198.51.100.7" in text
        ml.allowed_ips = ["198.51.100.8"]  # and again while the review is open
        await pilot.press("a")
        for _ in range(100):
            await settle(app, pilot)
            if type(app.screen) is ErrorModal:
                break
        assert type(app.screen) is ErrorModal and app.screen.title_text == "IP allow changed meanwhile"
        assert "now:  198.51.100.8" in app.screen.message
        assert ml.allowed_ips == ["198.51.100.8"]
        assert screen.states[ml.id] == "changed elsewhere"


@pytest.mark.slow
async def test_paid_plan_refusal_and_invalid_entries(tmp_path):
    sim = make_sim()
    blog = sim.inspect.project_by_name("blog")
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(160, 44)) as pilot:
        screen = await _open(app, pilot)
        await _edit(app, pilot, screen, blog.id, "10.0.0.300")
        assert type(app.screen) is ErrorModal and "'10.0.0.300': not an IP address" in screen_text(app)
        await pilot.press("escape")
        await _edit(app, pilot, screen, blog.id, "203.0.113.0/24, 127.0.0.1")
        assert type(app.screen) is IpAllowReviewModal
        assert "this organization is on the free plan" in " ".join(screen_text(app).split())
        await pilot.press("a")
        await _wait_state(app, pilot, screen, blog.id, "failed")
        assert type(app.screen) is ErrorModal
        assert "IP Allow needs a paid plan (Scale)" in screen_text(app) and blog.allowed_ips == []


async def test_read_only_refuses_edits(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path, read_only=True)
    async with app.run_test(size=(160, 44)) as pilot:
        await _open(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        assert type(app.screen) is IpAllowScreen
        notes = [(str(n.message), n.severity) for n in app.notices]
        assert ("Read-only session: IP allow lists cannot be changed.", "warning") in notes
