"""The real `neon-tui audit` and `neon-tui audit drop` processes against a served simulator."""

from __future__ import annotations

import json

import pytest

from neon_tui.simulator.account import DEMO_INTRUDER

pytestmark = pytest.mark.slow  # every test here takes over ~2 s


def _json(out):
    return [json.loads(x) for x in out.splitlines()]


def test_audit_json_and_exit_codes(served):
    sim = served.sim
    r = served.run("audit", "--json", "--since", "72h")
    assert r.returncode == 3, r.stderr
    lines = _json(r.stdout)
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["exit"] == 3 and summary["since_from"] == "--since"
    assert summary["findings"]["role_created"] == 1 and summary["findings"]["branch_created"] == 1
    assert summary["projects"] == 8 and 0 < summary["requests"] < 150
    high = {(x["kind"], x["role"] or x["subject"]) for x in lines if x["type"] == "finding" and x["severity"] == "high"}
    assert high == {("role_created", "sync_svc"), ("member", DEMO_INTRUDER), ("permission", DEMO_INTRUDER)}
    assert {x["what"] for x in lines if x["type"] == "not_checked"} == {"pg_privilege"}
    # The personal org has nothing high or medium; PostgreSQL not asked for does not make it incomplete.
    personal = sim.inspect.personal_org_id
    r = served.run("audit", "--json", "--since", "72h", "--org", personal)
    assert r.returncode == 0, r.stderr
    assert _json(r.stdout)[-1]["exit"] == 0
    # ... but asked for and impossible (an API on loopback, no PGHOSTADDR), it is incomplete.
    r = served.run("audit", "--since", "72h", "--org", personal, "--pg")
    assert r.returncode == 1, r.stderr
    assert "PGHOSTADDR" in r.stdout
    # Usage errors: one clear line each.
    r = served.run("audit", "--since", "last tuesday")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--since" in r.stderr
    r = served.run("audit", "--since", "9999999d")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "year 1" in r.stderr, r.stderr
    r = served.run("audit", "--org", "nope")
    assert r.returncode == 2 and "no organization 'nope'" in r.stderr
    # The review is journaled as counts.
    journals = sorted((served.state / "neon-tui" / "actions").glob("roles-*.jsonl"))
    assert journals
    rec = _json(journals[0].read_text())[1]
    assert rec["event"] == "audit_reviewed" and rec["findings"]["member"] >= 1
    assert DEMO_INTRUDER not in journals[0].read_text()


def test_drop_reviews_confirms_and_journals(served):
    sim = served.sim
    r = served.run("audit", "--json", "--since", "72h")
    target = next(x["target"] for x in _json(r.stdout) if x.get("kind") == "role_created")
    pid, bid, _ = target.split("/", 2)
    # Without a terminal and without --yes: refused, nothing dropped.
    r = served.run("audit", "drop", target)
    assert r.returncode == 2 and "--yes" in r.stderr
    assert "sync_svc" in sim.inspect.role_names(pid, bid)
    r = served.run("audit", "drop", target, f"{pid}/{bid}/neondb_owner", "--yes", "--json")
    assert r.returncode == 1, r.stderr
    out = {x["role"]: x for x in _json(r.stdout)}
    assert out["sync_svc"]["status"] == "dropped" and out["neondb_owner"]["status"] == "refused"
    assert "project owner role" in out["neondb_owner"]["message"]
    assert "sync_svc" not in sim.inspect.role_names(pid, bid)
    r = served.run("audit", "drop", "not-a-target", "--yes")
    assert r.returncode == 2 and "PROJECT_ID/BRANCH_ID/ROLE" in r.stderr
    r = served.run("audit", "--json", "--since", "72h")
    assert _json(r.stdout)[-1]["findings"]["role_created"] == 0


def test_the_audit_window_comes_from_this_hosts_exposure_scan_only(served, tmp_path):
    """A demo exposure scan (another API host, another account) never sets a real account's audit window."""
    leak = tmp_path / "leak.env"
    leak.write_text("export DATABASE_URL='postgresql://app:npg_notreal@ep-x-1.aws.neon.tech/neondb'\n")
    r = served.run("exposure", "--leaked", str(leak), "--demo", "--leaked-at", "2026-11-29T12:00Z")
    assert sorted((served.state / "neon-tui" / "actions").glob("exposure-*.jsonl")), r.stderr
    r = served.run("audit", "--json")
    assert "2026-11-29T12:00:00Z" not in r.stderr, r.stderr
    assert "7 days ago" in r.stderr
    # This host's own scan sets it.
    r = served.run("exposure", "--leaked", str(leak), "--leaked-at", "2026-11-28T08:00Z")
    r = served.run("audit", "--json")
    assert "looking for changes since 2026-11-28T08:00:00Z (the leak time of exposure scan" in r.stderr, r.stderr
