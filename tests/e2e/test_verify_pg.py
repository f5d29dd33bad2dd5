"""Verification against real PostgreSQL, through the real `neon-tui rotate` process: the new password logs
in, the old one (read before the reset, or given as the leak) is refused, a compute that never applied its
new configuration raises the alarm (exit 1), and SIGKILL + --resume still proves the leaked password dead."""

from __future__ import annotations

import json
import os
import signal
import time

import psycopg
import pytest
from pg_helpers import require_postgres

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.leak import sample_leak
from neon_tui.simulator.postgres import PostgresBackend
from neon_tui.simulator.serve import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def pg_served(tmp_path):
    """A served simulator with real clusters behind its router; env has PGHOSTADDR/PGPORT like serve prints."""
    from e2e_served import Served

    require_postgres()
    sim = Simulator(SimConfig(op_seconds=0.4, rate_limit="neon", latency_ms=20))
    with PostgresBackend(sim, max_running=6) as pg, serve_in_thread(sim) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "PG"))}
        state = tmp_path / "state"
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=str(state),
                   XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                   PYTHONUNBUFFERED="1", **pg.env)
        s = Served(sim, url, env, state)
        s.pg = pg
        try:
            yield s
        finally:
            s.stop_all()


def _ids(sim, project, branch):
    p = sim.inspect.project_by_name(project)
    return p.id, sim.inspect.branch_by_name(p.id, branch).id


def _verdicts(stdout):
    lines = [json.loads(x) for x in stdout.splitlines()]
    return {(x["project_id"], x["branch_id"], x["role"]): x for x in lines if x["type"] == "verify"}, lines


def _logs_in(pg, uri):
    host, port = pg.route
    try:
        with psycopg.connect(uri, hostaddr=host, port=port, connect_timeout=5) as conn:
            conn.execute("select 1")
        return True
    except psycopg.OperationalError as e:
        assert "password authentication failed" in str(e), str(e)
        return False


def _uri(sim, pid, bid, role, password, db):
    from urllib.parse import quote

    ep = sim.inspect.projects[pid].rw_endpoint(bid)
    return (f"postgresql://{quote(role, safe='')}:{quote(password, safe='')}@{ep.host}/{db}"
            "?sslmode=require&channel_binding=require")


def test_new_works_old_refused_read_before_reset_and_from_the_leak(pg_served, tmp_path):
    sim, pg = pg_served.sim, pg_served.pg
    pid, main = _ids(sim, "acme-analytics", "main")
    bpid, bmain = _ids(sim, "acme-legacy-billing", "main")
    old_cafe = sim.inspect.password(pid, main, "café_rw")
    old_obrien = sim.inspect.password(bpid, bmain, "o'brien")
    leak = tmp_path / "leak.env"
    leak.write_text(sample_leak(sim))
    org = sim.inspect.org_of(pid)
    out = pg_served.run("rotate", "--org", org, f"{pid}/{main}/café_rw", f"{bpid}/{bmain}/o'brien",
                        "--apply", "--yes", "--json", "--deliver", "stdout", "--leaked", str(leak))
    assert out.returncode == 0, out.stderr
    verdicts, lines = _verdicts(out.stdout)
    cafe, obrien = verdicts[(pid, main, "café_rw")], verdicts[(bpid, bmain, "o'brien")]
    assert (cafe["new"], cafe["old"]) == ("ok", "rejected")
    assert {c["kind"] for c in cafe["new_checks"]} == {"direct", "pooled"}
    # billing does not store passwords: the old one is known only from the leak, and it is refused
    assert (obrien["new"], obrien["old"]) == ("ok", "rejected")
    summary = lines[-1]
    assert summary["type"] == "summary" and not summary.get("alarms")
    # the verdicts are true: check with our own login, outside neon-tui
    assert not _logs_in(pg, _uri(sim, pid, main, "café_rw", old_cafe, "warehouse"))
    assert _logs_in(pg, _uri(sim, pid, main, "café_rw", sim.inspect.password(pid, main, "café_rw"), "warehouse"))
    assert not _logs_in(pg, _uri(sim, bpid, bmain, "o'brien", old_obrien, "billing"))
    # no secret in the journal
    (journal,) = pg_served.journals()
    text = journal.read_text()
    for secret in (old_cafe, old_obrien, sim.inspect.password(pid, main, "café_rw")):
        assert secret not in text
    assert '"verified"' in text


