"""UI test fixtures: an in-memory keyring installed for each test and restored after."""

from __future__ import annotations

import keyring
import pytest
from ui_helpers import MemoryKeyring


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    try:
        yield kr
    finally:
        keyring.set_keyring(previous)
