"""Helpers for TUI tests: the real app on an in-process simulator, a frozen clock, an in-memory keyring."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

from keyring.backend import KeyringBackend

from neon_tui.app import NeonApp
from neon_tui.clipboard import Clipboard
from neon_tui.config import Settings
from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.rotation.journal import Journal
from neon_tui.simulator import SimConfig, Simulator

EPOCH = dt.datetime(2026, 6, 15, 9, 0, 0, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 11, 27, 3, 0, 0, tzinfo=dt.timezone.utc)  # 3 a.m., as it will be
IN_PROCESS = "https://neon-sim.invalid/api/v2"


class MemoryKeyring(KeyringBackend):
    """A real keyring backend class that keeps entries in a dict (tests only)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def delete_password(self, service, username):
        self.entries.pop((service, username), None)


# Not a backend neon-tui knows to encrypt: the app accepts it only because make_app's settings allow it by name.
MEMORY_KEYRING = f"{MemoryKeyring.__module__}.{MemoryKeyring.__qualname__}"


def make_sim(**cfg) -> Simulator:
    cfg.setdefault("op_seconds", 0.05)
    cfg.setdefault("epoch", EPOCH)
    return Simulator(SimConfig(**cfg))


def make_app(sim: Simulator, tmp_path: Path, *, read_only: bool = False, settings: Settings | None = None,
             offer_resume: bool = False, clip_mode: str = "osc52") -> NeonApp:
    client = NeonClient(sim.api_key, host=IN_PROCESS, transport=sim.transport(),
                        retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05))
    # The in-memory keyring is allowed as a user would allow another backend: [keyring] allow_backends.
    settings = settings or Settings(keyring_allow=(MEMORY_KEYRING,))
    app = NeonApp(client=client, settings=settings, demo=True, read_only=read_only,
                  now=lambda: NOW, offer_resume=offer_resume,
                  journal_factory=lambda: Journal(tmp_path / "run-20261127T030000Z-test.jsonl"),
                  monotonic=lambda: 0.0)
    app.clip = Clipboard(clip_mode, osc52=app.copy_to_clipboard, clear_after=45, env={})
    return app


async def settle(app, pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await app.workers.wait_for_complete()
    await pilot.pause()


async def until(pilot, predicate, *, timeout: float = 30.0, what="the condition", step: float = 0.02) -> None:
    """Let the app run until `predicate()` holds; fail naming `what` (a text, or a callable giving one from the
    state at the deadline) after `timeout` seconds of wall time. A deadline, not a count of pauses: a loaded CI
    machine stretches every pause and every fsync."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what() if callable(what) else what}")
        await pilot.pause(step)


async def wait_run(app, pilot, timeout: float = 90.0) -> None:
    """Wait until the run on screen has finished; fail the test if it does not within `timeout` seconds of
    wall time (generous: each journal record is fsync'd, and a CI disk can take most of a second for one)."""
    from neon_tui.screens.run import RunScreen

    deadline = time.monotonic() + timeout
    # the run screen comes after the preflight (sinks, the journal's first fsync'd record): wait for it too
    await until(pilot, lambda: isinstance(app.screen, RunScreen), timeout=timeout, what="the run screen")
    session = app.screen.session
    while not (session.finished and not session.running):
        if time.monotonic() > deadline:
            raise AssertionError(f"the run did not finish within {timeout}s: {session.counts()}")
        await asyncio.sleep(0.05)
    await settle(app, pilot)


def screen_text(app) -> str:
    """Everything on screen, as the SVG a screenshot would be, with entities and no-break spaces undone."""
    import html

    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


async def mark_role(app, pilot, filter_text: str, role_name: str, branch_id: str | None = None) -> None:
    """Filter the tree, put the cursor on a role (on a given branch, if named) and mark it with space."""
    await settle(app, pilot)
    await pilot.press("slash", *filter_text, "enter")
    await settle(app, pilot)
    tree = app.screen.tree
    ref = next(r for r in tree.refs if r.kind == "role" and r.role_name == role_name
               and (branch_id is None or r.branch_id == branch_id))
    tree.move_cursor(tree.node_for(ref))
    await pilot.pause()
    await pilot.press("space")
    await settle(app, pilot)


def staging_ids(sim) -> tuple[str, str]:
    """(project id, branch id) of acme-prod's staging branch in the demo account."""
    pid = sim.inspect.project_by_name("acme-prod").id
    return pid, sim.inspect.branch_by_name(pid, "staging").id


async def review_staging_app(app, pilot) -> None:
    """Mark acme-prod/staging/app and open the review."""
    await mark_role(app, pilot, "staging", "app")
    await pilot.press("r")
    await settle(app, pilot)


def footer_keys(app) -> dict[str, str]:
    """The footer's keys that are wholly on screen (key as shown -> description): what a user can read."""
    from textual.widgets import Footer

    footer = app.screen.query_one(Footer)
    palette = footer.query("FooterKey.-command-palette")
    # The palette key is docked right, over whatever runs under it.
    right = palette.first().region.x if palette else app.size.width
    keys = {}
    for fk in footer.query("FooterKey"):
        region = fk.region
        limit = app.size.width if fk.has_class("-command-palette") else right
        if region.width and region.x >= 0 and region.right <= limit:
            keys[fk.key_display] = fk.description
    return keys
