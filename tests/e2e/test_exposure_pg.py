"""The exposure scan against real PostgreSQL: the demo's sample leak, `neon-tui exposure --probe-logins`
as a process, routed through the simulator's router by PGHOSTADDR/PGPORT like any libpq client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pg_helpers import require_postgres

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.leak import sample_leak
from neon_tui.simulator.postgres import PostgresBackend
from neon_tui.simulator.serve import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_sample_leak_is_found_by_reveal_and_by_real_logins(tmp_path):
    require_postgres()
    sim = Simulator(SimConfig(op_seconds=0.3, rate_limit="neon"))
    with PostgresBackend(sim, max_running=4) as pg, serve_in_thread(sim) as url:
        leak = tmp_path / "leaked.env"
        leak.write_text(sample_leak(sim))
        leak.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "PG"))}
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=str(tmp_path / "s"),
                   XDG_CONFIG_HOME=str(tmp_path / "c"), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                   **pg.env)
        ins = sim.inspect
        org = ins.org_of(ins.project_by_name("acme-analytics").id)
        out = subprocess.run([sys.executable, "-m", "neon_tui.cli", "exposure", "--leaked", str(leak), "--json",
                              "--probe-logins", "--org", org], env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode in (3, 4), out.stderr
        lines = [json.loads(x) for x in out.stdout.splitlines()]
        exposed = {(ins.projects[x["project_id"]].name, ins.projects[x["project_id"]].branches[x["branch_id"]].name,
                    x["role"]): x["how"] for x in lines if x["type"] == "exposed"}
        # The URI named acme-analytics/main; its children inherited the password and are found too.
        assert exposed[("acme-analytics", "main", "café_rw")] == "revealed"
        assert exposed[("acme-analytics", "dev/carol", "café_rw")] == "revealed"
        assert exposed[("acme-analytics", "backfill-2025", "café_rw")] == "revealed"
        # A project that does not store passwords: only a real login through the router can tell.
        assert exposed[("acme-legacy-billing", "main", "o'brien")] == "login"
        assert len(exposed) == 4, exposed
        unchecked = [x for x in lines if x["type"] == "unchecked"]
        billing = ins.project_by_name("acme-legacy-billing")
        hotfix = ins.branch_by_name(billing.id, "hotfix").id
        assert any(x.get("branch_id") == hotfix for x in unchecked), unchecked  # no compute: cannot probe
        assert "o'brien" not in str(pg.errors)
        secret_values = [ins.password(billing.id, ins.branch_by_name(billing.id, "main").id, "o'brien")]
        for v in secret_values:
            assert v not in out.stdout and v not in out.stderr
