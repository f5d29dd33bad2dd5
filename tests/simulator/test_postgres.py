"""The simulator's branches as real PostgreSQL clusters behind the Neon-like router (--postgres)."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from pg_helpers import pg_session, psql_path, wait_until

from neon_tui.simulator import serve
from neon_tui.simulator.clusters import PostgresUnavailable, _pid_alive
from neon_tui.simulator.router import MISSING_ENDPOINT, UNKNOWN_ENDPOINT, ip_not_allowed

SEEN_PASSWORDS: set[str] = set()


def _project(ps, name):
    return ps.sim.inspect.project_by_name(name)


def _branch(ps, project, name):
    return ps.sim.inspect.branch_by_name(project.id, name)


def _uri(ps, project, branch, role, **kw):
    uri = ps.uri(project.id, branch.id, role, **kw)
    SEEN_PASSWORDS.add(uri.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1])
    return uri


def _swap_password(uri: str, password: str) -> str:
    creds, rest = uri.split("@", 1)
    SEEN_PASSWORDS.add(password)
    return creds.rsplit(":", 1)[0] + ":" + password + "@" + rest


@pytest.mark.slow
@pytest.mark.postgres
def test_delivered_strings_log_in_by_sni_pooler_options_and_psql(pg_sim):
    ps = pg_sim
    project = _project(ps, "acme-prod")
    main = _branch(ps, project, "main")
    uri = _uri(ps, project, main, "app")
    assert uri.endswith("?sslmode=require&channel_binding=require")
    with ps.connect(uri) as conn:
        user, db, ssl = conn.execute("SELECT current_user, current_database(), ssl FROM pg_stat_ssl "
                                     "WHERE pid = pg_backend_pid()").fetchone()
    assert (user, db, ssl) == ("app", "neondb", True)
    pooled = _uri(ps, project, main, "app", pooled=True)
    assert "-pooler." in pooled and ps.login_error(pooled) is None
    # Without SNI: the endpoint in options (libpq decodes %3D), plaintext.
    endpoint = project.rw_endpoint(main.id).id
    plain = uri.split("?")[0] + f"?sslmode=disable&options=endpoint%3D{endpoint}"
    assert ps.login_error(plain) is None
    # A role with quotes/spaces/unicode in its name exists for real.
    assert ps.login_error(_uri(ps, project, main, "data team", db="analytics")) is None
    # Wrong password: Neon's single-quoted text where the router sees it (plaintext); PostgreSQL's own
    # double-quoted text inside TLS passthrough.
    assert "password authentication failed for user 'app'" in ps.login_error(_swap_password(plain, "npg_wrong"))
    assert 'password authentication failed for user "app"' in ps.login_error(_swap_password(uri, "npg_wrong"))
    # The real psql binary with PGHOSTADDR/PGPORT and the string unchanged.
    psql = psql_path()
    assert psql, "psql is missing"
    env = dict(os.environ, **ps.backend.env)
    out = subprocess.run([psql, uri, "-Atc", "SELECT current_user"], env=env, capture_output=True, text=True,
                         timeout=20)
    assert (out.returncode, out.stdout.strip()) == (0, "app"), out.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_passwords_are_per_branch(pg_sim):
    ps = pg_sim
    project = _project(ps, "acme-prod")
    main, staging = _branch(ps, project, "main"), _branch(ps, project, "staging")
    on_main, on_staging = _uri(ps, project, main, "app"), _uri(ps, project, staging, "app")
    main_pw = on_main.split("@")[0].rsplit(":", 1)[1]
    assert main_pw not in on_staging  # staging is a child of the protected main: new passwords
    assert ps.login_error(on_staging) is None
    assert "password authentication failed" in ps.login_error(_swap_password(on_staging, main_pw))


@pytest.mark.slow
@pytest.mark.postgres
def test_reset_applies_at_apply_config_and_suspend_drops_sessions(pg_sim):
    ps = pg_sim
    project = _project(ps, "acme-storefront")
    main = _branch(ps, project, "main")
    old_uri = _uri(ps, project, main, "app")
    session = ps.connect(old_uri)
    session.execute("SELECT 1")
    with ps.sim.lock:
        ps.sim.account.op_seconds = 2.0  # room to observe the old password still working
    try:
        r = ps.api.post(f"/projects/{project.id}/branches/{main.id}/roles/app/reset_password")
    finally:
        with ps.sim.lock:
            ps.sim.account.op_seconds = 0.3
    assert r.status_code == 200
    new_uri = _swap_password(old_uri, r.json()["role"]["password"])
    ops = r.json()["operations"]
    assert [o["action"] for o in ops] == ["apply_config", "suspend_compute"]
    # apply_config still running: the compute still has the old password.
    assert ps.login_error(old_uri) is None
    assert "password authentication failed" in ps.login_error(new_uri)

    def status(op):
        return ps.api.get(f"/projects/{project.id}/operations/{op['id']}").json()["operation"]["status"]

    assert wait_until(lambda: status(ops[1]) == "finished", timeout=10)
    time.sleep(0.3)  # the reconciler's next pass
    assert "password authentication failed" in ps.login_error(old_uri)
    assert ps.login_error(new_uri) is None
    # The session opened before the reset was dropped by suspend_compute.
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    assert project.rw_endpoint(main.id).id in ps.backend.suspended


@pytest.mark.slow
@pytest.mark.postgres
def test_failed_apply_config_keeps_the_old_password(pg_sim):
    ps = pg_sim
    project = _project(ps, "acme-storefront")
    main = _branch(ps, project, "main")
    old_uri = _uri(ps, project, main, "readonly")
    assert ps.login_error(old_uri) is None
    ps.sim.set_faults(1.0, ["op_failed"])
    try:
        r = ps.api.post(f"/projects/{project.id}/branches/{main.id}/roles/readonly/reset_password")
    finally:
        ps.sim.set_faults(0.0)
    assert r.status_code == 200
    ops = r.json()["operations"]
    new_uri = _swap_password(old_uri, r.json()["role"]["password"])
    assert wait_until(lambda: ps.api.get(f"/projects/{project.id}/operations/{ops[0]['id']}")
                      .json()["operation"]["status"] == "failed")
    time.sleep(0.3)
    assert ps.login_error(old_uri) is None
    assert "password authentication failed" in ps.login_error(new_uri)


@pytest.mark.slow
@pytest.mark.postgres
def test_child_branch_inherits_parent_data_and_password_unless_parent_is_protected(pg_sim):
    ps = pg_sim
    project = _project(ps, "side-project")
    main = _branch(ps, project, "main")
    parent_uri = _uri(ps, project, main, "app")
    with ps.connect(_uri(ps, project, main, "neondb_owner")) as conn:
        conn.execute("CREATE TABLE branch_point (v text)")
        conn.execute("INSERT INTO branch_point VALUES ('from main')")
        conn.commit()
    r = ps.api.post(f"/projects/{project.id}/branches",
                    json={"branch": {"name": "pg-child"}, "endpoints": [{"type": "read_write"}]})
    assert r.status_code == 201
    child_id = r.json()["branch"]["id"]
    child_uri = ps.uri(project.id, child_id, "app")
    assert child_uri.split("@")[0] == parent_uri.split("@")[0]  # same password in the model
    assert ps.login_error(child_uri) is None  # ... and the same verifier on the child's cluster
    with ps.connect(ps.uri(project.id, child_id, "neondb_owner")) as conn:
        assert conn.execute("SELECT v FROM branch_point").fetchall() == [("from main",)]

    prod = _project(ps, "acme-prod")
    prod_main = _branch(ps, prod, "main")
    r = ps.api.post(f"/projects/{prod.id}/branches",
                    json={"branch": {"name": "pg-child", "parent_id": prod_main.id},
                          "endpoints": [{"type": "read_write"}]})
    assert r.status_code == 201
    child_id = r.json()["branch"]["id"]
    child_uri = _uri(ps, prod, prod.branches[child_id], "app")
    parent_pw = _uri(ps, prod, prod_main, "app").split("@")[0].rsplit(":", 1)[1]
    assert ps.login_error(child_uri) is None
    assert "password authentication failed" in ps.login_error(_swap_password(child_uri, parent_pw))


@pytest.mark.slow
@pytest.mark.postgres
def test_roles_exist_for_real_and_no_login_roles_cannot_log_in(pg_sim):
    ps = pg_sim
    project = _project(ps, "acme-prod")
    main = _branch(ps, project, "main")
    app_uri = _uri(ps, project, main, "app")
    with ps.connect(app_uri) as conn:
        rows = dict(conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)",
                                 (["reporting", "o'brien", "app"],)).fetchall())
    assert rows == {"reporting": False, "app": True}
    with ps.sim.lock:
        pw = main.roles["app"].password
    nologin = app_uri.replace("//app:", "//reporting:")
    assert "not permitted to log in" in ps.login_error(nologin) or "authentication failed" in ps.login_error(nologin)
    # A role created through the API logs in; after deletion it is gone.
    r = ps.api.post(f"/projects/{project.id}/branches/{main.id}/roles", json={"role": {"name": "pg new"}})
    assert r.status_code == 201
    new_uri = _swap_password(app_uri.replace("//app:", "//pg%20new:"), r.json()["role"]["password"])
    assert wait_until(lambda: ps.login_error(new_uri) is None, timeout=5)
    assert wait_until(lambda: ps.api.delete(f"/projects/{project.id}/branches/{main.id}/roles/pg%20new")
                      .status_code == 200, timeout=5)
    assert wait_until(lambda: ps.login_error(new_uri) is not None, timeout=5)
    assert pw


@pytest.mark.slow
@pytest.mark.postgres
def test_router_answers_with_neon_texts(pg_sim):
    ps = pg_sim
    project = _project(ps, "blog")
    main = _branch(ps, project, "main")
    uri = _uri(ps, project, main, "neondb_owner")
    host = uri.split("@")[1].split("/")[0]
    unknown = uri.replace(host.split(".")[0], "ep-no-such-endpoint-00000000")
    assert UNKNOWN_ENDPOINT in ps.login_error(unknown)
    assert MISSING_ENDPOINT in ps.login_error(uri.replace(host, "127.0.0.1"))
    assert MISSING_ENDPOINT in ps.login_error(uri.split("?")[0].replace(host, "localhost") + "?sslmode=disable")
    # IP Allow needs the Scale plan (blog is on free), so the refusal is shown on a Scale project.
    r = _patch_ips(ps, project, ["203.0.113.7"])
    assert r.status_code == 403 and "Scale plan" in r.json()["message"]
    scale = _project(ps, "acme-ml-features")
    uri = _uri(ps, scale, _branch(ps, scale, "production"), "neondb_owner")
    before = list(scale.allowed_ips)
    assert ps.login_error(uri) is None
    assert _patch_ips(ps, scale, ["203.0.113.7"]).status_code == 200
    try:
        assert ip_not_allowed("127.0.0.1") in ps.login_error(uri)
    finally:
        assert _patch_ips(ps, scale, before).status_code == 200
    assert ps.login_error(uri) is None


def _patch_ips(ps, project, ips):
    """PATCH the allowlist, waiting out 423 while an earlier change's operations run."""
    body = {"project": {"settings": {"allowed_ips": {"ips": ips, "protected_branches_only": False}}}}
    for _ in range(100):
        r = ps.api.patch(f"/projects/{project.id}", json=body)
        if r.status_code != 423:
            return r
        time.sleep(0.05)
    return r


