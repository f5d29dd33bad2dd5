"""The details pane at 80 columns: ids and host names wrap at their seams (a host's dots, a space, a
parenthesis), never in the middle of a name, and the pane re-wraps when the terminal is resized."""

from __future__ import annotations

import pytest

from ui_helpers import make_app, make_sim, settle

from neon_tui.screens.main import MainScreen
from neon_tui.widgets.wrapping import wrap_text

HOST = "ep-divine-king-ahvdgaj8.c-2.us-east-2.aws.neon.tech"


def test_wrap_breaks_hosts_at_dots_and_ids_in_parentheses():
    text = f"branch   staging (br-shrill-feather-asipzz5f)\nendpoints\n  read_write {HOST} (idle)"
    lines = wrap_text(text, 31).split("\n")
    assert all(len(line) <= 31 for line in lines), lines
    assert "  (br-shrill-feather-asipzz5f)" in lines  # the id whole, on its own line
    joined = "".join(line.strip() for line in lines)
    assert HOST in joined  # nothing lost
    for line in lines:  # every host piece starts at a label boundary: the line before ended before a dot
        if ".neon.tech" in line or ".aws" in line:
            assert line.strip().startswith("."), lines
    assert wrap_text("short", 31) == "short"


def test_a_piece_wider_than_the_line_is_the_only_mid_word_cut():
    lines = wrap_text("x" * 50, 20).split("\n")
    assert all(len(line) <= 20 for line in lines) and "".join(s.strip() for s in lines) == "x" * 50


def _details_lines(app) -> list[str]:
    return str(app.screen.query_one("#details").render()).split("\n")


@pytest.mark.slow
async def test_details_pane_never_cuts_a_host_or_id_at_80_columns(tmp_path):
    sim = make_sim()
    app = make_app(sim, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
        tree = app.screen.tree
        prod = sim.inspect.project_by_name("acme-prod")
        staging = sim.inspect.branch_by_name(prod.id, "staging")
        await pilot.press("slash", *"staging", "enter")  # the filter opens the way to staging's roles
        await settle(app, pilot)
        role = next(r for r in tree.refs if r.kind == "role" and r.branch_id == staging.id and r.role_name == "app")
        tree.move_cursor(tree.node_for(role))
        await settle(app, pilot)
        lines = _details_lines(app)
        width = app.screen.query_one("#details-pane").content_size.width
        assert all(len(line) <= width for line in lines)
        words = set(app.screen.describe(role).split())
        for a, b in zip(lines, lines[1:]):
            if not b.startswith("  "):
                continue  # a new line of the description, not a wrap
            end, start = a.split()[-1], b.split()[0]
            # a wrap falls between words, before a host's dot or a parenthesis, or after an id's dash
            assert end in words or end.endswith("-") or start.startswith((".", "(")), (a, b)
        joined = "".join(line.strip() for line in lines)
        assert staging.id in joined
        # wider: the same role's details re-wrap to the new width (one line for the branch and its id)
        await pilot.resize_terminal(140, 40)
        await settle(app, pilot)
        await pilot.pause(0.2)
        assert any(f"staging ({staging.id})" in line for line in _details_lines(app))
