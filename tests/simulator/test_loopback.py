"""Real HTTP on 127.0.0.1: uvicorn in a thread and the serve entry point as a subprocess."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys

import httpx
import pytest
from sim_helpers import make_sim, role_path

from neon_tui.simulator.serve import loopback_host, serve_in_thread

FIRST_LINE = re.compile(r"^NEON_API_HOST=(http://127\.0\.0\.1:(\d+)/api/v2) NEON_API_KEY=(napi_\S+)$")


def test_serve_in_thread_round_trip(clock):
    sim = make_sim(clock)
    insp = sim.inspect
    pid = insp.project_by_name("acme-analytics").id
    main = insp.default_branch_id(pid)
    with serve_in_thread(sim) as base:
        assert re.match(r"^http://127\.0\.0\.1:\d+/api/v2$", base)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {sim.api_key}"}, timeout=5) as c:
            r = c.get("/auth")
            assert r.status_code == 200 and r.headers["content-type"] == "application/json; charset=utf-8"
            r = c.post(role_path(pid, main, "etl/loader", "/reset_password"))
            assert r.status_code == 200 and r.json()["role"]["name"] == "etl/loader"
            clock.advance(5)
            assert insp.password(pid, main, "etl/loader") == r.json()["role"]["password"]
            # Over a socket a dropped reset looks like a truncated response.
            insp.set_faults(1.0, ["drop_reset"])
            with pytest.raises(httpx.RemoteProtocolError):
                c.post(role_path(pid, main, "café_rw", "/reset_password"))
            insp.set_faults(1.0, ["reset"])
            with pytest.raises(httpx.RemoteProtocolError):
                c.get("/auth")
            insp.set_faults(0.0)
            assert insp.reset_count(pid, main, "café_rw") == 1
            assert c.get("/auth").status_code == 200  # the server survived the drops
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/auth", timeout=1)


def test_refuses_non_loopback():
    assert loopback_host("0.0.0.0") is None and loopback_host("10.1.2.3") is None
    assert loopback_host("example.com") is None
    assert loopback_host("127.0.0.1") == "127.0.0.1" and loopback_host("localhost") == "127.0.0.1"
    with pytest.raises(ValueError):
        with serve_in_thread(make_sim(lambda: 0.0), host="0.0.0.0"):
            pass


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "neon_tui.simulator", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _read_line(proc: subprocess.Popen, timeout: float = 15.0) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            raise AssertionError("no output from the simulator process")
        return proc.stdout.readline().rstrip("\n")
    finally:
        sel.close()


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=10)
    return proc.returncode


def test_serve_subprocess_port_zero():
    proc = _spawn("--port", "0", "--seed", "5", "--api-key", "napi_testkey123", "--op-seconds", "0.5")
    try:
        line = _read_line(proc)
        m = FIRST_LINE.match(line)
        assert m, line
        base, port, key = m.group(1), int(m.group(2)), m.group(3)
        assert port > 0 and key == "napi_testkey123"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=5) as c:
            orgs = c.get("/users/me/organizations").json()["organizations"]
            projects = c.get("/projects", params={"org_id": orgs[0]["id"]}).json()["projects"]
            assert projects
            assert c.get("/projects").status_code == 400
        assert _stop(proc) == 0
        rest = proc.stdout.read()
        assert "projects" in rest
    finally:
        _stop(proc)
        proc.stdout.close()
        proc.stderr.close()


def test_serve_subprocess_rejects_public_host():
    proc = _spawn("--host", "0.0.0.0")
    try:
        assert proc.wait(timeout=15) == 2
        assert "not a loopback address" in proc.stderr.read()
        assert proc.stdout.read() == ""
    finally:
        _stop(proc)
        proc.stdout.close()
        proc.stderr.close()
