"""What keeps an on-call engineer from losing or doubling work: one run at a time, no silent loss of new
passwords, marks cleared after a run, cancel and continue, enter on review, filtered marking."""

from __future__ import annotations

import pytest
from ui_helpers import make_app, make_sim, mark_role, review_staging_app, screen_text, settle, staging_ids, until, wait_run

from neon_tui.rotation.journal import read_journal
from neon_tui.screens.modals import YesNoModal
from neon_tui.widgets.org_tree import NodeRef
from neon_tui.screens.main import MainScreen
from neon_tui.screens.review import ReviewScreen
from neon_tui.screens.run import RunScreen

pytestmark = pytest.mark.slow  # every test here takes over ~2 s

JOURNAL = "run-20261127T030000Z-test.jsonl"


async def start_staging_app(app, pilot):
    await review_staging_app(app, pilot)
    await pilot.press("enter")  # enter starts, as y does, although the table has focus
    await pilot.pause()


async def test_only_one_run_at_a_time(tmp_path):
    sim = make_sim(op_seconds=0.3)
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    async with app.run_test(size=(100, 30)) as pilot:
        await start_staging_app(app, pilot)
        assert type(app.screen) is RunScreen
        main = next(s for s in app.screen_stack if type(s) is MainScreen)
        main.action_review()  # e.g. from the command palette while the run goes on
        await settle(app, pilot)
        assert sum(type(s) is RunScreen for s in app.screen_stack) == 1
        assert type(app.screen) is RunScreen
        await wait_run(app, pilot)
    assert sim.inspect.reset_count(pid, bid, "app") == 1


async def test_leaving_undelivered_results_asks_and_the_journal_waits_for_delivery(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    async with app.run_test(size=(100, 30)) as pilot:
        await start_staging_app(app, pilot)
        await wait_run(app, pilot)
        assert not read_journal(tmp_path / JOURNAL).ended  # rotated but nobody has the password yet
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, YesNoModal)
        assert "not been copied or stored" in screen_text(app)
        await pilot.press("n")
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, YesNoModal)  # q asks too
        await pilot.press("n")
        await pilot.pause()
        assert type(app.screen) is RunScreen
        await pilot.press("c")
        # delivered: the run is complete (its last record is written and fsync'd off the event loop)
        await until(pilot, lambda: read_journal(tmp_path / JOURNAL).ended, what="the journal's end record")
        assert sim.inspect.password(pid, bid, "app") in app.clipboard
        await pilot.press("escape")  # nothing left to lose: no question
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
        # what rotated is no longer marked, and its age was read again
        assert not app.screen.tree.marks
        info = app.inventory.projects[pid].branches[bid]
        role = next(r for r in info.roles if r.name == "app")
        live = await app.client.get_role(pid, bid, "app")
        assert role.updated_at == live.updated_at  # the tree shows the new age, not the leaked one
        await pilot.press("q")
        await pilot.pause()
    assert app.clipboard == ""  # cleared on the way out: it held our connection string


async def test_cancel_says_so_and_R_continues(tmp_path):
    sim = make_sim(op_seconds=0.2)
    app = make_app(sim, tmp_path)
    pid = sim.inspect.project_by_name("acme-prod").id
    async with app.run_test(size=(100, 30)) as pilot:
        await mark_role(app, pilot, "staging", "app")
        tree = app.screen.tree
        branch = NodeRef("branch", project_id=pid, branch_id=sim.inspect.branch_by_name(pid, "staging").id)
        tree.move_cursor(tree.node_for(branch))
        await pilot.pause()
        await pilot.press("space")  # the whole branch (app was already marked: partly -> all)
        await settle(app, pilot)
        await pilot.press("r")
        await settle(app, pilot)
        await pilot.press("y")
        await pilot.pause()
        await pilot.press("x")
        await wait_run(app, pilot)
        run = app.screen
        assert "cancelled" in run.states.values()
        assert any("Run cancelled" in n.message for n in app.notices)
        assert not any("Every target rotated" in n.message for n in app.notices)
        await pilot.press("R")
        await wait_run(app, pilot)
        assert set(run.states.values()) == {"rotated"}
        for key in run.states:
            assert sim.inspect.reset_count(*key) == 1


async def test_marking_a_project_under_a_filter_takes_only_what_the_filter_shows(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid = sim.inspect.project_by_name("acme-prod").id
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("slash", *"svc_billing", "enter")
        await settle(app, pilot)
        tree = app.screen.tree
        tree.move_cursor(tree.node_for(NodeRef("project", org_id=sim.inspect.org_of(pid), project_id=pid)))
        await pilot.pause()
        await pilot.press("space")
        await settle(app, pilot)
        assert tree.marks and {k[2] for k in tree.marks} == {"svc_billing"}
        assert tree.marks == {k for k in sim.inspect.login_roles() if k[0] == pid and k[2] == "svc_billing"}


async def test_read_only_does_not_offer_start(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path, read_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await mark_role(app, pilot, "staging", "app")
        await pilot.press("r")
        await settle(app, pilot)
        assert "Start rotation" not in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert type(app.screen) is ReviewScreen