def test_a_compute_that_kept_the_old_password_is_an_alarm_and_exit_1(pg_served):
    sim, pg = pg_served.sim, pg_served.pg
    pid, staging = _ids(sim, "acme-prod", "staging")
    old = sim.inspect.password(pid, staging, "app")
    uri = _uri(sim, pid, staging, "app", old, "neondb")
    assert _logs_in(pg, uri)  # wakes the compute with the old password
    pg.hold_config(staging)  # it will not apply the reset although the operations finish
    out = pg_served.run("rotate", "--org", sim.inspect.org_of(pid), f"{pid}/{staging}/app", "--apply", "--yes",
                        "--deliver", "stdout")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "ALARM" in out.stderr and "OLD PASSWORD STILL LOGS IN" in out.stderr
    assert old not in out.stderr
    assert _logs_in(pg, uri)  # the alarm is true: the old password still opens the role
    assert sim.inspect.reset_count(pid, staging, "app") == 1


def _targets_seen(proc_lines):
    return [x for x in proc_lines if x.get("type") == "target"]


def test_sigkill_then_resume_still_proves_the_leaked_password_dead(pg_served, tmp_path):
    sim, pg = pg_served.sim, pg_served.pg
    pid, main = _ids(sim, "acme-analytics", "main")
    leak = tmp_path / "leak.env"
    leak.write_text(sample_leak(sim))
    leaked = sim.inspect.password(pid, main, "café_rw")
    org = sim.inspect.org_of(pid)
    branches = [b.id for b in sim.inspect.branches(pid)]
    proc = pg_served.start("rotate", "--org", org, f"{pid}/*/café_rw", "--apply", "--yes", "--json",
                           "--deliver", "stdout", "--leaked", str(leak))
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        rec = json.loads(line)
        seen.append(rec)
        if rec.get("type") == "target":
            break
    assert _targets_seen(seen), proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.6)
    out = pg_served.run("rotate", "--resume", "--yes", "--json", "--deliver", "stdout", "--leaked", str(leak))
    assert out.returncode in (0, 1), out.stderr
    verdicts, lines = _verdicts(out.stdout)
    for bid in branches:
        key = (pid, bid, "café_rw")
        assert sim.inspect.reset_count(*key) == 1
        ep = sim.inspect.projects[pid].rw_endpoint(bid)
        if ep is None:
            continue  # backfill-2025 has no compute: nothing to log in to
        v = verdicts[key]
        assert v["old"] == "rejected", v  # the leaked password is dead, also where the killed run rotated it
        assert not _logs_in(pg, _uri(sim, pid, bid, "café_rw", leaked, "warehouse"))
    assert leaked not in out.stdout and leaked not in out.stderr


def test_a_stale_compute_never_yields_old_rejected_on_a_second_rotation(pg_served):
    """Found in review: rotate twice a branch whose compute kept its configuration. The second run's
    reveal reads the first run's (never applied) password; the server refuses it and the 'old' one alike.
    That must not read as 'old rejected' with exit 0."""
    sim, pg = pg_served.sim, pg_served.pg
    pid, staging = _ids(sim, "acme-prod", "staging")
    first_old = sim.inspect.password(pid, staging, "app")
    uri = _uri(sim, pid, staging, "app", first_old, "neondb")
    assert _logs_in(pg, uri)
    pg.hold_config(staging)
    org = sim.inspect.org_of(pid)
    args = ("rotate", "--org", org, f"{pid}/{staging}/app", "--apply", "--yes", "--json", "--deliver", "stdout")
    first = pg_served.run(*args)
    assert first.returncode == 1
    second = pg_served.run(*args)
    assert second.returncode == 1, second.stdout
    verdicts, _ = _verdicts(second.stdout)
    v = verdicts[(pid, staging, "app")]
    assert v["new"] == "failed" and v["old"] != "rejected", v
    assert _logs_in(pg, uri)  # indeed: the leaked password still opens the role
