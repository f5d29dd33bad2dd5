"""Regenerate screenshots/*.png of the main screens (`make screenshots`): the real app on the demo account.

Needs rsvg-convert (Debian: librsvg2-bin) and a monospace font with box-drawing glyphs (fonts-symbola helps).
Connection strings stay masked: no password is ever in a screenshot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from neon_tui.app import NeonApp
from neon_tui.clipboard import Clipboard
from neon_tui.neon import NeonClient
from neon_tui.rotation.journal import Journal
from neon_tui.simulator import SimConfig, Simulator

OUT = Path(__file__).resolve().parent.parent / "screenshots"
# Wide (a laptop terminal) and 80x24 (the smallest the app is made for; tmux split over SSH).
SIZES = {"": (140, 40), "80x24": (80, 24)}
NOW = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.timezone.utc)
EPOCH = dt.datetime(2026, 6, 15, 9, 0, tzinfo=dt.timezone.utc)


async def until(predicate, what: str, timeout: float = 120.0) -> None:
    """Wait for `predicate()`, or fail saying what never happened (a screenshot run never hangs)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit(f"make_screenshots: {what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def settle(app, pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await app.workers.wait_for_complete()


def demo_app(sim: Simulator, tmp: Path, journal: str) -> NeonApp:
    client = NeonClient(sim.api_key, host="https://neon-sim.invalid/api/v2", transport=sim.transport())
    app = NeonApp(client=client, demo=True, now=lambda: NOW, offer_resume=False,
                  journal_factory=lambda: Journal(tmp / journal))
    app.clip = Clipboard("osc52", osc52=app.copy_to_clipboard, env={})
    return app


def saver(app: NeonApp, tmp: Path, svgs: list[Path]):
    """save(name): the screen as an SVG, notifications cleared first."""

    def save(name: str) -> None:
        app.clear_notifications()
        path = tmp / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(tmp))
        svgs.append(path)

    return save


async def shoot(tmp: Path, size: tuple[int, int]) -> list[Path]:
    sim = Simulator(SimConfig(op_seconds=1.5, epoch=EPOCH))
    app = demo_app(sim, tmp, "run-20261127T030000Z-demo.jsonl")
    svgs: list[Path] = []
    save = saver(app, tmp, svgs)

    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        tree = app.screen.tree
        from neon_tui.widgets.org_tree import NodeRef

        prod = sim.inspect.project_by_name("acme-prod")
        node = tree.node_for(NodeRef("project", org_id=prod.org_id, project_id=prod.id))
        tree.move_cursor(node)
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.press("j", "enter", "j", "j")
        await settle(app, pilot)
        save("01-tree")
        await pilot.press("slash", *"staging", "enter")
        await settle(app, pilot)
        ref = next(r for r in tree.refs if r.kind == "branch" and r.project_id == prod.id
                   and sim.inspect.branch_by_name(prod.id, "staging").id == r.branch_id)
        tree.move_cursor(tree.node_for(ref))
        await pilot.pause()
        await pilot.press("space")
        await settle(app, pilot)
        await pilot.press("j")
        await pilot.pause()
        save("02-filter-and-mark")
        await pilot.press("r")
        await settle(app, pilot)
        save("03-review")
        await pilot.press("y")
        await asyncio.sleep(0.8)
        await pilot.pause()
        save("04-run-live")
        await until(lambda: getattr(getattr(app.screen, "session", None), "finished", False) is True,
                    "the run finishing")
        await settle(app, pilot)
        save("05-results-masked")
        await pilot.press("question_mark")
        await pilot.pause()
        save("06-help")
        await pilot.press("escape", "at")
        await settle(app, pilot)
        save("07-api-log")
    svgs += await shoot_drill(tmp, size)
    return svgs


async def shoot_drill(tmp: Path, size: tuple[int, int]) -> list[Path]:
    """The incident drill: the demo's sample leak found (exposed badges, marks), then rotated and verified
    with real logins when PostgreSQL is on this machine."""
    from neon_tui.simulator.postgres import start_or_explain

    sim = Simulator(SimConfig(op_seconds=1.0, epoch=EPOCH))
    backend, why = start_or_explain(sim)
    if why:
        print(f"note: {why}; the verified column will say so", file=sys.stderr)
    from neon_tui.rotation.journal import journal_dir

    # the drill's run journal where the checklist and the report look for it (the state dir is a temp dir)
    app = demo_app(sim, journal_dir(), "run-20261127T031500Z-drill.jsonl")
    app.simulator, app.demo_postgres = sim, backend
    svgs: list[Path] = []
    save = saver(app, tmp, svgs)

    try:
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            await pilot.press("L")
            await settle(app, pilot)
            await pilot.click("#sample")
            await settle(app, pilot)
            await asyncio.sleep(0.3)
            await settle(app, pilot)
            save("08-exposure")
            await pilot.press("r")
            await settle(app, pilot)
            await pilot.press("y")
            await until(lambda: getattr(getattr(app.screen, "session", None), "finished", False) is True,
                        "the drill's run finishing")
            await settle(app, pilot)
            save("09-verified")
            # the rest of the incident: the checklist the drill follows, then the views its steps open
            await pilot.press("C")
            await settle(app, pilot)
            await asyncio.sleep(0.5)
            await settle(app, pilot)
            save("10-checklist")
            for key, name in (("K", "11-keys"), ("A", "12-audit"), ("I", "13-ipallow")):
                await pilot.press("escape")
                await settle(app, pilot)
                await pilot.press(key)
                await settle(app, pilot)
                await asyncio.sleep(1.5)  # the keys view's probe waits out a second of Neon's last-used clock
                await settle(app, pilot)
                save(name)
    finally:
        if backend is not None:
            backend.close()
    return svgs


def to_png(svg: Path, png: Path, width: int = 1600) -> None:
    """SVG -> PNG with rsvg-convert. Textual writes each run of cells as one <text> at its column, with spaces as
    &#160;; without xml:space="preserve" librsvg strips a run's leading and trailing spaces, so "main" and
    " default" were drawn touching ("maindefault"). Preserving them draws what the terminal shows."""
    text = svg.read_text(encoding="utf-8")
    if 'xml:space="preserve"' not in text:
        text = text.replace("<svg ", '<svg xml:space="preserve" ', 1)
    fixed = svg.with_suffix(".preserve.svg")
    fixed.write_text(text, encoding="utf-8")
    subprocess.run(["rsvg-convert", "-w", str(width), "-b", "#1e1e1e", str(fixed), "-o", str(png)], check=True)


def main() -> int:
    if not shutil.which("rsvg-convert"):
        print("rsvg-convert not found: apt-get install librsvg2-bin fonts-symbola", file=sys.stderr)
        return 2
    only = sys.argv[1:]  # e.g. "80x24" or "wide": one pass
    for sub, size in SIZES.items():
        if only and (sub or "wide") not in only:
            continue
        out = OUT / sub if sub else OUT
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            # journals of each pass in their own temp state dir: never the user's, never the other pass's
            os.environ["NEON_TUI_STATE_DIR"] = str(Path(tmp) / "state")
            for svg in asyncio.run(shoot(Path(tmp), size)):
                png = out / (svg.stem + ".png")
                to_png(svg, png, width=round(1600 * size[0] / 140))
                print(png.relative_to(OUT.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
