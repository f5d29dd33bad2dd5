"""The real `neon-tui rotate` process against a simulator on loopback, including SIGKILL and --resume."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from neon_tui.rotation.journal import read_journal


def passwords(sim):
    return {sim.inspect.password(*k) for k in sim.inspect.login_roles()}


def test_plan_only_changes_nothing(served):
    out = served.run("rotate", "acme-prod/staging")
    assert out.returncode == 0, out.stderr
    assert "rotate  acme-prod/staging/app" in out.stdout
    assert "skip    acme-prod/staging/authenticator" in out.stdout
    assert not [r for r in served.sim.inspect.requests if r.method != "GET"]
    assert not served.journals()
    # unselected copies: one line per branch and reason, the ones likely holding the same password flagged
    lines = out.stdout.splitlines()
    flagged = [line for line in lines if line.startswith("  WARNING acme-prod/preview/pr-142: same password as staging")]
    assert len(flagged) == 1, lines
    assert set(flagged[0].rsplit(": ", 1)[1].split(", ")) == {"app", "data team", "migrator", "neondb_owner",
                                                            "readonly"}
    assert sum(line.startswith("  WARNING acme-prod/preview/pr-142") for line in lines) == 1, lines
    assert any(line.startswith("  copy    acme-prod/main: its own password") for line in lines), lines


def test_apply_needs_yes_without_a_terminal_and_a_delivery_choice(served):
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--deliver", "stdout")
    assert out.returncode == 2 and "--yes" in out.stderr
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes")
    assert out.returncode == 2 and "--deliver" in out.stderr
    assert not [r for r in served.sim.inspect.requests if r.method != "GET"]


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
def test_json_apply_with_stdout_delivery(served):
    sim = served.sim
    out = served.run("rotate", "acme-prod/staging/*", "--org", "Acme Robotics", "--apply", "--yes", "--json",
                     "--deliver", "stdout")
    assert out.returncode == 0, out.stderr
    lines = jsonl(out.stdout)
    assert lines[0]["type"] == "run" and lines[0]["sinks"] == ["stdout"]
    assert lines[-1]["type"] == "summary" and lines[-1]["counts"] == {"delivered": lines[0]["targets"]}
    assert lines[-1]["complete"] is True
    targets = [x for x in lines if x["type"] == "target"]
    assert len(targets) == lines[0]["targets"]
    for t in targets:
        key = (t["project_id"], t["branch_id"], t["role"])
        assert t["state"] == "delivered" and t["confirmed"] is True and t["delivered_to"] == []
        assert sim.inspect.reset_count(*key) == 1
        assert t["password"] == sim.inspect.password(*key)
        for c in t["connections"]:
            assert sim.inspect.password(*key) in c["direct"] and "-pooler." in c["pooled"]
    # the journal has no secret
    (journal,) = served.journals()
    text = journal.read_text()
    assert not any(p in text for p in passwords(sim)) and sim.api_key not in text


@pytest.mark.slow
def test_passwords_only_reach_the_chosen_sink(served):
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--json", "--deliver", "none")
    assert out.returncode == 0, out.stderr
    blob = out.stdout + out.stderr
    assert not any(p in blob for p in passwords(served.sim))
    (target,) = [x for x in jsonl(out.stdout) if x["type"] == "target"]
    assert target["state"] == "rotated" and "password" not in target and "connections" not in target


def test_keyring_delivery_fails_loudly_before_any_reset(served):
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", "keyring")
    assert out.returncode == 2
    assert "no keyring backend" in out.stderr and "plain text" in out.stderr
    assert "Traceback" not in out.stderr
    assert not [r for r in served.sim.inspect.requests if r.method != "GET"]


@pytest.mark.slow
def test_bad_key_and_unreachable_api_are_clear_messages(served):
    env = dict(served.env, NEON_API_KEY="napi_not_a_real_key")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "neon_tui.cli", "rotate", "*"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "HTTP 401" in out.stderr and "Traceback" not in out.stderr
    assert "napi_not_a_real_key" not in out.stderr
    env = dict(served.env, NEON_API_HOST="http://127.0.0.1:9/api/v2")
    out = subprocess.run([sys.executable, "-m", "neon_tui.cli", "rotate", "*"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "could not reach" in out.stderr and "Traceback" not in out.stderr
    env = dict(served.env, NEON_API_HOST="http://example.com/api/v2")
    out = subprocess.run([sys.executable, "-m", "neon_tui.cli", "rotate", "*"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "plain http" in out.stderr


def _wait_for(pred, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return False


def _journal_states(served):
    js = served.journals()
    if not js:
        return []
    out = []
    for line in js[-1].read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "state":
            out.append(rec["state"])
    return out


@pytest.mark.slow
@pytest.mark.sim(projects=2, branches=2, roles=1, op_seconds=0.4, latency_ms=60)
@pytest.mark.parametrize("point", ["first-resetting", "first-applying", "third-rotated", "mid-run-resetting"])
def test_sigkill_then_resume_completes_without_double_reset(served, point):
    sim = served.sim
    proc = served.start("rotate", "*", "--apply", "--yes", "--deliver", "stdout")
    if point == "first-resetting":
        hit = _wait_for(lambda: "resetting" in _journal_states(served))
    elif point == "first-applying":
        hit = _wait_for(lambda: "applying" in _journal_states(served))
    elif point == "third-rotated":
        hit = _wait_for(lambda: _journal_states(served).count("rotated") >= 3)
    else:
        hit = _wait_for(lambda: _journal_states(served).count("resetting") >= 5)
    assert hit, proc.stderr.read() if proc.poll() is not None else "kill point never reached"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    (journal,) = served.journals()
    before = read_journal(journal)
    assert not before.ended
    states_at_kill = {t.state for t in before.targets.values()}
    if point in ("first-resetting", "mid-run-resetting"):
        assert "resetting" in states_at_kill, states_at_kill  # killed with a reset's outcome unknown
    elif point == "first-applying":
        assert "applying" in states_at_kill, states_at_kill  # killed with the password only in memory
    else:
        assert sum(t.state in ("rotated", "delivered") for t in before.targets.values()) >= 3
    time.sleep(0.6)  # let any reset that was in flight land, as it would at Neon
    out = served.run("rotate", "--resume", "--yes", "--deliver", "stdout")
    assert out.returncode == 0, out.stdout + out.stderr
    after = read_journal(journal)
    assert after.ended
    assert {t.state for t in after.targets.values()} == {"delivered"}
    for key in after.targets:
        assert sim.inspect.reset_count(*key) == 1, f"{key} reset {sim.inspect.reset_count(*key)} times"
    printed = out.stdout
    resumed_keys = [k for k, t in before.targets.items() if t.state not in ("rotated", "delivered")]
    assert resumed_keys  # killed mid-run: some targets were left to the resume
    for key in resumed_keys:
        assert sim.inspect.password(*key) in printed, f"{key}: new password not delivered on resume"
    assert "Resuming" in out.stderr
    # stdout carries only the credentials: label, database, kind, value, status, tab-separated
    for line in out.stdout.splitlines():
        label, database, kind, value, status = line.split("\t")
        assert kind in ("direct", "pooled", "password") and status in ("live", "live,no-endpoint-yet")
        assert value.startswith("postgresql://") or kind == "password"


def test_read_only_refuses_to_apply(served):
    out = served.run("--read-only", "rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", "stdout")
    assert out.returncode == 2 and "--read-only" in out.stderr
    assert not [r for r in served.sim.inspect.requests if r.method != "GET"]


@pytest.mark.slow
def test_json_stdout_delivery_is_journaled_after_printing(served):
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--json", "--deliver", "stdout")
    assert out.returncode == 0, out.stderr
    # the target line goes out as the password is handed over; its verification (on by default) after it
    assert [x["type"] for x in jsonl(out.stdout)] == ["run", "target", "verify", "summary"]
    (journal,) = served.journals()
    state = read_journal(journal)
    assert state.ended and {t.state for t in state.targets.values()} == {"delivered"}


def test_a_selector_that_matches_nothing_is_an_error(served):
    out = served.run("rotate", "no-such-project")
    assert out.returncode == 2
    assert "matched no role" in out.stderr and "nothing matched" in out.stderr
    out = served.run("rotate", "acme-prod/staging/app", "acme-prod/nope/x")
    assert out.returncode == 0 and "'acme-prod/nope/x' matched no role" in out.stderr


@pytest.mark.slow
@pytest.mark.sim(projects=2, branches=2, roles=1, op_seconds=0.4, latency_ms=60)
def test_sigkill_before_any_reset_then_a_fresh_run(served):
    """Killed while still planning: nothing was sent, there is nothing to resume, a new run does it all once."""
    sim = served.sim
    proc = served.start("rotate", "*", "--apply", "--yes", "--deliver", "stdout")
    assert _wait_for(lambda: len(sim.inspect.requests) >= 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not [r for r in sim.inspect.requests if r.method != "GET"]
    out = served.run("rotate", "--resume", "--yes", "--deliver", "stdout")
    assert out.returncode == 2 and "no interrupted run" in out.stderr
    out = served.run("rotate", "*", "--apply", "--yes", "--deliver", "stdout")
    assert out.returncode == 0, out.stderr
    for key in sim.inspect.login_roles():
        if key[0] in {p for p in sim.inspect.project_ids(sim.inspect.primary_org_id)}:
            assert sim.inspect.reset_count(*key) == 1


# ---------------------------------------------------------------------------------------------- verification


@pytest.mark.slow
def test_verify_goes_with_apply_and_is_on_by_default(served):
    out = served.run("rotate", "acme-prod/staging/app", "--verify")
    assert out.returncode == 2 and "--verify" in out.stderr
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", "none")
    assert out.returncode == 0, out.stderr
    assert "wakes idle computes" in out.stderr  # said on the plan before the run
    # a simulator on loopback without PGHOSTADDR/PGPORT: nothing to log in to, and it says so
    assert "not verified: the API is on this machine" in out.stderr
    assert "verification: 1 not verified" in out.stderr


@pytest.mark.slow
def test_json_verify_lines_and_no_verify(served):
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--json", "--deliver", "none")
    assert out.returncode == 0, out.stderr
    lines = jsonl(out.stdout)
    (verify,) = [x for x in lines if x["type"] == "verify"]
    assert verify["role"] == "app" and verify["new"] == "skipped" and verify["old"] == "not-checked"
    assert verify["alarm"] is False
    summary = lines[-1]
    assert summary["verification"] == {"not verified": 1} and summary["alarms"] == 0
    (target,) = [x for x in lines if x["type"] == "target"]
    assert "verify" in target
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--json", "--deliver", "none",
                     "--no-verify")
    assert out.returncode == 0, out.stderr
    lines = jsonl(out.stdout)
    assert not [x for x in lines if x["type"] == "verify"]
    assert lines[-1]["verification"] is None
    assert [x for x in lines if x["type"] == "target"][0]["verify"] is None


def _run_cli_in_process(monkeypatch, tmp_path, old_still_works: bool):
    """`neon-tui rotate --demo --apply` in this process, on a demo simulator that claims a PostgreSQL route,
    with the real driver replaced by a login that knows the simulator's passwords."""
    import argparse
    from urllib.parse import unquote, urlsplit

    from neon_tui import rotate_cli
    from neon_tui.rotation import logins
    from neon_tui.rotation.logins import Login, LoginOutcome

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    real_make_client = rotate_cli.make_client
    seen = {}

    class FakePostgres:
        route = ("127.0.0.1", 5432)

    def make_client(demo, **kw):
        client, sim = real_make_client(demo, **kw)
        sim.postgres = FakePostgres()
        seen["sim"] = sim
        return client, sim

    async def login(uri, password=None, *, route=None, timeout=10):
        assert route == logins.Route("127.0.0.1", 5432)
        sim = seen["sim"]
        parts = urlsplit(uri.reveal() if hasattr(uri, "reveal") else uri)
        pw = password.reveal() if password is not None else unquote(parts.password or "")
        project = sim.inspect.project_by_name("acme-prod").id
        key = (project, sim.inspect.branch_by_name(project, "staging").id, unquote(parts.username))
        ok = sim.inspect.accepts(*key, pw) or (old_still_works and password is not None)
        return LoginOutcome(Login.OK if ok else Login.REJECTED, "logged in" if ok else "password authentication failed")

    monkeypatch.setattr(rotate_cli, "make_client", make_client)
    monkeypatch.setattr(logins, "try_login", login)
    # The stand-in PostgreSQL above, not the real clusters `--demo` would start on this machine.
    import neon_tui.simulator.postgres as pg

    monkeypatch.setattr(pg, "start_or_explain", lambda sim, max_running=6: (None, None))
    p = argparse.ArgumentParser()
    rotate_cli.add_arguments(p)
    ns = p.parse_args(["acme-prod/staging/app", "--demo", "--apply", "--yes", "--deliver", "none"])
    return rotate_cli.main(ns)


