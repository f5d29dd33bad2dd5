"""The run screen at 80 and 140 columns: widths, counts, elapsed/ETA, the failed view, masking and quitting."""

from __future__ import annotations

import asyncio
import html
import re
import time

import pytest

from textual.widgets import DataTable, Footer, ProgressBar, Static
from ui_helpers import footer_keys, make_app, make_sim, review_staging_app, settle, staging_ids, until, wait_run

from neon_tui.screens.modals import QuitModal, TypedConfirmModal
from neon_tui.screens.run import RunScreen, break_points


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _project_run(app, pilot, project: str = "acme-analytics") -> RunScreen:
    """Mark a whole project (12 roles on 3 branches in the demo) and start its run."""
    await settle(app, pilot)
    await pilot.press("slash", *project, "enter")
    await settle(app, pilot)
    tree = app.screen.tree
    tree.move_cursor(tree.node_for(next(r for r in tree.refs if r.kind == "project")))
    await pilot.pause()
    await pilot.press("space", "r")
    await settle(app, pilot)
    await pilot.press("y")
    await until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
    return app.screen


async def _running(app) -> None:
    deadline = time.monotonic() + 30
    while not (isinstance(app.screen, RunScreen) and app.screen.running):
        if time.monotonic() > deadline:
            raise AssertionError("the run did not start")
        await asyncio.sleep(0.01)


def _shown(run: RunScreen) -> str:
    """What the run screen shows of its rows: the table's cells and the line under it."""
    table = run.query_one(DataTable)
    cells = [str(c) for i in range(table.row_count) for c in table.get_row_at(i)]
    return "\n".join([*cells, str(run.query_one("#run-selected", Static).render())])


def _fits(table: DataTable, column: str) -> list[str]:
    """The cells of a column that are cut (longer than the column is wide)."""
    width = next(c.width for c in table.ordered_columns if c.key.value == column)
    return [str(c) for c in table.get_column(column) if len(str(c)) > width]


@pytest.mark.slow
async def test_columns_use_the_width_there_is_and_follow_a_resize(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(140, 45)) as pilot:
        run = await _project_run(app, pilot)
        await wait_run(app, pilot)
        table = run.query_one(DataTable)
        # Wide: whole target names (no "backfill-2025/…"), the project named once in the title, whole details.
        assert str(table.ordered_columns[1].label) == "target in acme-analytics"
        assert {str(c) for c in table.get_column("target")} == {t.label.removeprefix("acme-analytics/")
                                                                 for t in run.plan.targets}
        assert not _fits(table, "target") and not _fits(table, "detail") and not _fits(table, "conn")
        assert table.virtual_size.width <= table.size.width  # nothing to scroll sideways
        wide = dict(run.widths)
        await pilot.resize_terminal(80, 24)
        await settle(app, pilot)
        assert run.widths != wide and "verified" not in run.widths
        # No sideways scrollbar (it drew a stray glyph under the table).
        assert table.virtual_size.width <= table.size.width and not table.show_horizontal_scrollbar
        # 80 columns: names like backfill-2025/neondb_owner come first, whole; the endpoint column gives way
        # (never a cut "postgresql"), the row's string is whole on the line below.
        assert "conn" not in run.widths
        assert all(len(run.label(t.key)) <= run.widths["target"] for t in run.plan.targets)
        assert not _fits(table, "target") and not _fits(table, "state")
        assert "ep-" in str(run.query_one("#run-selected", Static).render())
        keys = footer_keys(app)
        for key in ("v", "c", "w", "p", "k", "e", "esc", "?", "@"):
            assert key in keys, (key, keys)  # wholly on screen
        assert run.query_one(Footer).compact


def test_connection_strings_wrap_at_their_seams_never_inside_a_host():
    host = "ep-misty-math-a9m2i0hz.c-3.eu-central-1.aws.neon.tech"
    uri = f"postgresql://app:********@{host}/neondb?sslmode=require&channel_binding=require · database neondb"
    for width in (56, 60, 78):
        lines = break_points(uri, width).splitlines()
        assert all(len(line) <= width for line in lines)
        assert any(host in line for line in lines), (width, lines)
        assert "".join(lines).replace(" ", "") == uri.replace(" ", "")


