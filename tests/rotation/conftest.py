"""Fixtures for engine tests."""

from __future__ import annotations

import pytest
from rotation_helpers import sim_client


@pytest.fixture
async def demo():
    async with sim_client() as pair:
        yield pair