@pytest.mark.slow
@pytest.mark.postgres
def test_zz_no_plaintext_password_reaches_a_server_log(pg_sim):
    logs = pg_sim.backend.log_files()
    assert logs and SEEN_PASSWORDS
    with pg_sim.sim.lock:
        for project in pg_sim.sim.account.projects.values():
            for branch in project.branches.values():
                SEEN_PASSWORDS.update(r.password for r in branch.roles.values() if r.password)
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "password authentication failed" in text  # the logs are real and were read
    leaked = [pw for pw in SEEN_PASSWORDS if pw in text]
    assert not leaked
    assert not pg_sim.backend.errors


@pytest.mark.slow
@pytest.mark.postgres
def test_lru_cap_restart_and_close_leaves_nothing_behind():
    with pg_session(max_running=2) as ps:
        project = _project(ps, "acme-prod")
        names = ["main", "staging", "dev/alice"]
        uris = [_uri(ps, project, _branch(ps, project, n), "app") for n in names]
        ids = [_branch(ps, project, n).id for n in names]
        # Within the grace a compute just handed to a login is never stopped: the cap gives way instead.
        ps.backend.EVICT_GRACE = 60.0
        for uri in uris:
            assert ps.login_error(uri) is None
        assert ps.backend.running_endpoints() == ids
        ps.backend.manager.stop(ps.backend.manager.cluster(ids[2]))
        ps.backend.EVICT_GRACE = 0.0
        assert ps.login_error(uris[2]) is None
        assert ps.backend.running_endpoints() == ids[1:]  # main, the least recently used, stopped
        assert project.rw_endpoint(ids[0]).current_state == "idle"
        assert ps.login_error(uris[0]) is None  # waking it again stops staging
        assert ps.backend.running_endpoints() == [ids[2], ids[0]]
        stats = ps.backend.stats()
        assert stats["starts"] == 5 and stats["running"] == 2 and ps.backend.rss_bytes() > 0
        pids, root = ps.backend.pids(), ps.backend.manager.root
        assert pids and root.exists()
    assert wait_until(lambda: not any(_pid_alive(p) for p in pids), timeout=5)
    assert not Path(root).exists()