@pytest.mark.slow
async def test_a_cancelled_run_is_not_counted_as_done(tmp_path):
    app = make_app(make_sim(op_seconds=0.4), tmp_path)
    async with app.run_test(size=(140, 45)) as pilot:
        run = await _project_run(app, pilot)
        await pilot.press("x")
        await wait_run(app, pilot)
        states = [v.state for v in run.session.views()]
        done = sum(1 for s in states if s in ("rotated", "delivered"))
        cancelled = states.count("cancelled")
        assert cancelled > 0
        head = str(run.query_one("#run-head", Static).render())
        assert head.startswith("cancelled · ")
        assert f"{done}/12 done" in head and f"{cancelled} cancelled" in head
        assert run.query_one(ProgressBar).progress == done < 12


@pytest.mark.slow
async def test_retry_keeps_the_runs_elapsed_time_and_f_shows_the_failed_only(tmp_path):
    sim = make_sim(op_seconds=0.5)
    app = make_app(sim, tmp_path)
    clock = Clock()
    app.monotonic = clock
    pid, bid = staging_ids(sim)
    async with app.run_test(size=(80, 24)) as pilot:
        await review_staging_app(app, pilot)
        sim.inspect.set_faults(1.0, ("op_failed",))
        await pilot.press("y")
        await _running(app)
        clock.now += 30
        await wait_run(app, pilot)
        run = app.screen
        assert isinstance(run, RunScreen)
        head = str(run.query_one("#run-head", Static).render())
        assert "30s elapsed" in head and "1 failed" in head
        keys = footer_keys(app)
        for key in ("R", "f", "p", "c", "w", "k", "e", "esc", "?", "@"):
            assert key in keys, (key, keys)  # every key that matters fits 80 columns
        await pilot.press("f")
        await settle(app, pilot)
        assert run.failed_only and run.query_one(DataTable).row_count == 1
        assert "FAILED ONLY" in str(run.query_one("#run-head", Static).render())
        sim.inspect.set_faults(0.0)
        clock.now += 500  # time spent reading the failure is not run time
        await pilot.press("R")
        await _running(app)
        clock.now += 5
        await wait_run(app, pilot)
        assert run.states[(pid, bid, "app")] == "rotated"
        head = str(run.query_one("#run-head", Static).render())
        assert "35s elapsed" in head, head
        assert run.query_one(DataTable).row_count == 0  # the retried target left the failed view
        await pilot.press("f")
        await settle(app, pilot)
        assert not run.failed_only and run.query_one(DataTable).row_count == 1
        # Left and reopened (o): the run's clock goes on from where it was.
        await pilot.press("escape", "y")
        await settle(app, pilot)
        assert not isinstance(app.screen, RunScreen)
        clock.now += 60
        await pilot.press("o")
        await settle(app, pilot)
        reopened = app.screen
        assert isinstance(reopened, RunScreen) and reopened is not run
        assert "35s elapsed" in str(reopened.query_one("#run-head", Static).render())


@pytest.mark.slow
async def test_eta_appears_once_throughput_is_known(tmp_path):
    app = make_app(make_sim(op_seconds=0.3), tmp_path)
    clock = Clock()
    app.monotonic = clock
    async with app.run_test(size=(140, 45)) as pilot:
        run = await _project_run(app, pilot)
        assert run.eta() is None  # nothing settled yet: no figure
        for _ in range(200):
            settled = sum(1 for v in run.session.views() if v.state in ("rotated", "delivered", "failed"))
            if settled >= 3 or not run.running:
                break
            await asyncio.sleep(0.02)
        clock.now += 10
        left = sum(1 for v in run.session.views() if v.state not in
                   ("rotated", "delivered", "failed", "skipped", "cancelled", "unconfirmed"))
        if run.running and left:
            settled = sum(1 for v in run.session.views() if v.state in ("rotated", "delivered", "failed"))
            assert run.eta() == left * 10 / settled
            run.tick()
            assert "left" in str(run.query_one("#run-head", Static).render())
        await wait_run(app, pilot)
        assert run.eta() is None


