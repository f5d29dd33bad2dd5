"""The quit/leave question at 3 a.m.: a reflexive enter must keep the new passwords, only y (or a deliberate
choice of the other button) gives them up."""

from __future__ import annotations

import pytest
from ui_helpers import make_app, make_sim, settle

from neon_tui.screens.modals import ResumeModal, YesNoModal
from neon_tui.screens.run import RunScreen


async def _ask(app, pilot, modal: YesNoModal) -> list:
    answers: list = []
    app.push_screen(modal, answers.append)
    await pilot.pause()
    assert app.screen is modal
    return answers


async def test_the_safe_answer_has_focus_and_enter_means_no(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        modal = YesNoModal("Quit?", "2 new password(s) have not been copied or stored yet.", "Quit", "Stay")
        answers = await _ask(app, pilot, modal)
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("enter")
        await pilot.pause()
        assert answers == [False]
        assert app.screen is not modal


async def test_enter_typed_before_the_dialog_has_settled_still_means_no(tmp_path):
    """The enter that follows q within the same instant, before the dialog has focused anything."""
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        answers: list = []
        app.push_screen(YesNoModal("Leave the results?", "Leave anyway?", "Leave", "Stay"), answers.append)
        await pilot.press("enter")
        await pilot.pause()
        assert answers == [False]


async def test_y_still_means_yes_and_n_and_escape_mean_no(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        for key, expected in (("y", True), ("n", False), ("escape", False)):
            answers = await _ask(app, pilot, YesNoModal("Quit?", "Leave anyway?", "Quit", "Stay"))
            await pilot.press(key)
            await pilot.pause()
            assert answers == [expected], key


async def test_choosing_the_other_button_on_purpose_still_works(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        answers = await _ask(app, pilot, YesNoModal("Quit?", "Leave anyway?", "Quit", "Stay"))
        await pilot.press("shift+tab")  # from Stay back to Quit
        await pilot.pause()
        assert app.focused.id == "yes"
        await pilot.press("enter")
        await pilot.pause()
        assert answers == [True]


async def test_the_resume_offer_also_defaults_to_not_now(tmp_path):
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        answers = await _ask(app, pilot, ResumeModal("Run x: 2 rotated."))
        await pilot.press("enter")
        await pilot.pause()
        assert answers == [False]


@pytest.mark.slow
async def test_q_then_enter_does_not_quit_when_passwords_are_undelivered(tmp_path):
    from ui_helpers import review_staging_app, wait_run

    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await review_staging_app(app, pilot)
        await pilot.press("y")
        await wait_run(app, pilot)
        assert app.session.undelivered()  # rotated, and nobody has copied it yet
        await pilot.press("q", "enter")
        await pilot.pause()
        assert app.is_running and app.return_code is None
        assert type(app.screen) is RunScreen
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, YesNoModal)
        await pilot.press("y")
        await pilot.pause()
    assert app.return_code == 0