@pytest.mark.slow
def test_old_password_still_accepted_is_exit_1(monkeypatch, tmp_path, capsys):
    assert _run_cli_in_process(monkeypatch, tmp_path, old_still_works=True) == 1
    err = capsys.readouterr().err
    assert "ALARM" in err and "STILL ACCEPTED" in err


def test_new_password_ok_and_old_rejected_is_exit_0(monkeypatch, tmp_path, capsys):
    assert _run_cli_in_process(monkeypatch, tmp_path, old_still_works=False) == 0
    err = capsys.readouterr().err
    assert "new ok · old rejected" in err and "verification: 1 verified" in err and "ALARM" not in err


def test_a_demo_run_is_never_resumed(monkeypatch, tmp_path, capsys):
    """Each --demo is a new simulated account: resuming an earlier demo's journal would reconcile against state
    that no longer exists, so it is refused before anything is listed or reset."""
    import argparse

    from neon_tui import rotate_cli

    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(tmp_path / "state"))
    built = []
    monkeypatch.setattr(rotate_cli, "make_client", lambda demo, **kw: built.append(demo))
    p = argparse.ArgumentParser()
    rotate_cli.add_arguments(p)
    ns = p.parse_args(["--demo", "--resume", "latest", "--apply", "--yes", "--deliver", "none"])
    assert rotate_cli.main(ns) == 2
    err = capsys.readouterr().err
    assert "an earlier demo run cannot be resumed" in err
    assert built == []  # refused before a client (and a simulator) was made
