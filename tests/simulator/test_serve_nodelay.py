"""The served simulator answers keep-alive requests without Nagle's ~40 ms stall (TCP_NODELAY)."""

from __future__ import annotations

import socket
import statistics
import time

import httpx
from sim_helpers import make_sim

from neon_tui.simulator.serve import serve_in_thread


def test_accepted_connections_have_nodelay(clock):
    sim = make_sim(clock)
    with serve_in_thread(sim) as base:
        port = int(base.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET /api/v2/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + sim.api_key.encode()
                      + b"\r\n\r\n")
            assert c.recv(12).startswith(b"HTTP/1.1")
        # The listening socket carries the option; Linux copies it onto every accepted connection.
        from neon_tui.simulator.serve import _bind
        s = _bind("127.0.0.1", 0)
        try:
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            s.close()


def test_keep_alive_round_trips_do_not_stall(clock):
    """Headers and body leave in two writes; with Nagle on, the second waits for a delayed ACK (~40 ms)."""
    sim = make_sim(clock)
    with serve_in_thread(sim) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {sim.api_key}"}, timeout=5) as c:
            c.get("/auth")
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                assert c.get("/users/me/organizations").status_code == 200
                times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.025, times
