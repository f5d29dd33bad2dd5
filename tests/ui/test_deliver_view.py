"""The deliver view (D on the run screen): targets × sinks, ✓ / ✗ / … / –, and a retry per failed cell.
The real app on the in-process simulator, with two test sinks added to the run (one fails for one target)."""

from __future__ import annotations

import pytest
from ui_helpers import make_app, make_sim, screen_text, settle, until, wait_run

import neon_tui.app as app_module
from neon_tui.rotation.journal import read_journal
from neon_tui.rotation.session import RunSession
from neon_tui.rotation.sinks import Receipt, SinkError
from neon_tui.screens.deliver import DeliverScreen
from neon_tui.screens.modals import BreakerModal, DeliveryModal, ErrorModal
from neon_tui.screens.review import ReviewScreen
from neon_tui.screens.run import RunScreen

JOURNAL = "run-20261127T030000Z-test.jsonl"


class ListSink:
    """Keeps what it got in a list; fails for the targets in `broken_for` (a cause that can be fixed)."""

    automatic = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: dict = {}
        self.broken_for: set = set()

    async def preflight(self) -> str:
        return self.name

    async def deliver(self, result) -> Receipt:
        key = result.target.key
        if key in self.broken_for:
            raise SinkError("vault sealed")
        self.got[key] = result.password
        return Receipt(self.name, f"{self.name} entry {len(self.got)}")


def key_of(sim, project: str, branch: str, role: str) -> tuple[str, str, str]:
    pid = sim.inspect.project_by_name(project).id
    return pid, sim.inspect.branch_by_name(pid, branch).id, role


@pytest.mark.slow
async def test_deliver_view_shows_each_sink_per_target_and_retries_a_failed_cell(tmp_path, monkeypatch):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    good, flaky = ListSink("memo"), ListSink("vault")
    staging = key_of(sim, "acme-prod", "staging", "app")
    pr142 = key_of(sim, "acme-prod", "preview/pr-142", "app")
    flaky.broken_for = {pr142}

    def with_test_sinks(client, plan, *, sinks, **kw):
        kw.update(delivery_attempts=1, delivery_backoff=0.0)
        return RunSession(client, plan, sinks=[*sinks, good, flaky], **kw)

    monkeypatch.setattr(app_module, "RunSession", with_test_sinks)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        for key in (staging, pr142):
            await app.inventory.load_project_tree(app.inventory.projects[key[0]])
        app.screen.tree.marks.update([staging, pr142])
        await pilot.press("r")
        await settle(app, pilot)
        await pilot.press("y")
        await until(pilot, lambda: type(app.screen) is BreakerModal, what="the breaker's question")
        await pilot.press("s")  # stop: the password for the vault stays held
        await wait_run(app, pilot)
        session = app.session
        assert session.view(pr142).delivery_failed == {"vault": "vault sealed"}
        assert session.view(pr142).state == "rotated"

        await pilot.press("D")
        await settle(app, pilot)
        assert type(app.screen) is DeliverScreen
        text = screen_text(app)
        assert "memo" in text and "vault" in text
        assert "✗ vault sealed" in text and text.count("✓") >= 3
        table = app.screen.query_one("DataTable")
        row = app.screen.keys.index(pr142)
        table.move_cursor(row=row, column=2)  # the vault cell of pr-142
        await pilot.pause()
        assert "vault failed: vault sealed" in screen_text(app)

        await pilot.press("r")  # still broken: says so, stays ✗
        await settle(app, pilot)
        assert "vault still fails" in screen_text(app)
        assert session.view(pr142).delivery_failed

        flaky.broken_for.clear()  # the cause is fixed
        await pilot.press("r")
        await settle(app, pilot)
        await pilot.pause(0.6)
        text = screen_text(app)
        assert "✗ vault" not in text and "delivered to vault for" in text
        v = session.view(pr142)
        assert v.delivered.keys() == {"memo", "vault"} and not v.delivery_failed and v.state == "delivered"
        assert flaky.got[pr142] == good.got[pr142]
        for k in (staging, pr142):
            assert sim.inspect.password(*k) not in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)
        assert type(app.screen) is RunScreen
        assert "delivered to memo, vault" in screen_text(app)
        assert session.complete and not session.undelivered()
        records = [r for r in read_journal(tmp_path / JOURNAL).targets.values()]
        assert any(r.delivered.get("vault") for r in records)


