"""IP Allow through real PostgreSQL: after `neon-tui ipallow set` excludes 127.0.0.1, a login through the
simulator's router is refused with Neon's IP-allow text; after restoring the list it works again."""

from __future__ import annotations

import os

import httpx
import psycopg
import pytest
from pg_helpers import require_postgres

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.postgres import PostgresBackend
from neon_tui.simulator.router import ip_not_allowed
from neon_tui.simulator.serve import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def pg_served(tmp_path):
    from e2e_served import Served

    require_postgres()
    sim = Simulator(SimConfig(op_seconds=0.4, rate_limit="neon"))
    with PostgresBackend(sim, max_running=4) as pg, serve_in_thread(sim) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "PG"))}
        state = tmp_path / "state"
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=str(state),
                   XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                   PYTHONUNBUFFERED="1")
        s = Served(sim, url, env, state)
        s.pg = pg
        try:
            yield s
        finally:
            s.stop_all()


def _login_error(pg, uri):
    host, port = pg.route
    try:
        with psycopg.connect(uri, hostaddr=host, port=port, connect_timeout=5) as conn:
            conn.execute("select 1")
        return None
    except psycopg.OperationalError as exc:
        return str(exc)


def test_excluding_loopback_refuses_logins_until_restored(pg_served):
    s = pg_served
    project = s.sim.inspect.project_by_name("acme-analytics")
    main = s.sim.inspect.default_branch_id(project.id)
    with httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {s.sim.api_key}"}) as api:
        r = api.get(f"/projects/{project.id}/connection_uri",
                    params={"branch_id": main, "role_name": "neondb_owner", "database_name": "neondb"})
        uri = r.json()["uri"]
    before = ",".join(project.allowed_ips)
    assert "127.0.0.1" in before and _login_error(s.pg, uri) is None
    r = s.run("ipallow", "set", project.name, "--ips", "203.0.113.0/24", "--yes")
    assert r.returncode == 0, r.stderr
    assert "YOUR ADDRESS 127.0.0.1 would be excluded" in r.stderr
    assert ip_not_allowed("127.0.0.1") in (_login_error(s.pg, uri) or "")
    r = s.run("ipallow", "set", project.name, "--ips", before, "--yes")
    assert r.returncode == 0, r.stderr
    assert _login_error(s.pg, uri) is None
