"""The audit view (A): findings grouped with counts, not-checked lines, d drops a role after review and its
typed name, k keeps one with a reason; both journaled. The real app on the in-process simulator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ui_helpers import EPOCH, IN_PROCESS, make_app, make_sim, screen_text, settle, until

from neon_tui.incident.actions import create_action_journal, list_action_journals, read_action_journal
from neon_tui.screens.audit import AuditScreen
from neon_tui.screens.modals import ErrorModal
from neon_tui.simulator.account import DEMO_INTRUDER

pytestmark = pytest.mark.slow  # every test here takes over ~2 s


def _leak_recorded() -> None:
    """An exposure scan recorded the demo's leak time: the audit starts from it."""
    j = create_action_journal("exposure", host=IN_PROCESS, account=None)
    j.write("exposure_scanned", source="demo sample", leaked_at=(EPOCH - timedelta(hours=48)).isoformat(),
            exposed=[], unchecked=[], counts={})
    j.close()


async def _until(pilot, predicate) -> None:
    await until(pilot, predicate, what="the audit view")


async def _open(app, pilot) -> AuditScreen:
    await settle(app, pilot)
    await pilot.press("A")
    await settle(app, pilot)
    assert isinstance(app.screen, AuditScreen)
    return app.screen


def _row_of(screen: AuditScreen, kind: str, role: str) -> int:
    return next(i for i, f in enumerate(screen.rows) if f is not None and f.kind == kind and f.role == role)


async def test_audit_view_groups_findings_and_drops_with_typed_name(tmp_path):
    _leak_recorded()
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await _open(app, pilot)
        text = screen_text(app)
        assert "Roles created since the leak (1)" in text and "Branches created since the leak (1)" in text
        assert "Organization members (" in text and DEMO_INTRUDER in text
        assert "Not checked (8)" in text and "3 high" in text
        assert "the leak time of exposure scan" in text
        pid = sim.inspect.project_by_name("acme-ml-features").id
        bid = sim.inspect.branch_by_name(pid, "export-tmp").id
        table = screen.query_one("#audit-table")
        table.move_cursor(row=_row_of(screen, "role_created", "sync_svc"))
        await pilot.press("d")
        await _until(pilot, lambda: "Type 'sync_svc' to go on" in screen_text(app))  # the drop worker waits
        await pilot.press(*"sync_sv", "enter")  # wrong: nothing happens
        await pilot.pause()
        assert "sync_svc" in sim.inspect.role_names(pid, bid)
        await pilot.press("c", "enter")
        await settle(app, pilot)
        assert "sync_svc" not in sim.inspect.role_names(pid, bid)
        assert "(dropped)" in screen_text(app)
        table.move_cursor(row=_row_of(screen, "role_owns_nothing", "app"))
        await pilot.press("k")
        await settle(app, pilot)
        await pilot.press(*"used by the api", "enter")
        await settle(app, pilot)
        assert "(kept)" in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)
        assert not isinstance(app.screen, AuditScreen)
    (path,) = list_action_journals("roles")
    log = read_action_journal(path)
    events = [r["event"] for r in log.records]
    assert events[0] == "audit_reviewed" and "role_dropped" in events and "role_kept" in events
    kept = log.events("role_kept")[0]
    assert kept["role"] == "app" and kept["reason"] == "used by the api"
    dropped = log.events("role_dropped")[0]
    assert (dropped["project_id"], dropped["branch_id"], dropped["role"]) == (pid, bid, "sync_svc")


async def test_drop_refused_for_a_role_that_owns_a_database(tmp_path):
    _leak_recorded()
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await _open(app, pilot)
        # The drill's sync_svc is given a database after the audit listed it: the review refuses, naming it.
        pid = sim.inspect.project_by_name("acme-ml-features").id
        branch = sim.inspect.branch_by_name(pid, "export-tmp")
        db = next(iter(branch.databases.values()))
        db.owner_name = "sync_svc"
        screen.query_one("#audit-table").move_cursor(row=_row_of(screen, "role_created", "sync_svc"))
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, ErrorModal) and app.screen.title_text == "Not dropped"
        assert f"owns database {db.name} on export-tmp" in app.screen.message
        assert "another owner first" in app.screen.message
        assert "Not dropped" in screen_text(app)
        assert "sync_svc" in sim.inspect.role_names(pid, branch.id)


async def test_read_only_cannot_drop(tmp_path):
    _leak_recorded()
    sim = make_sim()
    app = make_app(sim, tmp_path, read_only=True)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await _open(app, pilot)
        screen.query_one("#audit-table").move_cursor(row=_row_of(screen, "role_created", "sync_svc"))
        await pilot.press("d")
        await settle(app, pilot)
        pid = sim.inspect.project_by_name("acme-ml-features").id
        assert "sync_svc" in sim.inspect.role_names(pid, sim.inspect.branch_by_name(pid, "export-tmp").id)
        assert any("Read-only session" in n.message for n in app.notices)


async def test_a_journal_the_disk_refuses_is_shown_not_fatal(tmp_path):
    import shutil

    from neon_tui.incident.actions import actions_dir

    _leak_recorded()
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await _open(app, pilot)
        if screen.journal is not None:
            screen.journal.close()
            screen.journal = None
        # The actions directory becomes a file: the roles journal cannot be opened.
        shutil.move(str(actions_dir()), str(tmp_path / "moved-actions"))
        actions_dir().write_text("not a directory")
        pid = sim.inspect.project_by_name("acme-ml-features").id
        bid = sim.inspect.branch_by_name(pid, "export-tmp").id
        screen.query_one("#audit-table").move_cursor(row=_row_of(screen, "role_created", "sync_svc"))
        await pilot.press("d")
        await _until(pilot, lambda: "Type 'sync_svc' to go on" in screen_text(app))
        await pilot.press(*"sync_svc", "enter")
        await _until(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert app.screen.title_text == "Drop not completed"
        assert app.is_running
        assert "sync_svc" in sim.inspect.role_names(pid, bid)  # nothing dropped that could not be journaled
