"""Keys typed ahead of the screen (3 a.m., over SSH, a burst from tmux) act on what they mean: the tree keeps
its cursor through rebuilds, and keys typed while a node the user just opened is loading wait for it."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual import events
from ui_helpers import make_app, make_sim, screen_text, settle

from neon_tui.widgets.org_tree import OrgTree
from neon_tui.screens.main import MainScreen
from neon_tui.screens.modals import ErrorModal

CHARS = {"space": " ", "enter": "\r", "slash": "/", "escape": "\x1b"}


async def type_keys(app, keys, gap: float = 0.0) -> None:
    """Keys as a terminal delivers them: straight into the app's queue, `gap` seconds apart (0: one burst)."""
    for key in keys:
        app.post_message(events.Key(key, CHARS.get(key, key if len(key) == 1 else None)))
        if gap:
            await asyncio.sleep(gap)
    await asyncio.sleep(0)


async def first_projects_on_screen(app) -> OrgTree:
    for _ in range(5000):
        screen = app.screen
        if type(screen) is MainScreen and any(r.kind == "project" for r in screen.tree.refs):
            return screen.tree
        await asyncio.sleep(0.002)
    raise AssertionError("no project was ever shown")


async def settle_all(app, pilot, extra: float = 0.3) -> None:
    await settle(app, pilot)
    await asyncio.sleep(extra)
    await settle(app, pilot)


def notes(app) -> list[str]:
    return [n.message for n in app.notices]


def marked_is_under_cursor(tree: OrgTree) -> bool:
    ref = tree.cursor_node.data
    return bool(tree.marks) and tree.marks == set(tree.login_keys(ref))


@pytest.mark.slow
@pytest.mark.parametrize("latency_ms,gap", [(40, 0.0), (80, 0.01), (80, 0.03), (80, 0.06), (150, 0.06), (150, 0.1)])
async def test_open_down_mark_right_after_launch_marks_the_first_child_of_what_was_opened(tmp_path, latency_ms, gap):
    """j j j l j space, typed as the first projects paint: the third line is opened, the cursor goes to its
    first branch and that branch is marked -- however slowly the project's branches arrive."""
    sim = make_sim(latency_ms=latency_ms)
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        tree = await first_projects_on_screen(app)
        opened = tree.root.children[0].children[1].data  # line 2: org, first project, second project
        assert opened.kind == "project"
        await type_keys(app, ["j", "j", "j", "l", "j", "space"], gap)
        await settle_all(app, pilot)
        node = tree.node_for(opened)
        assert node.is_expanded
        first_child = node.children[0].data
        assert first_child.kind == "branch"
        assert tree.cursor_node.data == first_child
        assert marked_is_under_cursor(tree)
        assert all(k[0] == opened.project_id and k[1] == first_child.branch_id for k in tree.marks)


async def test_a_rebuild_keeps_the_cursor_at_once_so_the_next_key_moves_from_there(tmp_path):
    """A rebuild (background loading) that adds lines above the cursor must not eat or misplace the next key."""
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        tree = app.screen.tree
        org = tree.root.children[0]
        above, here, below = (n.data for n in org.children[1:4])
        tree.move_cursor(tree.node_for(here))
        await pilot.pause()
        tree.node_for(above).expand()  # its branches appear above the cursor at the next rebuild
        tree.rebuild()
        assert tree.cursor_node.data == here and tree.cursor_node.tree is tree
        assert tree.get_node_at_line(tree.cursor_line).data == here
        tree.action_cursor_down()  # a key handled before the next repaint
        await pilot.pause()
        await pilot.pause()
        assert tree.cursor_node.data == below
        await pilot.press("space")
        await settle(app, pilot)
        assert tree.cursor_node.data == below
        assert tree.marks == set(tree.login_keys(below))


async def test_open_and_move_in_one_burst_on_a_loaded_project(tmp_path):
    """l j space in one burst on a project whose branches are loaded: j goes into it, not past it."""
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        tree = app.screen.tree
        project = tree.root.children[0].children[1].data
        tree.move_cursor(tree.node_for(project))
        await pilot.pause()
        await type_keys(app, ["l", "j", "space"])
        await settle(app, pilot)
        first_child = tree.node_for(project).children[0].data
        assert tree.cursor_node.data == first_child
        assert marked_is_under_cursor(tree)


@pytest.mark.slow
async def test_waiting_keys_show_in_the_status_line(tmp_path):
    sim = make_sim(latency_ms=400)
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        tree = await first_projects_on_screen(app)
        opened = tree.root.children[0].children[0].data
        name = app.inventory.projects[opened.project_id].project.name
        await type_keys(app, ["j", "j", "l", "j", "space"])
        await asyncio.sleep(0.05)
        await pilot.pause()
        assert tree.holding == opened
        assert f"opening {name}… 2 keys waiting" in screen_text(app)
        assert not tree.marks
        await settle_all(app, pilot)
        assert tree.holding is None
        assert "keys waiting" not in screen_text(app)
        assert marked_is_under_cursor(tree)


