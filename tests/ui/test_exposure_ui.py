"""`L` loads a leak: the modal, the scan in a worker, exactly the exposed roles marked, badges, no secret shown."""

from __future__ import annotations

import pytest
from ui_helpers import make_app, make_sim, screen_text, settle

from neon_tui.screens.main import MainScreen
from neon_tui.screens.modals import LeakModal

pytestmark = pytest.mark.slow  # every test here takes over ~2 s

LEAKED = "Ui-Leaked-Pw-77"


def _set(sim, project, branch, role, password=LEAKED):
    pid = sim.inspect.project_by_name(project).id
    bid = sim.inspect.branch_by_name(pid, branch).id
    sim.inspect.role(pid, bid, role).password = password
    return pid, bid, role


async def test_load_leak_from_file_marks_exposed_and_badges(tmp_path):
    sim = make_sim()
    a = _set(sim, "acme-prod", "staging", "app")
    b = _set(sim, "acme-prod", "preview/pr-142", "app")
    leak = tmp_path / "leak.env"
    leak.write_text(f"DATABASE_URL=postgresql://app:{LEAKED}@ep-x-1.aws.neon.tech/neondb\n")
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        tree = app.screen.tree
        tree.marks.add((a[0], "br-other", "x"))  # an earlier mark: replaced
        await pilot.press("L")
        await settle(app, pilot)
        assert type(app.screen) is LeakModal
        app.screen.query_one("#leak-path").value = str(leak)
        await pilot.press("enter")
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
        assert tree.marks == {a, b}
        assert app.exposure is not None and set(app.exposure.keys) == {a, b}
        assert app.exposure.old_passwords()[a][0].reveal() == LEAKED
        # the no-store project's roles are shown as not checked
        assert tree.unchecked
        # badges: show the exposed role
        await pilot.press("slash", *"pr-142", "enter")
        await settle(app, pilot)
        ref = next(r for r in tree.refs if r.kind == "role" and r.key == b)
        assert "exposed" in tree.label_for(ref).plain
        text = screen_text(app)
        assert "exposed" in text and LEAKED not in text
        status = str(app.screen.query_one("#status").render())
        assert "2 marked" in status and "2 exposed" in status


async def test_masked_paste_and_palette(tmp_path):
    sim = make_sim()
    key = _set(sim, "acme-analytics", "main", "etl/loader")
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("L")
        await settle(app, pilot)
        field = app.screen.query_one("#leak-paste")
        assert field.password is True
        field.value = LEAKED
        assert LEAKED not in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen.tree.marks == {key}
        assert LEAKED not in screen_text(app)
        assert all(LEAKED not in str(n.message) for n in app.notices)
        names = [c.title for c in app.get_system_commands(app.screen)]
        assert "Load leak" in names


async def test_demo_offers_its_sample_leak_held_in_memory(tmp_path):
    """The drill: the demo's sample .env finds café_rw on main AND the two branches that inherited it."""
    sim = make_sim()
    app = make_app(sim, tmp_path)
    app.simulator = sim
    ins = sim.inspect
    analytics = ins.project_by_name("acme-analytics")
    expected = {(analytics.id, ins.branch_by_name(analytics.id, n).id, "café_rw")
                for n in ("main", "dev/carol", "backfill-2025")}
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("L")
        await settle(app, pilot)
        assert app.screen.query_one("#leak-probe").value is False  # no PostgreSQL behind this demo
        await pilot.click("#sample")
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
        assert set(app.exposure.keys) == expected
        assert app.screen.tree.marks == expected
        # the way down to every exposed role is open: each one is on screen with its badge
        tree = app.screen.tree
        shown = {r.key for r in tree.refs if r.kind == "role"}
        assert expected <= shown
        for ref in (r for r in tree.refs if r.kind == "role" and r.key in expected):
            assert "exposed" in tree.label_for(ref).plain
        billing = ins.project_by_name("acme-legacy-billing")
        assert any(k[0] == billing.id for k in app.screen.tree.unchecked)  # not stored: needs a login probe


async def test_the_scan_reads_branches_created_after_the_tree_loaded(tmp_path):
    """Found in review: the TUI's cached inventory hid a branch made after loading (it inherited the
    leaked password). The scan reads branches and roles again."""
    sim = make_sim()
    app = make_app(sim, tmp_path)
    app.simulator = sim
    ins = sim.inspect
    analytics = ins.project_by_name("acme-analytics")
    main = ins.branch_by_name(analytics.id, "main")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        # load the project's branches into the tree's inventory, then create a child branch behind its back
        await app.screen.inventory.load_project_tree(app.screen.inventory.projects[analytics.id])
        with sim.lock:
            child, _, _ = sim.account.create_branch(analytics, main, "preview/late", sim.clock(), history=True)
        await pilot.press("L")
        await settle(app, pilot)
        await pilot.click("#sample")
        await settle(app, pilot)
        assert (analytics.id, child.id, "café_rw") in set(app.exposure.keys)
