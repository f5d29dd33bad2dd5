"""A crash report never shows local variables, so a secret held in one cannot leak through it."""

from __future__ import annotations

import io

from rich.console import Console

from neon_tui.app import NeonApp

# Built at run time so the value is in no source line a traceback could quote.
SECRET = "".join(["npg_", "Leaked", "IfLocals", "Shown1"])


def buggy_handler() -> None:
    password = SECRET  # a plain str local, as a bug might leave one
    raise RuntimeError(f"crash with {len(password)} chars")


async def test_fatal_error_report_has_no_locals():
    app = NeonApp(offer_resume=False, env={"NEON_API_KEY": ""})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        try:
            buggy_handler()
        except RuntimeError:
            app._fatal_error()  # what Textual calls for an unhandled exception
        captured = list(app._exit_renderables)
        app._exit_renderables.clear()
    buf = io.StringIO()
    console = Console(file=buf, width=200)
    for renderable in captured:
        console.print(renderable)
    report = buf.getvalue()
    assert "RuntimeError" in report and "buggy_handler" in report
    assert SECRET not in report
