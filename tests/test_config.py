"""Settings from config.toml: [keyring] allow_backends, and bad values reported with the defaults used."""

from __future__ import annotations

import tomllib

import pytest

from neon_tui.config import EXAMPLE, Settings, load_settings


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
