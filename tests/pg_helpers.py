"""Real-PostgreSQL helpers for tests: skip (or fail under CI=true) without PostgreSQL, a shared
`pg_sim` fixture (a Simulator served on loopback with a PostgresBackend), login helpers.

Use from any test directory: `from pg_helpers import pg_sim  # noqa: F401` in a conftest or test module."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import httpx
import pytest

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.postgres import PostgresBackend, postgres_available
from neon_tui.simulator.serve import serve_in_thread

PG_OP_SECONDS = 0.3


def require_postgres() -> None:
    """Skip with the reason when PostgreSQL server binaries are missing; under CI=true that is a failure."""
    if postgres_available():
        return
    message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed; apt-get install postgresql"
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true: " + message)
    pytest.skip(message)


def psql_path() -> str | None:
    from neon_tui.simulator.clusters import find_bindir

    cand = find_bindir() / "psql"
    return str(cand) if cand.exists() else shutil.which("psql")


def wait_until(predicate, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@dataclass
class PgSim:
    sim: Simulator
    backend: PostgresBackend
    api: httpx.Client

    @property
    def route(self) -> tuple[str, int]:
        return self.backend.route

    def connect(self, uri: str, **kw):
        import psycopg

        host, port = self.route
        return psycopg.connect(uri, hostaddr=host, port=port, connect_timeout=5, **kw)

    def login_error(self, uri: str) -> str | None:
        """None when the login works, else the server's message."""
        import psycopg

        try:
            with self.connect(uri) as conn:
                conn.execute("SELECT 1")
            return None
        except psycopg.OperationalError as exc:
            return str(exc)

    def uri(self, project_id: str, branch_id: str, role: str, db: str = "neondb", pooled: bool = False) -> str:
        """The connection string exactly as the simulator's connection_uri endpoint delivers it."""
        r = self.api.get(f"/projects/{project_id}/connection_uri",
                         params={"branch_id": branch_id, "role_name": role, "database_name": db,
                                 "pooled": str(pooled).lower()})
        r.raise_for_status()
        return r.json()["uri"]


def pg_session(max_running: int = 8, op_seconds: float = PG_OP_SECONDS):
    """Context manager yielding a PgSim; everything is stopped on exit, also on failure."""
    import contextlib

    @contextlib.contextmanager
    def manage():
        require_postgres()
        sim = Simulator(SimConfig(op_seconds=op_seconds, rate_limit="off"))
        with PostgresBackend(sim, max_running=max_running) as backend, serve_in_thread(sim) as url:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {sim.api_key}"}, timeout=10) as api:
                yield PgSim(sim, backend, api)

    return manage()


@pytest.fixture(scope="module")
def pg_sim():
    """(sim, backend, api) sharing one PostgresBackend per test module; op_seconds 0.3."""
    with pg_session() as ps:
        yield ps
