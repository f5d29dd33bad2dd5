"""The live checklist: each step's state and figure from journals, what the account says, and `neon-tui status`
/ `neon-tui report` exit codes (real subprocesses on a state directory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from incident_fixtures import ACCOUNT, HOST, write_incident

from neon_tui.incident.actions import create_action_journal
from neon_tui.incident.checklist import ATTENTION, DONE, IN_PROGRESS, TODO, checklist, confirm
from neon_tui.incident.journals import load

IDS = ["exposed", "rotate", "deliver", "keys", "ipallow", "audit", "report"]


def _steps(root: Path, **kw):
    runs, acts = write_incident(root, **kw)
    inputs = load(None, runs_dir=runs, acts_dir=acts)
    return {s.id: s for s in checklist(inputs.runs, inputs.actions)}, acts


def test_nothing_journaled_is_all_todo(tmp_path):
    steps = checklist([], [])
    assert [s.id for s in steps] == IDS
    assert [s.view for s in steps] == ["leak", "run", "deliver", "keys", "ipallow", "audit", "report"]
    assert {s.state for s in steps} == {TODO}


def test_the_open_incident_step_by_step(tmp_path):
    s, _ = _steps(tmp_path)
    assert (s["exposed"].state, s["exposed"].figure) == (ATTENTION, "3 exposed found 16:02 · 1 unchecked")
    assert s["rotate"].state == ATTENTION
    assert s["rotate"].figure == "rotated 2/3 · verified 2/3 old dead · 1 failed, 0 unknown"
    assert (s["deliver"].state, s["deliver"].figure) == (ATTENTION, "stored copies: 2 sink(s), 1 failed")
    assert s["keys"].state == IN_PROGRESS
    assert s["keys"].figure == "API key rotated 16:30, old key 7001 revoked, not confirmed dead"
    assert (s["ipallow"].state, s["ipallow"].figure) == (
        IN_PROGRESS, "IP allow: 2 of 3 project(s) reviewed")
    assert (s["audit"].state, s["audit"].figure) == (DONE, "roles: 2 flagged, 1 dropped, 1 kept")
    assert s["report"].state == TODO


def test_the_complete_incident_is_done_once_the_report_is_written(tmp_path):
    s, acts = _steps(tmp_path, complete=True)
    assert [s[i].state for i in IDS] == [DONE] * 6 + [TODO]
    assert s["keys"].figure == "API key rotated 16:30, old key 401"
    assert s["rotate"].figure == "rotated 3/3 · verified 3/3 old dead"
    j = create_action_journal("report", host=HOST, account=ACCOUNT, directory=acts)
    j.write("report_written", path="/tmp/r.md", format="markdown", runs=[], actions=[])
    j.close()
    inputs = load(None, runs_dir=tmp_path / "runs", acts_dir=acts)
    steps = checklist(inputs.runs, inputs.actions)
    assert all(x.state == DONE for x in steps) and steps[-1].figure.startswith("report written ")


def test_attention_states_from_action_journals(tmp_path):
    keys = create_action_journal("keys", host=HOST, account=ACCOUNT, directory=tmp_path)
    keys.write("key_created", key_id=9, name="n", scope="personal", org_id=None, project_id=None, request_id="r")
    keys.write("key_revoke_failed", key_id=8, which="old", reason="HTTP 500")
    keys.close()
    ip = create_action_journal("ipallow", host=HOST, account=ACCOUNT, directory=tmp_path)
    ip.write("ipallow_reviewed", project_id="p1", findings=[
        {"kind": "protected_only_gap", "flag": True, "message": "covers protected branches only while unprotected "
         "branch dev still holds an exposed password (app)"}])
    ip.write("ipallow_reviewed", project_id="p2", findings=[
        {"kind": "open", "flag": True, "message": "open to every address: the allowlist is empty"}])
    # a change to p1 after the review does not clear its finding (only a later review of p1 would)
    ip.write("ipallow_changed", project_id="p1", before={"ips": ["1.2.3.4"], "protected_branches_only": True},
             after={"ips": ["1.2.3.5"], "protected_branches_only": True}, operations=["op"], request_id="r")
    ip.close()
    roles = create_action_journal("roles", host=HOST, account=ACCOUNT, directory=tmp_path)
    roles.write("audit_reviewed", findings={"flagged": 3})
    roles.write("role_kept", project_id="p", branch_id="b", role="r", reason="ours")
    roles.close()
    inputs = load(None, runs_dir=tmp_path / "none", acts_dir=tmp_path)
    s = {x.id: x for x in checklist(inputs.runs, inputs.actions)}
    assert s["keys"].state == ATTENTION and "1 revoke(s) failed" in s["keys"].figure
    # an exposed password outside the list is an alarm; an empty list the user reviewed is only counted
    assert s["ipallow"].state == ATTENTION and s["ipallow"].figure == \
        "IP allow: 2 project(s) reviewed, total unknown (r in the IP allow view reviews all), 1 open to every " \
        "address, 1 with risky findings unchanged"
    assert s["ipallow"].details == ["p1: covers protected branches only while unprotected branch dev still holds "
                                    "an exposed password (app)"]
    assert s["audit"].state == IN_PROGRESS and s["audit"].figure == "roles: 3 flagged, 0 dropped, 1 kept"
    roles = create_action_journal("roles", host=HOST, account=ACCOUNT, directory=tmp_path)
    roles.write("role_drop_failed", project_id="p", branch_id="b", role="x", reason="in use")
    roles.close()
    inputs = load(None, runs_dir=tmp_path / "none", acts_dir=tmp_path)
    assert {x.id: x for x in checklist(inputs.runs, inputs.actions)}["audit"].state == ATTENTION


def test_account_facts_override_the_journals(tmp_path):
    s, _ = _steps(tmp_path, complete=True)
    runs, acts = tmp_path / "runs", tmp_path / "actions"
    inputs = load(None, runs_dir=runs, acts_dir=acts)
    steps = {x.id: x for x in checklist(inputs.runs, inputs.actions,
                                        {"revoked_still_listed": ["7001"], "not_changed_since_leak": ["shop/dev/app"]})}
    assert steps["keys"].state == ATTENTION and "still lists revoked key(s) 7001" in steps["keys"].figure
    assert steps["rotate"].state == ATTENTION and "1 role(s) unchanged since the leak" in steps["rotate"].figure


async def test_confirm_asks_the_account(tmp_path):
    """Against the simulator: a key revoked there is gone from the list; a key journaled as revoked but
    still live is reported."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "rotation"))
    from rotation_helpers import sim_client

    async with sim_client() as (sim, client):
        gone = await client.create_api_key("gone")
        await client.revoke_api_key(gone.id)
        live = await client.create_api_key("live")
        keys = create_action_journal("keys", host=HOST, account=ACCOUNT, directory=tmp_path)
        keys.write("key_revoked", key_id=gone.id, which="old", request_id=None)
        keys.write("key_revoked", key_id=live.id, which="old", request_id=None)
        keys.close()
        inputs = load(None, runs_dir=tmp_path / "none", acts_dir=tmp_path)
        facts = await confirm(client, inputs.runs, inputs.actions)
    assert facts["revoked_still_listed"] == [str(live.id)]
    assert facts["requests"] == 1


