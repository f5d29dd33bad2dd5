"""The TUI's .env delivery: the stored copies before the run (masked), files patched in place, and a preflight
failure that resets nothing. The real app on the in-process simulator."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from ui_helpers import make_app, make_sim, review_staging_app, screen_text, settle, staging_ids, wait_run

from neon_tui.screens.modals import ErrorModal
from neon_tui.screens.stored import StoredCopiesModal

pytestmark = pytest.mark.slow  # every test here takes over ~2 s


def uri(pw: str, host: str, user: str = "app", db: str = "neondb") -> str:
    return f"postgresql://{quote(user, safe='')}:{quote(pw, safe='')}@{host}/{db}?sslmode=require"


def write_envs(sim, app, root):
    """Two .env files with copies of staging/app (direct and pooled) and one of staging/data team."""
    pid, bid = staging_ids(sim)
    target = app.screen.plan.targets[0]
    host = target.read_write_endpoints[0].host
    pooled = host.replace(".", "-pooler.", 1)
    old = sim.inspect.password(pid, bid, "app")
    other = sim.inspect.password(pid, bid, "data team")
    (root / "web").mkdir(parents=True)
    a = root / ".env"
    a.write_text(f"# app\nDATABASE_URL=\"{uri(old, pooled)}\"\nDEBUG=1\n")
    b = root / "web" / ".env.local"
    b.write_text(f"export DIRECT_URL='{uri(old, host)}'  # direct\nANALYTICS_URL={uri(other, host, 'data team', 'analytics')}\n")
    return a, b, old, other, host, pooled


async def choose_env(pilot, path) -> None:
    await pilot.press("d")
    await pilot.pause()
    await pilot.press("e", *str(path), "enter")
    await pilot.pause()


async def test_env_delivery_shows_the_stored_copies_masked_and_patches_the_files(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    root = tmp_path / "proj"
    async with app.run_test(size=(160, 40)) as pilot:
        await review_staging_app(app, pilot)
        a, b, old, other, host, pooled = write_envs(sim, app, root)
        before_a, before_b = a.read_text(), b.read_text()
        await choose_env(pilot, root)
        await settle(app, pilot)
        assert type(app.screen) is StoredCopiesModal
        text = screen_text(app)
        assert ".env:2" in text and "DATABASE_URL" in text and "acme-prod/staging/app" in text
        assert "web/.env.local:1" in text and "DIRECT_URL" in text and "pooled" in text and "direct" in text
        assert "ANALYTICS_URL" in text and "not rotated by this run" in text
        assert 'DATABASE_URL="postgresql://app:********@' in text and "••••(new)••••" in text
        for pw in (old, other, quote(old, safe=""), quote(other, safe="")):
            assert pw not in text
        await pilot.press("escape")
        await pilot.pause()
        assert "patch .env in" in screen_text(app)
        await pilot.press("y")
        await wait_run(app, pilot)
        assert app.session.view((pid, bid, "app")).state == "delivered"
        new = sim.inspect.password(pid, bid, "app")
        assert new != old
        assert a.read_text() == before_a.replace(quote(old, safe=""), quote(new, safe=""))
        assert b.read_text() == before_b.replace(quote(old, safe=""), quote(new, safe=""))
        assert quote(other, safe="") in b.read_text()  # the role not rotated is left alone
        shown = screen_text(app)
        assert new not in shown and old not in shown
        assert app.session.old.for_target((pid, bid, "app"))  # the files' old password went to verification


async def test_env_delivery_preflight_failure_resets_nothing(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    pid, bid = staging_ids(sim)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here\n")
    async with app.run_test(size=(160, 40)) as pilot:
        await review_staging_app(app, pilot)
        old = sim.inspect.password(pid, bid, "app")
        await choose_env(pilot, empty)
        await settle(app, pilot)
        assert "No Neon connection string in 0 .env file(s)" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        assert type(app.screen) is ErrorModal
        text = screen_text(app)
        assert "no .env files" in text and "Nothing was reset." in text
        assert sim.inspect.password(pid, bid, "app") == old
        assert app.session is None
