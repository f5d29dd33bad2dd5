"""Finding and selecting in the tree: role:/project:/branch: filters across organizations, the cursor on the
first match, n/N, g/G, M (mark every match, asking above a threshold), undo of marks (U, ctrl+z), a click
on the mark box, and c (the marks as a `neon-tui rotate` command that selects exactly them)."""

from __future__ import annotations

import shlex

import pytest

from ui_helpers import IN_PROCESS, make_app, make_sim, screen_text, settle, until

from neon_tui.cli import _parser
from neon_tui.neon import NeonClient
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.plan import plan_from_selectors
from neon_tui.screens.main import MainScreen
from neon_tui.screens.modals import YesNoModal
from neon_tui.widgets.org_tree import NodeRef, OrgTree

SIZE = (110, 40)


def nodes(tree: OrgTree) -> list:
    """Every node the tree holds, top to bottom (through TreeNode's public children)."""
    out, stack = [], list(reversed(tree.root.children))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def refs(tree: OrgTree, kind: str) -> list[NodeRef]:
    return [n.data for n in nodes(tree) if n.data is not None and n.data.kind == kind]


def notes(app) -> list[str]:
    return [n.message for n in app.notices]


async def apply_filter(app, pilot, text: str) -> OrgTree:
    await settle(app, pilot)
    await pilot.press("slash", *text, "enter")
    await settle(app, pilot)
    return app.screen.query_one(OrgTree)


def branches_holding(sim, role: str) -> set[tuple[str, str]]:
    return {(k[0], k[1]) for k in sim.inspect.login_roles() if k[2] == role}


