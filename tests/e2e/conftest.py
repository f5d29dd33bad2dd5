"""Fixtures that run the real `neon-tui` command against a simulator served on loopback."""

from __future__ import annotations

import os

import pytest
from e2e_served import Served

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.serve import serve_in_thread


@pytest.fixture
def served(tmp_path, request):
    marker = request.node.get_closest_marker("sim")
    cfg = dict(op_seconds=0.2, rate_limit="neon")
    if marker:
        cfg.update(marker.kwargs)
    sim = Simulator(SimConfig(**cfg))
    with serve_in_thread(sim) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEON_")}
        state = tmp_path / "state"
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=str(state),
                   XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                   PYTHONUNBUFFERED="1")
        s = Served(sim, url, env, state)
        try:
            yield s
        finally:
            s.stop_all()
