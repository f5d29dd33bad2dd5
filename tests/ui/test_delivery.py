"""The TUI's delivery: keys that hand passwords over, the delivery choice in the review, the breaker dialog,
reopening a run, and targets without a connection string. The real app on the in-process simulator."""

from __future__ import annotations

import pytest
from keyring.backend import KeyringBackend
from ui_helpers import MEMORY_KEYRING, make_app, make_sim, review_staging_app, screen_text, settle, staging_ids, until, wait_run

from neon_tui.config import Settings
from neon_tui.rotation.journal import read_journal
from neon_tui.screens.main import MainScreen
from neon_tui.screens.modals import BreakerModal, DeliveryModal, ErrorModal
from neon_tui.screens.review import ReviewScreen
from neon_tui.screens.run import RunScreen

pytestmark = pytest.mark.slow  # every test here takes over ~2 s

JOURNAL = "run-20261127T030000Z-test.jsonl"


def key_of(sim, project: str, branch: str, role: str) -> tuple[str, str, str]:
    pid = sim.inspect.project_by_name(project).id
    return pid, sim.inspect.branch_by_name(pid, branch).id, role


async def run_marked(app, pilot, keys, *, delivery_keys=()):
    """Mark these roles, review (optionally choose the delivery with keys), start, wait for the end."""
    await settle(app, pilot)
    tree = app.screen.tree
    for key in keys:
        await app.inventory.load_project_tree(app.inventory.projects[key[0]])
    tree.marks.update(keys)
    await pilot.press("r")
    await settle(app, pilot)
    assert type(app.screen) is ReviewScreen
    if delivery_keys:
        await pilot.press("d")
        await pilot.pause()
        await pilot.press(*delivery_keys)
        await pilot.pause()
    await pilot.press("y")
    await wait_run(app, pilot)
    assert type(app.screen) is RunScreen


def select_row(app, key) -> None:
    table = app.screen.query_one("DataTable")
    table.move_cursor(row=table.get_row_index("/".join(key)))