async def test_deliver_view_without_a_held_password_says_why(tmp_path):
    from neon_tui.rotation.sinks import SinkError as Err

    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        key = key_of(sim, "acme-prod", "staging", "app")
        await app.inventory.load_project_tree(app.inventory.projects[key[0]])
        app.screen.tree.marks.update([key])
        await pilot.press("r")
        await settle(app, pilot)
        plan = app.screen.plan
        session = RunSession(app.client, plan, sinks=[ListSink("memo")])
        try:
            await session.retry_delivery(key, "memo")
        except Err as e:
            assert "does not hold a new password" in str(e)
        else:
            raise AssertionError("no password held: the retry must say so")


async def _review_two(app, pilot, sim):
    keys = [key_of(sim, "acme-prod", "staging", "app"), key_of(sim, "acme-prod", "preview/pr-142", "app")]
    await settle(app, pilot)
    for key in keys:
        await app.inventory.load_project_tree(app.inventory.projects[key[0]])
    app.screen.tree.marks.update(keys)
    await pilot.press("r")
    await settle(app, pilot)
    assert type(app.screen) is ReviewScreen
    return keys


@pytest.mark.slow
async def test_more_sinks_with_a_bad_or_unfit_spec_is_refused_before_any_reset(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        keys = await _review_two(app, pilot, sim)
        for spec, words in (("bogus:thing", "unknown --deliver"),
                            ("vercel:web", "holds one value, and 2 targets"),
                            ("sink:nope", "sink:nope")):
            await pilot.press("d")
            await pilot.pause()
            assert type(app.screen) is DeliveryModal
            await pilot.press("m")
            app.screen.query_one("#more").value = ""
            await pilot.press(*spec, "enter")
            await pilot.pause()
            assert f"deliver: {spec}" in screen_text(app)
            await pilot.press("y")
            await settle(app, pilot)
            assert type(app.screen) is ErrorModal, spec
            text = screen_text(app)
            assert words in text and "Nothing was reset" in text, (spec, text)
            assert app.session is None and all(sim.inspect.reset_count(*k) == 0 for k in keys)
            await pilot.press("escape")
            await settle(app, pilot)
            assert type(app.screen) is ReviewScreen


@pytest.mark.slow
async def test_more_sinks_adds_a_file_next_to_the_keyring_and_the_deliver_view_shows_both(tmp_path, memory_keyring):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    out = tmp_path / "more.tsv"
    async with app.run_test(size=(120, 36)) as pilot:
        keys = await _review_two(app, pilot, sim)
        await pilot.press("d", "m", *f"file:{out}", "enter")
        await pilot.pause()
        await pilot.press("d", "k")  # the main choice changes; the more sinks stay
        await pilot.pause()
        assert app.screen.delivery_text() == f"deliver: file:{out} + keyring (d)"  # too long to see whole
        await pilot.press("y")
        await wait_run(app, pilot)
        session = app.session
        assert {s.name for s in session.sinks} == {"keyring", f"file:{out}"}
        assert all(session.view(k).state == "delivered" for k in keys)
        assert all(sim.inspect.password(*k) in out.read_text() for k in keys)
        await pilot.press("D")
        await settle(app, pilot)
        text = screen_text(app)
        assert "keyring" in text and text.count("✓") >= 5  # 2 × 2 cells and the legend
        for k in keys:
            assert sim.inspect.password(*k) not in text