async def test_role_filter_shows_every_branch_holding_the_role_in_every_org_and_puts_the_cursor_on_the_first(
        tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        tree = await apply_filter(app, pilot, "role:app")
        shown = refs(tree, "role")
        assert {(r.project_id, r.branch_id) for r in shown} == branches_holding(sim, "app")
        assert {r.role_name for r in shown} == {"app"}  # only the matching role under each branch
        assert len({sim.inspect.org_of(r.project_id) for r in shown}) == 3  # across organizations
        assert tree.cursor_node.data == shown[0]  # the cursor on the first match
        assert "role:app" in screen_text(app)


@pytest.mark.slow
async def test_project_and_branch_prefixes_and_quoted_names(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid = sim.inspect.project_by_name("acme-prod").id
    staging = sim.inspect.branch_by_name(pid, "staging").id
    async with app.run_test(size=SIZE) as pilot:
        tree = await apply_filter(app, pilot, "project:acme-prod branch:staging")
        assert {(r.project_id, r.branch_id) for r in refs(tree, "role")} == {(pid, staging)}
        assert {r.role_name for r in refs(tree, "role")} == set(sim.inspect.role_names(pid, staging))
        assert tree.cursor_node.data == NodeRef("branch", project_id=pid, branch_id=staging)
        await pilot.press("escape")
        tree = await apply_filter(app, pilot, "role:'data team'")
        assert {r.role_name for r in refs(tree, "role")} == {"data team"}
        assert {(r.project_id, r.branch_id) for r in refs(tree, "role")} == branches_holding(sim, "data team")
        # project: alone keeps the project whole (closed, as an unfiltered one), and is the match
        await pilot.press("escape")
        tree = await apply_filter(app, pilot, "project:acme-prod")
        assert [r.project_id for r in refs(tree, "project")] == [pid]
        assert tree.cursor_node.data.kind == "project" and tree.cursor_node.data.project_id == pid


@pytest.mark.slow
async def test_an_unclosed_quote_is_said_and_keeps_the_last_filter(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        tree = await apply_filter(app, pilot, "role:app")
        before = refs(tree, "role")
        await pilot.press("slash", "end", *" role:'data", "enter")
        await settle(app, pilot)
        assert refs(tree, "role") == before
        assert "close the quote" in screen_text(app)


@pytest.mark.slow
async def test_n_and_N_go_between_matches_and_wrap(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        tree = await apply_filter(app, pilot, "role:app")
        found = [r for r in refs(tree, "role")]
        assert len(found) == 18
        assert tree.cursor_node.data == found[0]
        await pilot.press("n")
        assert tree.cursor_node.data == found[1]
        await pilot.press("n", "n")
        assert tree.cursor_node.data == found[3]
        await pilot.press("N")
        assert tree.cursor_node.data == found[2]
        await pilot.press("g")  # the top (the first organization): N wraps to the last match
        assert tree.cursor_line == 0
        await pilot.press("N")
        await pilot.pause()
        assert tree.cursor_node.data == found[-1]
        assert f"match {len(found)}/{len(found)} (wrapped)" in screen_text(app)
        await pilot.press("n")
        await pilot.pause()
        assert tree.cursor_node.data == found[0]
        assert "match 1/18 (wrapped)" in screen_text(app)


async def test_g_and_G_go_to_the_top_and_bottom(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 20)) as pilot:
        tree = await apply_filter(app, pilot, "role:app")  # every project opened down to its app roles
        assert tree.last_line > 20  # more lines than the screen shows
        await pilot.press("G")
        assert tree.cursor_line == tree.last_line
        assert tree.scroll_offset.y > 0
        await pilot.press("g")
        assert tree.cursor_line == 0
        assert tree.scroll_offset.y == 0


@pytest.mark.slow
async def test_M_marks_every_match_across_organizations_and_U_undoes_it(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    want = {k for k in sim.inspect.login_roles() if k[2] == "app"}
    async with app.run_test(size=SIZE) as pilot:
        tree = await apply_filter(app, pilot, "role:app")
        await pilot.press("M")
        await settle(app, pilot)
        assert type(app.screen) is MainScreen  # 18: under the threshold, no question
        assert tree.marks == want
        assert any("Marked 18 targets in 6 projects in 3 organizations" in n for n in notes(app))
        await pilot.press("M")
        await settle(app, pilot)
        assert any("All 18 matching target(s) are already marked" in n for n in notes(app))
        await pilot.press("U")
        await settle(app, pilot)
        assert tree.marks == set()


async def until_question(app, pilot) -> None:
    """Wait for the confirmation (settle would wait for the worker, which waits for the answer)."""
    await until(pilot, lambda: isinstance(app.screen, YesNoModal), what="the question", step=0.01)


@pytest.mark.slow
async def test_M_asks_above_twenty_and_no_marks_nothing(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    want = {k for k in sim.inspect.login_roles() if k[2] == "neondb_owner"}
    assert len(want) == 22
    async with app.run_test(size=SIZE) as pilot:
        tree = await apply_filter(app, pilot, "role:neondb_owner")
        await pilot.press("M")
        await until_question(app, pilot)
        assert "Mark 22 targets" in screen_text(app)
        await pilot.press("n")
        await settle(app, pilot)
        assert tree.marks == set()
        await pilot.press("M")
        await until_question(app, pilot)
        await pilot.press("y")
        await settle(app, pilot)
        assert tree.marks == want


async def test_M_without_a_filter_marks_nothing(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("M")
        await settle(app, pilot)
        assert app.screen.query_one(OrgTree).marks == set()
        assert any("Filter first" in n for n in notes(app))


async def test_M_reads_projects_not_loaded_yet_before_marking(tmp_path):
    """`all matches` means all: projects still loading in the background are read before anything is marked."""
    sim = make_sim(latency_ms=30)
    app = make_app(sim, tmp_path)
    want = {k for k in sim.inspect.login_roles() if k[2] == "app"}
    async with app.run_test(size=SIZE) as pilot:
        # the first projects are listed; their branches and roles are not all read yet
        await until(pilot, lambda: type(app.screen) is MainScreen and refs(app.screen.query_one(OrgTree), "project"),
                    what="the first projects", step=0.01)
        tree = app.screen.query_one(OrgTree)
        app.screen.action_filter()
        app.screen.query_one("#filter").value = "role:app"
        await pilot.press("enter")
        await pilot.press("M")
        await settle(app, pilot)
        assert tree.marks == want


@pytest.mark.slow
async def test_unmark_all_and_several_levels_of_undo(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    apps = {k for k in sim.inspect.login_roles() if k[2] == "app"}
    readonly = {k for k in sim.inspect.login_roles() if k[2] == "readonly"}
    async with app.run_test(size=SIZE) as pilot:
        tree = await apply_filter(app, pilot, "role:app")
        await pilot.press("M")
        await settle(app, pilot)
        await pilot.press("escape")
        tree = await apply_filter(app, pilot, "role:readonly")
        await pilot.press("M")
        await settle(app, pilot)
        await pilot.press("n", "space")  # the second readonly off again, by hand
        await settle(app, pilot)
        second = tree.cursor_node.data.key
        assert tree.marks == (apps | readonly) - {second}
        await pilot.press("u")
        await settle(app, pilot)
        assert tree.marks == set()
        assert any(f"Unmarked {len(apps | readonly) - 1} targets" in n for n in notes(app))
        await pilot.press("ctrl+z")
        await settle(app, pilot)
        assert tree.marks == (apps | readonly) - {second}
        await pilot.press("U")
        await settle(app, pilot)
        assert tree.marks == apps | readonly
        await pilot.press("U")
        await settle(app, pilot)
        assert tree.marks == apps
        await pilot.press("U")
        await settle(app, pilot)
        assert tree.marks == set()
        await pilot.press("U")
        await settle(app, pilot)
        assert tree.marks == set()
        assert any("Nothing to undo" in n for n in notes(app))


def _box_x(tree: OrgTree, node) -> tuple[int, int]:
    """Where a node's mark box is on screen (widget coordinates), read from the line as rendered."""
    y = node.line - tree.scroll_offset.y
    text = tree.render_line(y).text
    label = node.label.plain
    start = text.index(label)
    assert label[:3] in ("[ ]", "[x]", "[-]")
    # pilot.click's offset is from the widget's corner, its border and padding included
    gutter_x, gutter_y = tree.content_region.x - tree.region.x, tree.content_region.y - tree.region.y
    return start + 1 + gutter_x, y + gutter_y


@pytest.mark.slow
async def test_a_click_on_the_mark_box_marks_and_a_click_on_the_name_only_moves(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        tree = await apply_filter(app, pilot, "role:app")
        first, second = [n for n in nodes(tree) if n.data is not None and n.data.kind == "role"][:2]
        x, y = _box_x(tree, second)
        await pilot.click(OrgTree, offset=(x + 5, y))  # on the name
        await settle(app, pilot)
        assert tree.cursor_node is second
        assert tree.marks == set()
        x, y = _box_x(tree, first)
        await pilot.click(OrgTree, offset=(x, y))  # on [ ]
        await settle(app, pilot)
        assert tree.cursor_node is first
        assert tree.marks == {first.data.key}
        assert tree.cursor_node.label.plain.startswith("[x]")
        project = tree.cursor_node.parent
        while project.data.kind != "project":
            project = project.parent
        x, y = _box_x(tree, project)
        await pilot.click(OrgTree, offset=(x, y))  # a project's box: what the filter shows under it
        await settle(app, pilot)
        want = {k for k in sim.inspect.login_roles() if k[0] == project.data.project_id and k[2] == "app"}
        assert tree.marks == want
        await pilot.press("U")
        await settle(app, pilot)
        assert tree.marks == {first.data.key}


ODD = ["has space", "star*", 'q"uote', "it's", "br[ack]et", "a/b/c", " lead", "semi;colon $HOME", "-dash"]


async def _plan_of(command: str, sim) -> set[tuple[str, str, str]]:
    """What pasting the command would rotate: parsed by the real CLI parser, planned by rotate's planner."""
    argv = shlex.split(command)
    assert argv[:2] == ["neon-tui", "rotate"]
    ns = _parser().parse_args(argv[1:])
    assert ns.command == "rotate" and ns.apply and ns.deliver == ["stdout"] and ns.demo
    client = NeonClient(sim.api_key, host=IN_PROCESS, transport=sim.transport())
    async with client:
        inventory = Inventory(client)
        org = await inventory.resolve_org(ns.org)
        plan = await plan_from_selectors(inventory, ns.selectors, org.id if org else None)
    assert not plan.unmatched and not plan.skipped
    return {t.key for t in plan.targets}


@pytest.mark.slow
async def test_c_copies_a_rotate_command_that_selects_exactly_the_marks_odd_names_included(tmp_path):
    sim = make_sim()
    pid = sim.inspect.project_by_name("acme-prod").id
    main = sim.inspect.branch_by_name(pid, "main").id
    staging = sim.inspect.branch_by_name(pid, "staging").id
    client = NeonClient(sim.api_key, host=IN_PROCESS, transport=sim.transport())
    async with client:
        for name in ODD:
            for bid in (main, staging):  # the same odd name on two branches: only the marked one may rotate
                await client.create_role(pid, bid, name)
        # Decoys a widening selector would catch: names the odd ones would match as globs.
        for name in ("starX", "brabet", "a/b/cd"):
            await client.create_role(pid, main, name)
    app = make_app(sim, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        tree = await apply_filter(app, pilot, f"project:{pid} branch:main")
        for name in ODD:
            assert tree.go_to(NodeRef("role", project_id=pid, branch_id=main, role_name=name))
            await pilot.press("space")
            await settle(app, pilot)
        await pilot.press("escape")
        # and roles in two other organizations
        tree = await apply_filter(app, pilot, "role:app")
        others = [r for r in refs(tree, "role") if sim.inspect.org_of(r.project_id) != sim.inspect.org_of(pid)]
        picked = {others[0].key, others[-1].key}
        assert len({sim.inspect.org_of(k[0]) for k in picked}) == 2
        for key in picked:
            tree.go_to(NodeRef("role", project_id=key[0], branch_id=key[1], role_name=key[2]))
            await pilot.press("space")
            await settle(app, pilot)
        marks = set(tree.marks)
        assert len(marks) == len(ODD) + 2
        await pilot.press("c")
        await settle(app, pilot)
        commands = app.clipboard.split("\n")
        assert len(commands) == 3  # one per organization
        got: set = set()
        for command in commands:
            got |= await _plan_of(command, sim)
        assert got == marks  # exactly the marks: nothing wider, nothing lost
        shown = "\n".join(notes(app))
        assert all(c in shown for c in commands)  # and the notification shows it


async def test_c_without_marks_says_what_to_do(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        assert app.clipboard == ""
        assert any("Mark roles with space first" in n for n in notes(app))


def test_the_demo_flag_names_the_same_account():
    """The command carries --demo in a demo: `neon-tui rotate --demo` builds the same account (same ids)."""
    from neon_tui.simulator import SimConfig, Simulator

    app_demo, cli_demo = Simulator(SimConfig(op_seconds=2.0)), Simulator(SimConfig(op_seconds=1.0))
    assert sorted(app_demo.inspect.login_roles()) == sorted(cli_demo.inspect.login_roles())


async def test_new_keys_steal_no_binding_and_help_lists_them(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        tree = screen.query_one(OrgTree)
        assert app.focused is tree
        # Every binding with an id, on the app, the screen and the tree: each of its keys reaches it.
        for cls in (type(app), type(screen), OrgTree):
            for binding in cls.BINDINGS:
                if binding.id is None or screen.check_action(binding.action, ()) is False:
                    continue  # (o, open the run, is hidden until there is a run)
                for key in binding.key.split(","):
                    active = screen.active_bindings.get(key.strip())
                    assert active is not None and active.binding.id == binding.id, (key, binding.id)
        new = {"top": "g", "bottom": "G", "next-match": "n", "previous-match": "N", "mark-matches": "M",
               "undo-marks": "U", "copy-command": "c"}
        for bid, key in new.items():
            assert screen.active_bindings[key].binding.id == bid
        assert screen.active_bindings["ctrl+z"].binding.id == "undo-marks"
        await pilot.press("question_mark")
        await pilot.pause()
        from textual.widgets import Static

        text = "\n".join(str(w.content) for w in app.screen.query(Static))  # the whole list, scrolled or not
        for bid in new:
            assert bid in text, bid
        for desc in ("Next match", "Mark all matches", "Undo mark/unmark", "Copy rotate command", "Top", "Bottom"):
            assert desc in text, desc