def test_serve_postgres_without_binaries_exits_2_with_install_hint(monkeypatch, capsys):
    from neon_tui.simulator import postgres

    def missing():
        raise PostgresUnavailable("initdb/pg_ctl not found")

    monkeypatch.setattr(postgres, "find_bindir", missing)
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    assert serve.main(parser.parse_args(["--postgres"])) == 2
    err = capsys.readouterr().err
    assert "--postgres needs PostgreSQL server binaries" in err and "apt-get install postgresql" in err


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_first_connections_start_the_compute_once(pg_sim):
    import threading

    ps = pg_sim
    project = _project(ps, "acme-analytics")
    main = _branch(ps, project, "main")
    uri = _uri(ps, project, main, "readonly")
    assert ps.backend.cluster(main.id) is None
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(ps.login_error(uri))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [None] * 4
    assert ps.backend.cluster(main.id).starts == 1
    assert project.rw_endpoint(main.id).current_state == "active"


_OWNER_SCRIPT = r"""
import sys, time
from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.postgres import PostgresBackend
sim = Simulator(SimConfig(op_seconds=0.3))
pg = PostgresBackend(sim, max_running=2).start()
ep = next(e for p in sim.account.projects.values() for e in p.endpoints.values())
pg.wake(ep.id)
print(pg.manager.root, *pg.pids(), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_of_the_owner_leaves_no_server_behind(tmp_path):
    """The demo or a test may die by SIGKILL: the watchdog still stops its clusters and removes the dir."""
    from pg_helpers import require_postgres

    require_postgres()
    proc = subprocess.Popen([os.sys.executable, "-c", _OWNER_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line, "the owner process did not start a cluster"
        root, pids = Path(line[0]), [int(p) for p in line[1:]]
        assert pids and all(_pid_alive(p) for p in pids) and root.is_dir()
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert wait_until(lambda: not any(_pid_alive(p) for p in pids), timeout=15), "postgres outlived its owner"
    assert wait_until(lambda: not root.exists(), timeout=10)


@pytest.mark.parametrize("sent", [
    b"\x00\x00\x00\x50\x00\x03\x00\x00user\x00",          # a startup packet cut short
    b"\x00\x00\x00\x08\x04\xd2\x16\x2f" + b"\x16\x03\x01\x02\x00",  # SSLRequest, then a TLS header, no body
])
@pytest.mark.slow
@pytest.mark.postgres
def test_router_drops_a_client_that_stops_sending(pg_sim, monkeypatch, sent):
    """Found in review: such clients held a router task forever."""
    import socket

    from neon_tui.simulator import router

    monkeypatch.setattr(router, "READ_TIMEOUT", 0.5)
    host, port = pg_sim.route
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(sent)
        sock.settimeout(5)
        got = b""
        t0 = time.monotonic()
        while True:
            chunk = sock.recv(100)
            if not chunk:
                break
            got += chunk
        assert time.monotonic() - t0 < 4  # closed by the router, not by our 5 s timeout


@pytest.mark.slow
@pytest.mark.postgres
def test_a_compute_with_an_open_connection_is_never_stopped_for_room():
    """Found while benchmarking: LRU stopped a compute in the middle of a verification login."""
    with pg_session(max_running=1) as ps:
        ps.backend.EVICT_GRACE = 0.0
        project = _project(ps, "acme-prod")
        main, staging = _branch(ps, project, "main"), _branch(ps, project, "staging")
        with ps.connect(_uri(ps, project, main, "app")) as held:
            assert ps.login_error(_uri(ps, project, staging, "app")) is None
            held.execute("select 1")  # still alive: the cap gave way
            assert main.id in ps.backend.running_endpoints()
        # closed: now it may go when another compute needs the room
        assert wait_until(lambda: ps.backend.manager.cluster(main.id).clients == 0)
        alice = _branch(ps, project, "dev/alice")
        assert ps.login_error(_uri(ps, project, alice, "app")) is None
        assert ps.backend.running_endpoints() == [alice.id]


@pytest.mark.postgres
@pytest.mark.slow
def test_a_reset_while_an_idle_compute_starts_meets_423_transitive(pg_sim, monkeypatch):
    """A first connection starts the idle compute for real; while it starts, Neon reports it starting and
    refuses to suspend it, so a reset answers 423 "endpoint is in some transitive state, could not suspend"."""
    import threading

    ps = pg_sim
    project = _project(ps, "acme-ml-features")
    branch = _branch(ps, project, "experiments/embeddings-v2")
    ep = project.rw_endpoint(branch.id)
    assert ep.current_state == "idle" and ps.backend.cluster(branch.id) is None
    assert wait_until(lambda: not ps.sim.inspect.locked(project.id))  # no earlier operation still running
    release = threading.Event()
    real_start = ps.backend.manager.start

    def held_start(cl):
        release.wait(20)  # the start is in progress until the test lets it finish
        return real_start(cl)

    monkeypatch.setattr(ps.backend.manager, "start", held_start)
    uri = _uri(ps, project, branch, "app")
    results: list = []
    login = threading.Thread(target=lambda: results.append(ps.login_error(uri)))
    login.start()
    try:
        path = f"/projects/{project.id}/endpoints/{ep.id}"
        assert wait_until(lambda: ps.api.get(path).json()["endpoint"]["current_state"] == "init")
        assert ps.api.get(path).json()["endpoint"]["pending_state"] == "active"
        r = ps.api.post(f"/projects/{project.id}/branches/{branch.id}/roles/app/reset_password")
        assert (r.status_code, r.json()["message"]) == (423, "endpoint is in some transitive state, could not suspend")
    finally:
        release.set()
        login.join(30)
    assert results == [None]
    assert ps.api.get(path).json()["endpoint"]["current_state"] == "active"
    assert ps.api.post(f"/projects/{project.id}/branches/{branch.id}/roles/app/reset_password").status_code == 200
