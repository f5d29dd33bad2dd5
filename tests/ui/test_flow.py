"""Pilot tests of the whole flow on the in-process simulator: load, filter, mark, review, run, copy, keyring."""

from __future__ import annotations

import json

import pytest
from ui_helpers import make_app, make_sim, mark_role, review_staging_app, screen_text, settle, staging_ids, wait_run

from neon_tui.config import Settings
from neon_tui.secrets import connection_entry
from neon_tui.screens.command_log import CommandLogScreen
from neon_tui.screens.main import MainScreen
from neon_tui.screens.modals import HelpModal, TypedConfirmModal
from neon_tui.screens.review import ReviewScreen
from neon_tui.screens.run import RunScreen


async def mark_staging_app(app, pilot):
    """Filter to the staging branch's app role and mark it."""
    await mark_role(app, pilot, "staging", "app")


async def rotate_staging_app(app, pilot):
    """Mark staging's app role, review, start, and wait for the run to end."""
    await review_staging_app(app, pilot)
    await pilot.press("y")
    await wait_run(app, pilot)


@pytest.mark.slow
async def test_load_filter_mark_review_run_copy(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
        assert "acme-prod" in screen_text(app)
        await mark_staging_app(app, pilot)
        assert app.screen.tree.marks == {(pid, bid, "app")}
        assert "1 marked" in str(app.screen.query_one("#status").render())
        await pilot.press("r")
        await settle(app, pilot)
        assert type(app.screen) is ReviewScreen
        plan = app.screen.plan
        assert [t.key for t in plan.targets] == [(pid, bid, "app")]
        # other branches hold the same role: the review says so
        assert {w.branch_name for w in plan.warnings} >= {"main", "preview/pr-142"}
        old = sim.inspect.password(pid, bid, "app")
        await pilot.press("y")
        await wait_run(app, pilot)
        run = app.screen
        assert type(run) is RunScreen
        assert run.states[(pid, bid, "app")] == "rotated"
        new = sim.inspect.password(pid, bid, "app")
        assert new != old and sim.inspect.reset_count(pid, bid, "app") == 1
        # masked on screen until revealed
        assert new not in screen_text(app)
        await pilot.press("v")
        await pilot.pause()
        # revealed on screen (a screenshot masks it: test_run_screen), on the line under the table
        assert new in str(run.query_one("#run-selected").render())
        await pilot.press("v")
        await pilot.pause()
        assert new not in screen_text(app)
        await pilot.press("c")
        await pilot.pause()
        assert new in app.clipboard and app.clipboard.startswith("postgresql://app:")
        assert run.states[(pid, bid, "app")] == "delivered"
        assert 40 < app.clip.remaining() <= 45  # the auto-clear countdown started
        await pilot.press("p", "c")
        await pilot.pause()
        assert "-pooler." in app.clipboard
        await pilot.press("e")
        await pilot.pause()
        assert "DATABASE_URL=" in app.clipboard and "DATABASE_URL_UNPOOLED=" in app.clipboard
    journal = (tmp_path / "run-20261127T030000Z-test.jsonl").read_text()
    assert new not in journal and old not in journal
    assert any(json.loads(line).get("sink") == "clipboard" for line in journal.splitlines())


@pytest.mark.slow
async def test_keyring_store_with_memory_backend(tmp_path, memory_keyring):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await rotate_staging_app(app, pilot)
        await pilot.press("k")
        await settle(app, pilot)
        assert app.screen.states[(pid, bid, "app")] == "delivered"
    new = sim.inspect.password(pid, bid, "app")
    stored = {k: v for k, v in memory_keyring.entries.items() if k[0] == f"neon-tui/{pid}/{bid}"}
    assert stored and all(new in v for v in stored.values())
    service, user = connection_entry(pid, bid, "app", "neondb", pooled=True)
    assert (service, user) in stored and "-pooler." in stored[(service, user)]


@pytest.mark.slow
async def test_keyring_unavailable_is_shown_plainly(tmp_path, monkeypatch):
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        sim = make_sim()
        app = make_app(sim, tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(app, pilot)
            await rotate_staging_app(app, pilot)
            await pilot.press("k")
            await settle(app, pilot)
            notes = [n.message for n in app.notices]
            assert any("no keyring backend" in m and "plain text" in m for m in notes)
            assert list(app.screen.states.values()) == ["rotated"]
    finally:
        keyring.set_keyring(previous)


@pytest.mark.slow
async def test_protected_branch_needs_typed_confirmation(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid = sim.inspect.project_by_name("acme-prod").id
    main = sim.inspect.default_branch_id(pid)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await mark_role(app, pilot, "svc_billing", "svc_billing", branch_id=main)
        await pilot.press("r")
        await settle(app, pilot)
        await pilot.press("y")
        await pilot.pause()
        assert type(app.screen) is TypedConfirmModal
        await pilot.press(*"yes", "enter")
        await pilot.pause()
        assert type(app.screen) is TypedConfirmModal  # the wrong word does nothing
        assert sim.inspect.reset_count(pid, main, "svc_billing") == 0
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen) is ReviewScreen
        await pilot.press("y", *"rotate", "enter")
        await wait_run(app, pilot)
        assert sim.inspect.reset_count(pid, main, "svc_billing") == 1


async def test_mark_project_marks_all_login_roles_and_partial_marks_show(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid = sim.inspect.project_by_name("acme-analytics").id
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        tree = app.screen.tree
        from neon_tui.widgets.org_tree import NodeRef

        proj = NodeRef("project", org_id=sim.inspect.org_of(pid), project_id=pid)
        tree.move_cursor(tree.node_for(proj))
        await pilot.pause()
        await pilot.press("space")
        await settle(app, pilot)
        expected = {k for k in sim.inspect.login_roles() if k[0] == pid}
        assert tree.marks == expected
        assert str(tree.node_for(proj).label).startswith("[x]")
        one = sorted(expected)[0]
        tree.toggle(NodeRef("role", project_id=one[0], branch_id=one[1], role_name=one[2]))
        assert str(tree.node_for(proj).label).startswith("[-]")
        await pilot.press("space")  # partly marked -> marks all again
        await settle(app, pilot)
        assert tree.marks == expected
        await pilot.press("space")
        await settle(app, pilot)
        assert not tree.marks


@pytest.mark.slow
async def test_failed_target_can_be_retried(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    async with app.run_test(size=(100, 30)) as pilot:
        await review_staging_app(app, pilot)
        sim.inspect.set_faults(1.0, ("op_failed",))
        await pilot.press("y")
        await wait_run(app, pilot)
        sim.inspect.set_faults(0.0)
        assert app.screen.states[(pid, bid, "app")] == "failed"
        await pilot.press("R")
        await wait_run(app, pilot)
        assert app.screen.states[(pid, bid, "app")] == "rotated"
        assert sim.inspect.reset_count(pid, bid, "app") == 2  # the retry is an explicit second reset


@pytest.mark.slow
async def test_read_only_never_writes(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path, read_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await review_staging_app(app, pilot)
        await pilot.press("y")
        await settle(app, pilot)
        assert type(app.screen) is ReviewScreen
        assert "READ-ONLY" in screen_text(app)
    assert not [r for r in sim.inspect.requests if r.method != "GET"]


@pytest.mark.slow
async def test_keymap_remaps_by_binding_id(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path, settings=Settings(keymap={"mark": "x"}))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("slash", *"staging", "enter")
        await settle(app, pilot)
        tree = app.screen.tree
        ref = next(r for r in tree.refs if r.kind == "role" and r.role_name == "app")
        tree.move_cursor(tree.node_for(ref))
        await pilot.pause()
        await pilot.press("x")
        await settle(app, pilot)
        assert tree.marks == {ref.key}


@pytest.mark.slow
async def test_help_palette_and_command_log(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    # tall enough for every row of the help (it scrolls on smaller terminals) now that it lists the incident views
    async with app.run_test(size=(100, 44)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(app)
        assert type(app.screen) is HelpModal
        for bid in ("mark", "filter", "review", "command-log", "quit", "keys", "audit", "ipallow", "checklist"):
            assert bid in text
        await pilot.press("escape")
        await pilot.press("at")
        await settle(app, pilot)
        assert type(app.screen) is CommandLogScreen
        text = screen_text(app)
        assert "/users/me/organizations" in text and sim.api_key not in text
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Review plan", "Filter", "API log", "Help: keys"} <= set(titles)


async def test_j_k_move_and_q_quits(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        tree = app.screen.tree
        start = tree.cursor_line
        await pilot.press("j", "j")
        assert tree.cursor_line == start + 2
        await pilot.press("k")
        assert tree.cursor_line == start + 1
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0  # q with nothing running quits at once, with status 0
