"""Settings from config.toml: [keyring] allow_backends, and bad values reported with the defaults used."""

from __future__ import annotations

import tomllib

import pytest

from neon_tui.config import EXAMPLE, Settings, load_settings, read_settings


def load(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={})


def test_defaults_allow_nothing_extra(tmp_path):
    settings, problem = load_settings(tmp_path / "missing.toml", env={})
    assert problem is None
    assert settings.keyring_allow == ()
    assert Settings().keyring_allow == ()


def test_example_file_is_valid_and_allows_nothing_extra(tmp_path):
    assert "allow_backends" in EXAMPLE
    tomllib.loads(EXAMPLE)
    settings, problem = load(tmp_path, EXAMPLE)
    assert problem is None and settings.keyring_allow == ()


def test_allow_backends_is_read_as_a_tuple_of_class_names(tmp_path):
    settings, problem = load(tmp_path, """
        [clipboard]
        mode = "off"
        [keyring]
        allow_backends = ["keyrings.alt.file.EncryptedKeyring", " my_pkg.store.VaultKeyring ",
                          "keyrings.alt.file.EncryptedKeyring"]
    """.replace("\n        ", "\n"))
    assert problem is None
    assert settings.keyring_allow == ("keyrings.alt.file.EncryptedKeyring", "my_pkg.store.VaultKeyring")
    assert settings.clipboard_mode == "off"


def test_empty_keyring_table_is_fine(tmp_path):
    settings, problem = load(tmp_path, "[keyring]\nallow_backends = []\n")
    assert problem is None and settings.keyring_allow == ()


@pytest.mark.parametrize("value", [
    '"keyrings.alt.file.EncryptedKeyring"',   # a string, not a list
    "[1, 2]",                                 # not strings
    '["ok.Name", 3]',                         # one not a string
    '["SafeStore"]',                          # no module: would never match a class
    '["my module.Store"]',                    # not a Python name
    "true",
], ids=["string", "ints", "mixed", "no-module", "space", "bool"])
def test_bad_allow_backends_is_a_settings_problem_and_allows_nothing_extra(tmp_path, value):
    settings, problem = load(tmp_path, f'[clipboard]\nmode = "off"\n[keyring]\nallow_backends = {value}\n')
    assert problem is not None
    assert "allow_backends" in problem and "module.Class" in problem
    assert settings.keyring_allow == ()
    assert settings.clipboard_mode == "off"  # the rest of the file still counts


def test_keyring_not_a_table_is_a_settings_problem(tmp_path):
    settings, problem = load(tmp_path, 'keyring = "SecretService"\n')
    assert problem is not None and "allow_backends" in problem
    assert settings.keyring_allow == ()


def test_broken_file_still_gives_settings_and_a_problem(tmp_path):
    settings, problem = load(tmp_path, "[keyring\nallow_backends = [")
    assert problem is not None and str(tmp_path / "config.toml") in problem
    assert settings == Settings(path=tmp_path / "config.toml")


def test_every_problem_is_reported_not_only_the_last(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[clipboard]\nmode = "sometimes"\nclear_after = -3\n[keymap]\nmark = 5\n'
                    '[keyring]\nallow_backends = "x"\n[sinks.a]\npreset = "heroku"\n', encoding="utf-8")
    settings, problems = read_settings(path, env={})
    text = "\n".join(problems)
    assert len(problems) == 5, problems
    for key in ("clipboard.mode", "clipboard.clear_after", "keymap.mark", "keyring.allow_backends", "sinks.a.preset"):
        assert key in text
    assert all(str(path) in p for p in problems)  # each names the file
    _, joined = load_settings(path, env={})
    assert joined == text  # the one-string form carries them all, one a line
    assert settings.clipboard_mode == "auto" and settings.clipboard_clear_after == 45.0 and settings.keymap == {}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "0.0", "-1", '"45"', "true", "[45]"])
def test_clear_after_must_be_a_finite_positive_number(tmp_path, value):
    settings, problem = load(tmp_path, f"[clipboard]\nclear_after = {value}\n")
    assert problem is not None
    assert "clipboard.clear_after" in problem and str(tmp_path / "config.toml") in problem
    assert "finite number of seconds above 0" in problem
    assert settings.clipboard_clear_after == 45.0


@pytest.mark.parametrize("value,expected", [("0.5", 0.5), ("45", 45.0), ("600", 600.0)])
def test_clear_after_accepts_positive_numbers(tmp_path, value, expected):
    settings, problem = load(tmp_path, f"[clipboard]\nclear_after = {value}\n")
    assert problem is None and settings.clipboard_clear_after == expected


def test_unknown_table_is_named(tmp_path):
    settings, problem = load(tmp_path, '[clipbaord]\nmode = "off"\n')
    assert problem is not None and "clipbaord: unknown setting" in problem


def test_env_clipboard_mode_problem_names_the_variable(tmp_path):
    _, problem = load_settings(tmp_path / "missing.toml", env={"NEON_TUI_CLIPBOARD": "bogus"})
    assert problem is not None and problem.startswith("NEON_TUI_CLIPBOARD:")


def test_keymap_unknown_id_and_stolen_keys_are_reported():
    from neon_tui.keymap_check import keymap_problems

    assert keymap_problems({"mark": "space,x", "help": "f1"}) == []
    problems = keymap_problems({"marc": "z"})
    assert problems == ["keymap.marc: no binding has this id; did you mean mark?"]
    # "r" is the main screen's review: remapping quit there steals it (or is stolen), both are named
    stolen = keymap_problems({"quit": "r"})
    assert any("keymap.quit" in p and "r is already review (Review, MainScreen)" in p for p in stolen), stolen
    # moving review away first frees r on the main screen
    assert not any("MainScreen" in p for p in keymap_problems({"quit": "r", "review": "v"}))
    # keys as the user may write them: "?" is Textual's question_mark, the help key
    assert any('keymap.quit = "?"' in p and "question_mark is already help" in p
               for p in keymap_problems({"quit": "?"}))
    # a screen binding moved onto a key the same screen uses
    assert any("filter (Filter, MainScreen)" in p for p in keymap_problems({"review": "slash"}))


def test_check_config_lists_every_problem_and_exits_1(tmp_path, monkeypatch, capsys):
    from neon_tui.cli import main

    path = tmp_path / "config.toml"
    path.write_text('[clipboard]\nclear_after = inf\n[keymap]\nmarc = "z"\n', encoding="utf-8")
    monkeypatch.setenv("NEON_TUI_CONFIG", str(path))
    monkeypatch.delenv("NEON_TUI_CLIPBOARD", raising=False)
    assert main(["--check-config"]) == 1
    out = capsys.readouterr().out
    assert f"settings: {path} (found)" in out
    assert "clipboard.clear_after" in out and "keymap.marc: no binding has this id" in out
    assert "2 problem(s)" in out
    path.write_text('[clipboard]\nclear_after = 30\n', encoding="utf-8")
    assert main(["--check-config"]) == 0
    assert "no problems" in capsys.readouterr().out