@pytest.mark.slow
async def test_keys_wait_only_so_long_then_are_dropped_and_it_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(OrgTree, "HOLD_SECONDS", 0.3)
    sim = make_sim(latency_ms=700)
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        tree = await first_projects_on_screen(app)
        opened = tree.root.children[0].children[0].data
        await type_keys(app, ["j", "j", "l", "j", "space"])
        await asyncio.sleep(0.5)
        await pilot.pause()
        assert tree.holding is None
        assert f"2 keys not applied: {app.inventory.projects[opened.project_id].project.name} is still loading." \
            in notes(app)
        assert tree.cursor_node.data == opened  # nothing moved behind the user's back
        await settle_all(app, pilot)
        assert tree.cursor_node.data == opened and not tree.marks  # and nothing replays later
        await pilot.press("j", "space")  # now the keys act on what is shown
        await settle(app, pilot)
        assert tree.cursor_node.data == tree.node_for(opened).children[0].data
        assert marked_is_under_cursor(tree)


async def test_a_failed_load_drops_the_waiting_keys_instead_of_feeding_them_to_the_error(tmp_path):
    from neon_tui.neon.errors import PermissionDeniedError

    sim = make_sim(latency_ms=100)
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        tree = await first_projects_on_screen(app)
        opened = tree.root.children[0].children[0].data
        real = app.client.list_branches

        async def failing(project_id, *args, **kw):
            if project_id == opened.project_id:
                await asyncio.sleep(0.2)
                # not a passing error (those the inventory waits out): this load fails for good
                raise PermissionDeniedError("not allowed", status=403)
            return await real(project_id, *args, **kw)

        app.client.list_branches = failing
        await type_keys(app, ["j", "j", "l", "enter", "space"])
        deadline = time.monotonic() + 30
        while not (type(app.screen) is ErrorModal and tree.holding is None) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        await pilot.pause()
        assert type(app.screen) is ErrorModal  # still there: the waiting enter did not close it
        assert any(n.startswith("2 keys not applied: loading ") and n.endswith(" failed.") for n in notes(app))
        while type(app.screen) is ErrorModal:
            await pilot.press("escape")
            await pilot.pause()
        assert type(app.screen) is MainScreen
        assert tree.holding is None and not tree.marks
        assert tree.cursor_node.data == opened


@pytest.mark.slow
async def test_a_filter_typed_while_a_project_loads_lands_in_the_filter(tmp_path):
    sim = make_sim(latency_ms=150)
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        tree = await first_projects_on_screen(app)
        await type_keys(app, ["j", "j", "l", "slash", "s", "t", "a", "g", "i", "n", "g", "enter"])
        await settle_all(app, pilot)
        assert tree.filter_text == "staging"
        assert app.focused is tree


async def test_quit_is_never_held(tmp_path):
    sim = make_sim(latency_ms=400)
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        tree = await first_projects_on_screen(app)
        await type_keys(app, ["j", "j", "l", "j"])
        await asyncio.sleep(0.05)
        assert tree.holding is not None
        await type_keys(app, ["q"])
        await asyncio.sleep(0.1)
        await pilot.pause()
    assert app.return_code == 0


@pytest.mark.slow
async def test_a_branch_opened_before_its_roles_arrive_waits_for_them(tmp_path):
    sim = make_sim(latency_ms=150)
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        tree = app.screen.tree
        org = tree.root.children[0]
        project = org.children[1].data
        tree.node_for(project).expand()
        await settle(app, pilot)
        branch = tree.node_for(project).children[0].data
        info = app.inventory.projects[project.project_id].branches[branch.branch_id]
        info.roles = None  # as while the background loader has not reached it yet
        tree.rebuild()
        tree.move_cursor(tree.node_for(branch))
        await pilot.pause()
        await type_keys(app, ["l", "j", "space"])
        await settle_all(app, pilot)
        first_role = tree.node_for(branch).children[0].data
        assert first_role.kind == "role"
        assert tree.cursor_node.data == first_role
        assert tree.marks == {first_role.key}


async def test_a_filter_that_hides_the_cursor_node_puts_the_cursor_on_its_nearest_shown_ancestor(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        tree = app.screen.tree
        org = tree.root.children[0]
        hidden = next(n.data for n in org.children
                      if app.inventory.projects[n.data.project_id].project.name == "acme-ml-features")
        tree.move_cursor(tree.node_for(hidden))
        await pilot.pause()
        tree.filter_text = "staging"  # acme-prod has a staging branch; acme-ml-features has none
        tree.rebuild()
        assert tree.node_for(hidden) is None
        assert tree.cursor_node.data == org.data
