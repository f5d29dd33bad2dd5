"""StoredCopiesModal: before the run, the copies of connection strings stored in .env files under a path,
whose they are, which ones this run patches (and which stay stale), and a per-file diff with every
password masked. Read-only; the files are read in a worker thread."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from neon_tui.rotation.envpreview import Preview, preview


def known_endpoints(inventory) -> dict[str, tuple[str, str]]:
    """endpoint id -> (project name, branch name) for the branches already loaded (no request)."""
    out: dict[str, tuple[str, str]] = {}
    for p in list(getattr(inventory, "projects", {}).values()):
        for b in list((p.branches or {}).values()):
            for e in b.endpoints:
                out[e.id] = (p.project.name, b.branch.name)
    return out


def render(pv: Preview) -> Text:
    t = Text()
    if pv.problems:
        for p in pv.problems:
            t.append(f"! {p}\n", style="bold red")
    if not pv.copies:
        t.append(f"No Neon connection string in {len(pv.files)} .env file(s) under {pv.path}.\n")
        return t
    n, stale = len(pv.rotated), len(pv.stale)
    t.append(f"{len(pv.copies)} stored cop{'y' if len(pv.copies) == 1 else 'ies'} in {len(pv.files)} file(s): "
             f"{n} of the run's targets, {stale} not rotated by this run\n\n", style="bold")
    t.append(f"{'file:line':<34} {'variable':<24} {'target':<36} {'database':<12} kind\n", style="underline")
    for c in pv.copies:
        v = c.value
        try:
            name = str(v.path.relative_to(pv.path)) if v.path != pv.path else v.path.name
        except ValueError:
            name = str(v.path)
        row = f"{name + ':' + str(v.line):<34} {v.name:<24} {c.target:<36} {v.uri.database:<12} {v.uri.kind}"
        if not c.rotated:
            t.append(row + "  not rotated by this run (stays stale)\n", style="dim")
        elif c.note:
            t.append(row + f"  NOT patched: {c.note}\n", style="yellow")
        else:
            t.append(row + "\n")
    for f, lines in pv.diffs.items():
        t.append(f"\n--- {f}\n+++ {f} (after the run)\n", style="bold")
        for line in lines:
            style = "red" if line.startswith("- ") else "green" if line.startswith("+ ") else "cyan"
            t.append(line + "\n", style=style)
    return t


class StoredCopiesModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,s,q", "dismiss", "Close", id="stored-close")]

    def __init__(self, path: str, targets) -> None:
        super().__init__()
        self.path = path
        self.targets = list(targets)
        self.preview: Preview | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -help", id="stored-dialog"):
            yield Label("Stored copies (passwords masked)", classes="dialog-title")
            with VerticalScroll():
                yield Static(f"Reading .env files under {self.path}…", markup=False, id="stored-body")
            yield Static("Read-only: nothing is written until the run. esc closes.", classes="dialog-hint")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, exit_on_error=False, description="Reading .env files")
    async def load(self) -> None:
        endpoints = known_endpoints(getattr(self.app, "inventory", None))
        pv = await asyncio.to_thread(preview, self.path, self.targets, endpoints)
        self.preview = pv
        self.query_one("#stored-body", Static).update(render(pv))

    def action_dismiss(self) -> None:
        self.dismiss()
