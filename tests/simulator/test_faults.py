"""Injected faults: each kind is observable by a client and recorded in the request log."""

from __future__ import annotations

import httpx
import pytest
from sim_helpers import client_for, make_sim, role_path


def _target(sim):
    insp = sim.inspect
    pid = insp.project_by_name("acme-prod").id
    return insp, pid, insp.default_branch_id(pid)


@pytest.mark.parametrize("kind,status", [("500", 500), ("503", 503), ("423", 423)])
async def test_error_faults_apply_nothing(sim, client, kind, status):
    insp, pid, main = _target(sim)
    old = insp.password(pid, main, "app")
    insp.set_faults(1.0, [kind])
    r = await client.post(role_path(pid, main, "app", "/reset_password"))
    assert r.status_code == status and r.json()["code"] == ""
    if kind == "423":
        assert "running conflicting operations" in r.json()["message"]
        assert (await client.get("/auth")).status_code == 200  # reads are never given a spurious 423
    insp.set_faults(0.0)
    assert insp.reset_count(pid, main, "app") == 0 and insp.password(pid, main, "app") == old
    assert insp.requests[-1 if kind != "423" else -2].fault == kind


async def test_429_burst_then_recovers(sim, client, clock):
    insp = sim.inspect
    insp.set_faults(1.0, ["429"])
    first = await client.get("/auth")
    insp.set_faults(0.0001, ["429"])  # stop new bursts but keep the running one
    assert first.status_code == 429 and first.json()["message"] == "rate limit exceeded"
    burst = [await client.get("/auth") for _ in range(6)]
    assert all(r.status_code == 429 for r in burst)
    with_header = [r for r in [first, *burst] if r.headers.get("retry-after") == "1"]
    assert 0 < len(with_header) < 7
    assert all(rec.fault == "429" for rec in insp.requests[-7:])
    clock.advance(1.01)
    insp.set_faults(0.0)
    assert (await client.get("/auth")).status_code == 200


async def test_reset_drops_connection_before_applying(sim, client):
    insp, pid, main = _target(sim)
    insp.set_faults(1.0, ["reset"])
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(role_path(pid, main, "app", "/reset_password"))
    insp.set_faults(0.0)
    assert insp.reset_count(pid, main, "app") == 0 and insp.pending_password(pid, main, "app") is None
    rec = insp.requests[-1]
    assert (rec.fault, rec.status) == ("reset", None)


async def test_drop_reset_applies_then_drops(sim, client, clock):
    insp, pid, main = _target(sim)
    old = insp.password(pid, main, "app")
    insp.set_faults(1.0, ["drop_reset"])
    assert (await client.get("/auth")).status_code == 200  # only reset_password is affected
    with pytest.raises(httpx.TransportError):
        await client.post(role_path(pid, main, "app", "/reset_password"))
    insp.set_faults(0.0)
    assert insp.reset_count(pid, main, "app") == 1
    new = insp.pending_password(pid, main, "app")
    assert new and new != old
    # A blind retry now runs into the lock the applied reset holds.
    assert (await client.post(role_path(pid, main, "app", "/reset_password"))).status_code == 423
    clock.advance(2)
    assert insp.password(pid, main, "app") == new
    assert (await client.get(role_path(pid, main, "app", "/reveal_password"))).json()["password"] == new
    assert [r.fault for r in insp.requests if r.fault] == ["drop_reset"]


async def test_random_faults_are_drawn_and_logged(clock, validator):
    sim = make_sim(clock, fault_rate=0.5)
    async with client_for(sim, validator=validator) as c:
        statuses = []
        for _ in range(120):
            try:
                statuses.append((await c.get("/auth")).status_code)
            except httpx.TransportError:
                statuses.append(None)
            clock.advance(1.1)  # let any 429 burst lapse
    kinds = {r.fault for r in sim.inspect.requests}
    assert {"500", "503", "429", "reset"} <= kinds
    assert "423" not in kinds and "drop_reset" not in kinds  # GETs never draw mutation-only faults
    assert statuses.count(200) > 30
    assert None in statuses


def test_op_failed_needs_explicit_listing():
    from neon_tui.simulator import SimConfig

    assert "op_failed" not in SimConfig().faults
