"""Simulator.fail_next: a fault at one exact request, for tests of one step of a multi-step action."""

from __future__ import annotations

import httpx
import pytest

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.serve import serve_in_thread


def test_fail_next_scripts_5xx_and_lost_answers_per_route_and_key():
    sim = Simulator(SimConfig(op_seconds=0.05))
    with pytest.raises(ValueError):
        sim.fail_next("GET /nowhere")
    with pytest.raises(ValueError):
        sim.fail_next("GET /auth", "teapot")
    key = sim.account.key_by_secret(sim.api_key)
    with serve_in_thread(sim) as url:
        h = {"Authorization": f"Bearer {sim.api_key}"}
        sim.fail_next("GET /auth", "503", times=2, key_id=key.id + 1)  # another key: never fires for ours
        assert httpx.get(url + "/auth", headers=h).status_code == 200
        sim.clear_scripted_faults()
        sim.fail_next("GET /auth", "500", times=2)
        assert [httpx.get(url + "/auth", headers=h).status_code for _ in range(3)] == [500, 500, 200]
        before = len(sim.account.keys)
        sim.fail_next("POST /api_keys", "drop")
        with pytest.raises(httpx.HTTPError):
            httpx.post(url + "/api_keys", headers=h, json={"key_name": "lost"})
        made = [k for k in sim.account.keys.values() if k.name == "lost"]
        assert len(sim.account.keys) == before + 1 and len(made) == 1 and not made[0].revoked
        # a revoked key gets 401 at once, with Neon's error body
        sim.account.keys[made[0].id].revoked = True
        r = httpx.get(url + "/auth", headers={"Authorization": f"Bearer {made[0].key}"})
        assert r.status_code == 401 and set(r.json()) == {"code", "message", "request_id"}