# ---------------------------------------------------------------------------------------------- CLI


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEON_TUI_STATE_DIR": str(state), "PYTHONPATH": str(Path(__file__).parents[2])}
    env.pop("NEON_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "neon_tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow
def test_status_and_report_exit_codes(tmp_path):
    state = tmp_path / "state"
    write_incident(state)
    p = _cli(state, "status", "--json")
    assert p.returncode == 3, p.stderr
    out = json.loads(p.stdout)
    assert [s["id"] for s in out["steps"]] == IDS and out["exit"] == 3
    assert out["scope"].startswith("leaked_at of exposure-")

    done = tmp_path / "done"
    write_incident(done, complete=True)
    assert _cli(done, "status").returncode == 3  # the report is not written yet
    r = _cli(done, "report", "--out", str(tmp_path / "r.md"))
    assert r.returncode == 0, r.stderr
    assert oct((tmp_path / "r.md").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "r.md").read_text().startswith("# Incident report")
    p = _cli(done, "status")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "report written" in p.stdout

    assert _cli(done, "report", "--since", "yesterday").returncode == 2
    bad = _cli(done, "report", "run-nope")
    assert bad.returncode == 1 and "no such run or action journal" in bad.stderr
    (done / "runs" / "run-20261102T000000Z-broken00.jsonl").write_text('{"event":"run","targets":[]}\ngarbage\n{}\n')
    assert _cli(done, "status").returncode == 1
    j = _cli(done, "report", "--json")
    assert j.returncode == 0 and json.loads(j.stdout)["problems"]


def test_the_scope_keeps_one_api_host_and_a_demo_session_counts_only_its_own_journals(tmp_path):
    from datetime import datetime, timezone

    runs, acts = write_incident(tmp_path)
    other = create_action_journal("keys", host="https://neon-sim.invalid/api/v2", account=ACCOUNT, directory=acts)
    other.write("key_created", key_id=5, name="n", scope="personal", org_id=None, project_id=None, request_id="r")
    other.close()
    everything = load(None, runs_dir=runs, acts_dir=acts)
    assert len(everything.actions) == len(load(None, runs_dir=runs, acts_dir=acts, host=HOST).actions) + 1
    real = load(None, runs_dir=runs, acts_dir=acts, host=HOST + "/")
    assert all(a.header["host"] == HOST for a in real.actions) and len(real.runs) == 1
    demo = load(None, runs_dir=runs, acts_dir=acts, host="https://neon-sim.invalid/api/v2")
    assert [a.id for a in demo.actions] == [other.path.stem] and demo.runs == []
    # a demo session started after every fixture journal: none of them is its business
    later = load(None, runs_dir=runs, acts_dir=acts, host=HOST, not_before=datetime.now(timezone.utc))
    assert later.runs == [] and later.actions == []


async def test_unknown_roles_need_a_decision_on_each_flagged_role(tmp_path):
    """The real audit and drop writers: dropping another role (twice) is not a decision on the flagged one; a
    review's refusal is not a failure; a later successful drop clears an earlier failure."""
    from neon_tui.incident.audit import DropTarget, audit, drop_roles, journal_review, open_roles_journal, review_drops
    from neon_tui.neon import NeonClient
    from neon_tui.simulator import SimConfig, Simulator
    from neon_tui.simulator.leak import demo_leaked_at

    sim = Simulator(SimConfig(op_seconds=0.05))
    acts = tmp_path / "actions"

    def audit_step():
        inputs = load(None, runs_dir=tmp_path / "runs", acts_dir=acts)
        return {s.id: s for s in checklist(inputs.runs, inputs.actions)}["audit"]

    async with NeonClient(sim.api_key, host="https://neon-sim.invalid/api/v2", transport=sim.transport()) as c:
        report = await audit(c, since=demo_leaked_at(sim), journals=tmp_path)
        j = open_roles_journal(c, account="acct", directory=acts)
        journal_review(j, report)
        prod = sim.inspect.project_by_name("acme-prod")
        low = DropTarget(prod.id, sim.inspect.branch_by_name(prod.id, "dev/alice").id, "alice_debug")
        await drop_roles(c, [low, low], j)  # a low role given twice: dropped, then refused (gone)
        step = audit_step()
        assert step.state == IN_PROGRESS, step.figure
        assert step.figure == "roles: 1 flagged, 1 dropped, 0 kept, 1 undecided"
        ml = sim.inspect.project_by_name("acme-ml-features")
        branch = sim.inspect.branch_by_name(ml.id, "export-tmp")
        sync = DropTarget(ml.id, branch.id, "sync_svc")
        assert [d.endswith("/sync_svc: flagged, not dropped or kept yet") for d in step.details] == [True]
        # A protected role refused by the review: journaled as a refusal, not attention.
        await drop_roles(c, [DropTarget(ml.id, branch.id, "neondb_owner")], j)
        assert audit_step().state == IN_PROGRESS
        # The review passes, then a database is given to sync_svc: Neon refuses the drop (a failure).
        (rv,) = await review_drops(c, [sync])
        db = next(iter(branch.databases.values()))
        owner, db.owner_name = db.owner_name, "sync_svc"
        (out,) = await drop_roles(c, [sync], j, reviews=[rv])
        assert out.status == "failed"
        step = audit_step()
        assert step.state == ATTENTION and "1 drop(s) failed" in step.figure
        db.owner_name = owner
        (out,) = await drop_roles(c, [sync], j)
        assert out.status == "dropped"
        j.close()
    step = audit_step()
    assert (step.state, step.figure) == (DONE, "roles: 1 flagged, 2 dropped, 0 kept")


def test_a_failed_old_key_revoke_resumed_to_success_is_done_and_a_damaged_record_is_a_problem(tmp_path, monkeypatch):
    """The real hand-off: the old key's revoke fails (attention), a resume revokes it and proves it dead (done).
    A key record without an int key_id is skipped and reported, never read as a key."""
    import asyncio

    from neon_tui.incident.keys import FileKeySink, KeyRotation
    from neon_tui.neon import NeonClient
    from neon_tui.neon.secret import Secret
    from neon_tui.simulator import SimConfig, Simulator

    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(tmp_path / "state"))
    sim = Simulator(SimConfig(op_seconds=0.05))
    host = "https://neon-sim.invalid/api/v2"
    acts = tmp_path / "actions"

    async def nosleep(_s):
        return None

    def factory(key):
        return NeonClient(key, host=host, transport=sim.transport(), sleep=nosleep)

    def keys_step():
        inputs = load(None, runs_dir=tmp_path / "runs", acts_dir=acts)
        return {s.id: s for s in checklist(inputs.runs, inputs.actions)}["keys"]

    old = sim.api_key
    sink = FileKeySink(tmp_path / "key")

    async def rotate():
        client = factory(Secret(old))
        try:
            return await KeyRotation(client, old_key=Secret(old), sink=sink, client_factory=factory, host=host,
                                     confirmed=True, directory=acts).run()
        finally:
            await client.aclose()

    sim.fail_next("DELETE /api_keys/{key_id}", "500", times=20)
    res = asyncio.run(rotate())
    assert res.outcome == "old_live"
    step = keys_step()
    assert step.state == ATTENTION and "1 revoke(s) failed" in step.figure
    sim.clear_scripted_faults()
    res = asyncio.run(KeyRotation.resume(res.journal, old_key=Secret(old), sink=sink, client_factory=factory,
                                         host=host))
    assert res.outcome == "rotated", res.messages
    step = keys_step()
    assert step.state == DONE, step.figure
    assert "revoke(s) failed" not in step.figure
    # A damaged record (key_id not an int) is a problem, not a key.
    j = create_action_journal("keys", host=host, account="acct", directory=acts)
    j.write("key_revoked", key_id=None, which="old", request_id="r")
    j.close()
    step = keys_step()
    assert step.state == ATTENTION and "1 damaged key record(s)" in step.figure
    assert "old key None" not in step.figure
    inputs = load(None, runs_dir=tmp_path / "runs", acts_dir=acts)
    from neon_tui.incident.report import build_report

    assert any("has no valid key_id (None)" in p for p in build_report(inputs.runs, inputs.actions).problems)
