"""Shared fixtures for the simulator suite: fake clock, simulators and spec-validating clients."""

from __future__ import annotations

import json

import pg_helpers
import pytest
from openapi_core import OpenAPI
from sim_helpers import SPEC_PATH, FakeClock, SpecValidator, client_for, make_sim

from neon_tui.simulator import Simulator


@pytest.fixture(scope="session")
def openapi_spec() -> OpenAPI:
    return OpenAPI.from_dict(json.loads(SPEC_PATH.read_text()))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock) -> Simulator:
    return make_sim(clock)


@pytest.fixture
def validator(openapi_spec) -> SpecValidator:
    return SpecValidator(openapi_spec)


@pytest.fixture
async def client(sim, validator):
    async with client_for(sim, validator=validator) as c:
        yield c


# Real PostgreSQL behind the router, one backend per module (skips without PostgreSQL; fails under CI=true).
pg_sim = pg_helpers.pg_sim
