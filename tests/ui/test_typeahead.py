"""Keys typed ahead of the screen (3 a.m., over SSH, a burst from tmux) act on what they mean: the tree keeps
its cursor through rebuilds, and keys typed while a node the user just opened is loading wait for it."""

from __future__ import annotations

import asyncio

from textual import events
from ui_helpers import make_app, make_sim, settle

from neon_tui.widgets.org_tree import OrgTree

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
        if type(screen).__name__ == "MainScreen" and any(r.kind == "project" for r in screen.tree._node_map):
            return screen.tree
        await asyncio.sleep(0.002)
    raise AssertionError("no project was ever shown")


async def settle_all(app, pilot, extra: float = 0.3) -> None:
    await settle(app, pilot)
    await asyncio.sleep(extra)
    await settle(app, pilot)


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def marked_is_under_cursor(tree: OrgTree) -> bool:
    ref = tree.cursor_node.data
    return bool(tree.marks) and tree.marks == set(tree.login_keys(ref))


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
