"""The issue's acceptance check, with nothing of ours in the login path: the real `neon-tui simulator serve
--postgres` process, the real `neon-tui rotate`, and plain `psql` with the two variables serve prints.

A delivered connection string logs in; the leaked (pre-rotation) string is refused by the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest
from pg_helpers import psql_path, require_postgres

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _psql(uri: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # The connection string goes through the environment-free argv of a child we own; psql never echoes it.
    return subprocess.run([psql_path(), uri, "-XAtc", "select current_user"], env=env, capture_output=True,
                          text=True, timeout=30)


def test_serve_postgres_then_psql_with_delivered_and_leaked_strings(tmp_path):
    require_postgres()
    serve = subprocess.Popen([sys.executable, "-m", "neon_tui.cli", "simulator", "serve", "--postgres",
                              "--op-seconds", "0.3", "--rate-limit", "off"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = serve.stdout.readline().split()
        assert first, serve.stderr.read()
        assigned = dict(item.split("=", 1) for item in first)
        assert assigned["PGHOSTADDR"] == "127.0.0.1" and assigned["PGPORT"].isdigit()
        host, key = assigned["NEON_API_HOST"], assigned["NEON_API_KEY"]

        with httpx.Client(base_url=host, headers={"Authorization": f"Bearer {key}"}, timeout=10) as api:
            orgs = api.get("/users/me/organizations").json()["organizations"]
            org = next(o for o in orgs if o["name"] == "Acme Robotics")
            projects = api.get("/projects", params={"org_id": org["id"]}).json()["projects"]
            project = next(p for p in projects if p["name"] == "acme-analytics")
            branch = next(b for b in api.get(f"/projects/{project['id']}/branches").json()["branches"]
                          if b["name"] == "main")
            leaked = api.get(f"/projects/{project['id']}/connection_uri",
                             params={"branch_id": branch["id"], "role_name": "café_rw",
                                     "database_name": "warehouse"}).json()["uri"]

        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "PG"))}
        env.update(NEON_API_HOST=host, NEON_API_KEY=key, XDG_STATE_HOME=str(tmp_path / "state"),
                   XDG_CONFIG_HOME=str(tmp_path / "config"),
                   PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
        pg_env = dict(env, PGHOSTADDR=assigned["PGHOSTADDR"], PGPORT=assigned["PGPORT"], PGCONNECT_TIMEOUT="10")

        before = _psql(leaked, pg_env)
        assert before.returncode == 0 and before.stdout.strip() == "café_rw", before.stderr

        rot = subprocess.run([sys.executable, "-m", "neon_tui.cli", "rotate",
                              f"{project['id']}/{branch['id']}/café_rw", "--apply", "--yes", "--deliver", "stdout"],
                             env=pg_env, capture_output=True, text=True, timeout=120)
        assert rot.returncode == 0, rot.stderr
        rows = [line.split("\t") for line in rot.stdout.splitlines() if line.count("\t") == 4]
        delivered = [r[3] for r in rows if r[2] == "direct" and r[1] == "warehouse"]
        assert len(delivered) == 1 and delivered[0] != leaked

        new = _psql(delivered[0], pg_env)
        assert new.returncode == 0 and new.stdout.strip() == "café_rw", new.stderr
        old = _psql(leaked, pg_env)
        assert old.returncode != 0
        assert "password authentication failed for user" in old.stderr
        # psql prints no password of ours in its refusal
        secret = leaked.split(":")[2].split("@")[0]
        assert secret not in old.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        serve.stdout.close()
        serve.stderr.close()
    assert serve.returncode == 0
