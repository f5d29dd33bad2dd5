"""The checklist screen (C): one line per step with its live state; enter opens the step's view; w writes the
report; --checklist (and the demo) open on it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable
from ui_helpers import make_app, make_sim, screen_text, settle, until

sys.path.insert(0, str(Path(__file__).parent.parent / "incident"))
from incident_fixtures import rehost, write_incident  # noqa: E402

from neon_tui.screens.checklist import ChecklistScreen  # noqa: E402
from neon_tui.screens.main import MainScreen  # noqa: E402
from neon_tui.screens.modals import LeakModal  # noqa: E402


async def _loaded(app, pilot) -> ChecklistScreen:
    await settle(app, pilot)
    screen = app.screen
    assert isinstance(screen, ChecklistScreen)
    await until(pilot, lambda: screen.loaded, what="the checklist to load")
    await settle(app, pilot)
    return screen


async def _go(pilot, screen: ChecklistScreen, step_id: str) -> None:
    table = screen.query_one(DataTable)
    table.move_cursor(row=[s.id for s in screen.steps].index(step_id))
    await pilot.pause()


@pytest.mark.slow
async def test_c_opens_the_checklist_with_the_live_steps(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(state))
    write_incident(state)
    sim = make_sim()
    app = make_app(sim, tmp_path)
    rehost(state, str(app.client.base_url), sim.inspect.user_id)
    # Another account's journal on the same API host (e.g. an organization key's) is not this key's incident.
    from neon_tui.incident.actions import create_action_journal

    other = create_action_journal("roles", host=str(app.client.base_url), account="org-someone-else",
                                  directory=state / "actions")
    other.write("role_drop_failed", project_id="p", branch_id="b", role="x", reason="not ours")
    other.close()
    app.demo = False  # a demo session counts only journals begun after it started; these are older
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("C")
        screen = await _loaded(app, pilot)
        assert [s.id for s in screen.steps] == ["exposed", "rotate", "deliver", "keys", "ipallow", "audit", "report"]
        text = screen_text(app)
        assert "3 exposed found 16:02 · 1 unchecked" in text
        assert "rotated 2/3 · verified 2/3 old dead" in text
        assert "roles: 2 flagged, 1 dropped, 1 kept" in text and "drop(s) failed" not in text
        assert screen.query_one(DataTable).row_count == 7

        # enter on the first step opens the leak loader over the tree
        await _go(pilot, screen, "exposed")
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, LeakModal)
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, MainScreen)

        # back to the checklist (C again), the keys step: an app action another part provides
        await pilot.press("C")
        screen = await _loaded(app, pilot)
        called = []
        app.action_open_keys = lambda: called.append("keys")  # as the keys view's app action would be
        await _go(pilot, screen, "keys")
        await pilot.press("enter")
        await settle(app, pilot)
        assert called == ["keys"]
        # a view this build does not have is said, not a crash
        assert screen.open_view("audit") is (callable(getattr(app, "action_open_audit", None)))
        # the deliver step without a run in this session says so
        assert screen.open_view("deliver") is False


async def test_w_writes_the_report_and_the_step_turns_done(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(state))
    write_incident(state, complete=True)
    sim = make_sim()
    app = make_app(sim, tmp_path)
    rehost(state, str(app.client.base_url), sim.inspect.user_id)
    app.demo = False  # a demo session counts only journals begun after it started; these are older
    app.open_checklist = True  # as `neon-tui --checklist` and the demo start
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await _loaded(app, pilot)
        assert [s.state for s in screen.steps][-1] == "todo"
        before = screen.loaded
        await pilot.press("w")
        await until(pilot, lambda: screen.loaded > before, what="the checklist to reload after w")
        await settle(app, pilot)
        (report,) = (state / "reports").glob("incident-*.md")
        assert report.read_text().startswith("# Incident report")
        assert oct(report.stat().st_mode & 0o777) == "0o600"
        assert screen.steps[-1].state == "done" and all(s.state == "done" for s in screen.steps)
        assert "report written" in screen_text(app)
        # escape goes to the tree underneath
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, MainScreen)


@pytest.mark.slow
async def test_the_leak_loader_journals_the_scan_with_when_it_leaked(tmp_path, monkeypatch):
    import json

    state = tmp_path / "state"
    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(state))
    sim = make_sim()
    pid = sim.inspect.project_by_name("acme-prod").id
    bid = sim.inspect.branch_by_name(pid, "staging").id
    sim.inspect.role(pid, bid, "app").password = "Le@ked-42"
    leak = tmp_path / "leak.env"
    leak.write_text("DATABASE_URL=postgresql://app:Le%40ked-42@ep-x-1.aws.neon.tech/neondb\n")
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("L")
        await settle(app, pilot)
        app.screen.query_one("#leak-path").value = str(leak)
        app.screen.query_one("#leak-at").value = "yesterday-ish"
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, LeakModal)  # an unreadable time is said; nothing scanned
        assert not (state / "actions").exists()
        app.screen.query_one("#leak-at").value = "2026-11-30 14:05"
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, MainScreen)
    (path,) = (state / "actions").glob("exposure-*.jsonl")
    text = path.read_text()
    assert "Le@ked-42" not in text and "Le%40ked-42" not in text
    scanned = json.loads(text.splitlines()[1])
    assert scanned["source"] == "leak.env" and scanned["leaked_at"] == "2026-11-30T14:05:00Z"
    assert [pid, bid, "app"] in scanned["exposed"]
