"""The propagation issue's "done when": one run rotates a role and, in the same run, patches two .env files, sets
a GitHub secret and a Vercel variable (against fakes that behave like the services), reports each, and, with
real PostgreSQL behind the simulator, proves the password the .env files held is dead."""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest
from e2e_served import Served
from pg_helpers import require_postgres
from platform_fakes import GitHubFake, VercelFake, serve_app

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.postgres import PostgresBackend
from neon_tui.simulator.serve import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_one_run_patches_two_env_files_sets_github_and_vercel_and_proves_the_old_password_dead(tmp_path):
    require_postgres()
    sim = Simulator(SimConfig(op_seconds=0.3, rate_limit="neon"))
    github, vercel = GitHubFake(), VercelFake()
    with PostgresBackend(sim, max_running=4) as pg, serve_in_thread(sim) as url, \
            serve_app(github.app) as gh_url, serve_app(vercel.app) as v_url:
        github.url, vercel.url = gh_url, v_url
        ins = sim.inspect
        project = ins.project_by_name("acme-prod")
        staging = ins.branch_by_name(project.id, "staging")
        endpoint = project.rw_endpoint(staging.id)
        old = ins.password(project.id, staging.id, "app")
        direct = f"postgresql://app:{quote(old, safe='')}@{endpoint.host}/neondb?sslmode=require"
        pooled = direct.replace(endpoint.host, endpoint.pooler_host)
        app_dir, worker_dir = tmp_path / "app", tmp_path / "worker"
        app_dir.mkdir()
        worker_dir.mkdir()
        (app_dir / ".env").write_text(f"# app\nexport DATABASE_URL='{pooled}'\nDEBUG=0\n")
        (worker_dir / ".env.production").write_text(f'DATABASE_URL="{direct}"  # worker\n')
        before = {p: p.read_bytes() for p in (app_dir / ".env", worker_dir / ".env.production")}

        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "PG", "GITHUB_", "GH_", "VERCEL_"))}
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=str(tmp_path / "state"),
                   XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                   GITHUB_API_URL=gh_url, GITHUB_TOKEN=github.token, VERCEL_API_URL=v_url,
                   VERCEL_TOKEN=vercel.token, **pg.env)
        served = Served(sim, url, env, tmp_path / "state")
        try:
            out = served.run("rotate", "--org", ins.org_of(project.id), f"{project.id}/{staging.id}/app",
                             "--apply", "--yes", "--json", "--deliver", f"env:{app_dir}",
                             "--deliver", f"env:{worker_dir}", "--deliver", "github:acme/app",
                             "--deliver", "vercel:web")
        finally:
            served.stop_all()
        assert out.returncode == 0, out.stderr
        new = ins.password(project.id, staging.id, "app")
        assert new != old

        lines = [json.loads(x) for x in out.stdout.splitlines()]
        (target,) = [x for x in lines if x["type"] == "target"]
        assert target["state"] == "delivered"
        # each sink reported, by name
        assert len(target["delivered_to"]) == 4, target["delivered_to"]
        (verdict,) = [x for x in lines if x["type"] == "verify"]
        assert (verdict["new"], verdict["old"]) == ("ok", "rejected")

        # the two files: only the password changed, quoting and the rest byte for byte
        for path, was in before.items():
            now = path.read_bytes()
            assert now == was.replace(quote(old, safe="").encode(), quote(new, safe="").encode())
        # GitHub holds (decrypted by the fake's private key) and Vercel stores the new direct string
        stored = github.value("repos/acme/app", "DATABASE_URL")
        assert stored.startswith("postgresql://app:") and f":{quote(new, safe='')}@" in stored
        assert vercel.values("DATABASE_URL")["production"][1] == stored
        # no secret anywhere we wrote or printed
        for text in (out.stdout, out.stderr, *(p.read_text() for p in served.journals())):
            for secret in (old, new, github.token, vercel.token):
                assert secret not in text