@pytest.mark.slow
async def test_a_revealed_password_is_masked_when_the_cursor_leaves_and_never_in_a_screenshot(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(140, 45)) as pilot:
        run = await _project_run(app, pilot)
        await wait_run(app, pilot)
        key = run.selected_key()
        password = run.session.result(key).password.reveal()
        await pilot.press("v")
        await settle(app, pilot)
        assert password in _shown(run)
        # Every screenshot path goes through export_screenshot: the palette's deliver_screenshot too.
        svg = html.unescape(app.export_screenshot()).replace("\xa0", " ")
        assert password not in svg and "********" in svg
        saved = app.save_screenshot(path=str(tmp_path), filename="shot.svg")
        assert password not in html.unescape(open(saved, encoding="utf-8").read()).replace("\xa0", " ")
        assert key in run.revealed and password in _shown(run)  # shown again after the screenshot
        await pilot.press("j")
        await settle(app, pilot)
        assert not run.revealed and password not in _shown(run)


@pytest.mark.slow
async def test_quit_during_a_run_counts_what_would_be_lost_and_follows_the_run(tmp_path):
    app = make_app(make_sim(op_seconds=0.3), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        run = await _project_run(app, pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, QuitModal)
        body = str(modal.query_one(".dialog-body", Static).render())
        assert "A run is in progress" in body and "to go" in body
        session = run.session
        # While it is open, the count of passwords in hand and not at a sink follows the run.
        for _ in range(400):
            if len(session.undelivered()) >= 2 or not session.running:
                break
            await asyncio.sleep(0.02)
        assert session.running, "the run ended before two passwords were in hand: make op_seconds longer"
        # the dialog re-asks every 0.25 s: the count shows while the run still goes (read as soon as it does,
        # so a loaded machine finishing the run meanwhile does not turn this into a race)
        counted = None
        for _ in range(100):
            await pilot.pause(0.05)
            body = str(modal.query_one(".dialog-body", Static).render())
            counted = re.search(r"(\d+) new password\(s\) are not delivered to a sink yet", body)
            if (counted and int(counted.group(1)) >= 2) or not session.running:
                break
        assert counted and 2 <= int(counted.group(1)) <= 12, body
        assert "Neon stores them" in body  # acme-analytics stores passwords: resuming can read them back
        # The run finishes under the dialog (a deadline, not a count of naps: a loaded machine stretches both).
        await until(pilot, lambda: session.finished and not session.running, timeout=120, step=0.05,
                    what=lambda: "the run to finish; still going: " + "; ".join(
                        f"{v.target.label}={v.state} ({v.reason})" for v in session.views()
                        if v.state in ("planned", "resetting", "applying")) + f"; halts={session.halts}")
        # ... and the dialog, which asks again every 0.25 s, follows it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await pilot.pause(0.05)
            body = str(modal.query_one(".dialog-body", Static).render())
            if "in progress" not in body:
                break
        held = len(session.undelivered())
        assert "in progress" not in body
        assert f"{held} new password(s) have not been copied or stored yet" in body
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is run


@pytest.mark.slow
async def test_at_80_columns_targets_in_several_projects_are_named_whole(tmp_path):
    """Several projects: the target names come first at 80 columns; the endpoint column gives way to them
    (the row's whole string is on the line below the table)."""
    app = make_app(make_sim(op_seconds=0.1), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("slash", *"role:app", "enter")
        await settle(app, pilot)
        await pilot.press("M")  # every `app` role: 18 in 6 projects, under the question's threshold
        await settle(app, pilot)
        await pilot.press("r")
        await settle(app, pilot)
        await pilot.press("y")
        await settle(app, pilot)
        if isinstance(app.screen, TypedConfirmModal):  # protected branches among them: typed confirmation
            await pilot.press(*"rotate", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
        run = app.screen
        assert isinstance(run, RunScreen) and len({t.project_id for t in run.plan.targets}) > 1
        await wait_run(app, pilot)
        table = run.query_one(DataTable)
        assert "conn" not in run.widths
        assert {str(c) for c in table.get_column("target")} == {t.label for t in run.plan.targets}
        fits = [t for t in run.plan.targets if len(t.label) <= run.widths["target"]]
        assert len(fits) >= len(run.plan.targets) * 3 // 4, run.widths  # most names whole in the table…
        longest = max(run.plan.targets, key=lambda t: len(t.label))
        table.move_cursor(row=run.shown_keys.index(longest.key))
        await pilot.pause()
        if longest not in fits:  # …and one the table cuts is named whole on the line below
            assert str(run.query_one("#run-selected", Static).render()).replace("\n", "").startswith(
                f"{longest.label}: postgresql://")
        assert table.virtual_size.width <= table.size.width
        below = str(run.query_one("#run-selected", Static).render())
        assert "postgresql://" in below and "********" in below
