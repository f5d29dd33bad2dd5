"""`neon-tui audit --pg` against real PostgreSQL behind the simulator: a role made in SQL with CREATEROLE
(what an intruder with the owner's leaked password could do) is found; Neon's own roles are in neon_superuser."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pg_helpers import require_postgres

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.postgres import PostgresBackend
from neon_tui.simulator.serve import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_audit_pg_finds_a_role_made_in_sql(tmp_path):
    require_postgres()
    import psycopg

    sim = Simulator(SimConfig(op_seconds=0.3, rate_limit="neon"))
    with PostgresBackend(sim, max_running=4) as pg, serve_in_thread(sim) as url:
        ins = sim.inspect
        side = ins.project_by_name("side-project")
        main = ins.branch_by_name(side.id, "main")
        endpoint = side.rw_endpoint(main.id)
        host, port = pg.route
        owner_pw = ins.password(side.id, main.id, "neondb_owner")
        with psycopg.connect(host=endpoint.host, hostaddr=host, port=port, user="neondb_owner", password=owner_pw,
                             dbname="neondb", sslmode="require", connect_timeout=10, autocommit=True) as conn:
            conn.execute("CREATE ROLE backdoor LOGIN CREATEROLE PASSWORD 'intruder-pw-1'")
            attrs = conn.execute("SELECT rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'neondb_owner'"
                                 ).fetchone()
            assert attrs == (True, True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "PG"))}
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=str(tmp_path / "s"),
                   XDG_CONFIG_HOME=str(tmp_path / "c"), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                   **pg.env)
        out = subprocess.run([sys.executable, "-m", "neon_tui.cli", "audit", "--pg", "--json", "--since", "1h",
                              "--org", "Dana Kowalski"], env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 3, out.stderr
        lines = [json.loads(x) for x in out.stdout.splitlines()]
        pgf = [x for x in lines if x["type"] == "finding" and x["kind"] == "pg_privilege"]
        high = {(x["project"], x["branch"], x["role"]) for x in pgf if x["severity"] == "high"}
        assert high == {("side-project", "main", "backdoor")}
        (bd,) = [x for x in pgf if x["role"] == "backdoor"]
        assert "not in Neon's role list" in bd["reason"] and "CREATEROLE" in bd["reason"]
        info = {(x["project"], x["branch"], x["role"]) for x in pgf if x["severity"] == "info"}
        assert info == {("side-project", "main", "neondb_owner"), ("side-project", "main", "app"),
                        ("side-project", "dev", "neondb_owner"), ("side-project", "dev", "app"),
                        ("blog", "main", "neondb_owner")}
        assert not [x for x in lines if x["type"] == "not_checked"]
        assert "intruder-pw-1" not in out.stdout + out.stderr and owner_pw not in out.stdout + out.stderr
