"""The typed confirmation shared by `rotate` and `audit drop`: only the exact word goes on."""

import asyncio
import io

import pytest

from neon_tui.rotate_cli import ask_typed


@pytest.mark.parametrize("typed, ok", [("drop\n", True), ("  drop \n", True), ("y\n", False), ("", False),
                                      ("Drop\n", False)])
def test_only_the_word_goes_on(monkeypatch, capsys, typed, ok):
    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    assert asyncio.run(ask_typed("Drop 2 roles?", "drop")) is ok
    assert capsys.readouterr().err == "Drop 2 roles? Type 'drop' to go on: "