async def test_env_block_has_a_variable_per_target_and_kind_and_no_endpoint_passwords(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    staging = key_of(sim, "acme-prod", "staging", "app")
    pr142 = key_of(sim, "acme-prod", "preview/pr-142", "app")
    pr157 = key_of(sim, "acme-prod", "preview/pr-157", "app")  # no compute
    async with app.run_test(size=(120, 36)) as pilot:
        await run_marked(app, pilot, [staging, pr142, pr157])
        await pilot.press("e")
        await settle(app, pilot)
        block = app.clipboard
        names = [line.split("=", 1)[0] for line in block.splitlines() if line and not line.startswith("#")]
        assert len(names) == len(set(names))  # a .env file keeps every one of them
        assert "ACME_PROD_STAGING_APP_DATABASE_URL" in names
        assert "ACME_PROD_STAGING_APP_DATABASE_URL_UNPOOLED" in names
        assert "ACME_PROD_PREVIEW_PR_142_APP_DATABASE_URL" in names
        assert f"ACME_PROD_PREVIEW_PR_157_APP_PASSWORD={sim.inspect.password(*pr157)}" in block.splitlines()
        assert "no endpoint yet" in block
        for key in (staging, pr142):
            assert sim.inspect.password(*key) in block
        assert {app.session.view(k).state for k in (staging, pr142, pr157)} == {"delivered"}
        assert read_journal(tmp_path / JOURNAL).ended


async def test_w_copies_the_bare_password_and_d_picks_the_database(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    key = key_of(sim, "acme-prod", "staging", "data team")  # owns analytics; neondb is there too
    async with app.run_test(size=(120, 36)) as pilot:
        await run_marked(app, pilot, [key])
        select_row(app, key)
        await pilot.pause()
        await pilot.press("c")
        await settle(app, pilot)
        first = app.clipboard
        assert first.startswith("postgresql://data%20team:") and "/analytics?" in first  # its own database first
        await pilot.press("d", "c")
        await settle(app, pilot)
        assert "/neondb?" in app.clipboard and "database neondb (2/2, d: next)" in screen_text(app)
        await pilot.press("w")
        await settle(app, pilot)
        assert app.clipboard == sim.inspect.password(*key)
        assert app.session.view(key).state == "delivered"


async def test_a_target_without_compute_hands_over_its_password(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    key = key_of(sim, "acme-prod", "preview/pr-157", "app")
    async with app.run_test(size=(120, 36)) as pilot:
        await run_marked(app, pilot, [key])
        assert "no endpoint yet: password ********" in screen_text(app)
        assert sim.inspect.password(*key) not in screen_text(app)
        await pilot.press("c")
        await settle(app, pilot)
        assert app.clipboard == sim.inspect.password(*key)
        assert app.session.view(key).state == "delivered"


async def test_keyring_chosen_in_the_review_stores_each_target_as_it_rotates(tmp_path, memory_keyring):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    async with app.run_test(size=(120, 36)) as pilot:
        await review_staging_app(app, pilot)
        await pilot.press("d")
        await pilot.pause()
        assert type(app.screen) is DeliveryModal
        await pilot.press("k")
        await pilot.pause()
        assert "deliver: keyring" in screen_text(app)
        await pilot.press("y")
        await wait_run(app, pilot)
        assert app.session.view((pid, bid, "app")).state == "delivered"
        stored = {k: v for k, v in memory_keyring.entries.items() if k[0] == f"neon-tui/{pid}/{bid}"}
        assert stored and all(sim.inspect.password(pid, bid, "app") in v for v in stored.values())
        assert read_journal(tmp_path / JOURNAL).ended


async def test_file_chosen_in_the_review_and_an_existing_file_is_refused_before_any_reset(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    taken = tmp_path / "taken.tsv"
    taken.write_text("keep me\n")
    async with app.run_test(size=(120, 36)) as pilot:
        await review_staging_app(app, pilot)
        await pilot.press("d", "f", *str(taken), "enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        assert type(app.screen) is ErrorModal
        assert "exists" in screen_text(app) and "Nothing was reset" in screen_text(app)
        assert sim.inspect.reset_count(pid, bid, "app") == 0 and taken.read_text() == "keep me\n"
        await pilot.press("escape")
        await settle(app, pilot)
        assert type(app.screen) is ReviewScreen
        fresh = tmp_path / "fresh.tsv"
        await pilot.press("d", "f", *str(fresh), "enter")
        await pilot.pause()
        await pilot.press("y")
        await wait_run(app, pilot)
        lines = [x.split("\t") for x in fresh.read_text().splitlines() if not x.startswith("#")]
        assert lines and all(sim.inspect.password(pid, bid, "app") in x[3] for x in lines)
        assert app.session.view((pid, bid, "app")).state == "delivered"


class FailingKeyring(KeyringBackend):
    """Works for the probe and one target, then fails: a keyring whose daemon goes away mid-run."""

    priority = 1  # type: ignore[assignment]
    ok = 1 + 2  # the probe, then two entries (one target's direct and pooled string)

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict = {}
        self.writes = 0

    def set_password(self, service, username, password):
        from keyring.errors import PasswordSetError

        if self.writes >= self.ok:
            raise PasswordSetError("daemon went away")
        self.writes += 1
        self.entries[(service, username)] = password

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def delete_password(self, service, username):
        self.entries.pop((service, username), None)


async def test_a_failing_keyring_opens_the_breaker_and_by_hand_takes_over(tmp_path):
    import keyring

    previous = keyring.get_keyring()
    kr = FailingKeyring()
    keyring.set_keyring(kr)
    try:
        sim = make_sim()
        name = f"{FailingKeyring.__module__}.FailingKeyring"
        app = make_app(sim, tmp_path, settings=Settings(keyring_allow=(name, MEMORY_KEYRING)))
        pid = sim.inspect.project_by_name("acme-prod").id
        keys = [(pid, sim.inspect.branch_by_name(pid, b).id, "app") for b in ("staging", "preview/pr-142", "dev/alice")]
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(app, pilot)
            for key in keys:
                await app.inventory.load_project_tree(app.inventory.projects[key[0]])
            app.screen.tree.marks.update(keys)
            await pilot.press("r")
            await settle(app, pilot)
            await pilot.press("d", "k")
            await pilot.pause()
            await pilot.press("y")
            await until(pilot, lambda: type(app.screen) is BreakerModal, what="the breaker's question")
            await pilot.pause()
            assert "delivery to keyring failed" in screen_text(app)
            resets_at_breaker = sum(sim.inspect.reset_count(*k) for k in keys)
            await pilot.pause(0.3)
            assert sum(sim.inspect.reset_count(*k) for k in keys) == resets_at_breaker  # nothing new meanwhile
            await pilot.press("h")  # deliver by hand from now on
            await wait_run(app, pilot)
            session = app.session
            assert all(sim.inspect.reset_count(*k) == 1 for k in keys)
            held = session.undelivered()
            assert held and all(session.view(k).state == "rotated" for k in held)
            await pilot.press("e")
            await settle(app, pilot)
            assert not session.undelivered() and session.complete
            assert all(sim.inspect.password(*k) in app.clipboard for k in held)
    finally:
        keyring.set_keyring(previous)


async def test_a_run_left_with_undelivered_passwords_reopens_with_o_and_from_the_palette(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    async with app.run_test(size=(120, 36)) as pilot:
        await review_staging_app(app, pilot)
        await pilot.press("y")
        await wait_run(app, pilot)
        session = app.session
        await pilot.press("escape", "y")  # leave the results for now
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
        assert "1 new password(s) to deliver: o" in screen_text(app)
        # a new run is refused while this one's password waits
        app.screen.action_review()
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
        assert any(c.title == "Open run" for c in app.get_system_commands(app.screen))
        await pilot.press("o")
        await settle(app, pilot)
        assert type(app.screen) is RunScreen and app.screen.session is session
        # one project: its name heads the target column, the rows name branch/role
        assert "target in acme-prod" in screen_text(app) and "staging/app" in screen_text(app)
        await pilot.press("c")
        await settle(app, pilot)
        assert sim.inspect.password(pid, bid, "app") in app.clipboard
        assert session.complete and not session.undelivered()
