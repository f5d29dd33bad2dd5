"""The incident from the command line against a served simulator: `exposure --leaked-at` journals the scan,
`rotate` journals operator, key kind and request ids, `report` and `status` read them; no secret anywhere."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.slow  # every test here takes over ~2 s

LEAKED = "Le@ked pw/42'"


def _secrets(sim) -> set[str]:
    out = {LEAKED, quote(LEAKED, safe="")}
    for p in sim.account.projects.values():
        for b in p.branches.values():
            for role in b.roles.values():
                if role.password:
                    out.add(role.password)
    out.update(k.key for k in sim.account.keys.values())
    return out


def test_exposure_rotate_report_status(served, tmp_path):
    sim = served.sim
    pid = sim.inspect.project_by_name("acme-prod").id
    bid = sim.inspect.branch_by_name(pid, "staging").id
    sim.inspect.role(pid, bid, "app").password = LEAKED
    leak = tmp_path / "prod.env"
    leak.write_text(f"DATABASE_URL='postgresql://app:{quote(LEAKED, safe='')}@ep-x-1.aws.neon.tech/neondb'\n")
    seen = _secrets(sim)

    bad = served.run("exposure", "--leaked", str(leak), "--leaked-at", "last tuesday")
    assert bad.returncode == 2 and "--leaked-at" in bad.stderr and "ISO 8601" in bad.stderr

    org = sim.inspect.org_of(pid)
    scan = served.run("exposure", "--leaked", str(leak), "--org", org, "--leaked-at", "2026-01-02T03:04Z")
    assert scan.returncode in (3, 4), scan.stderr
    assert f"{pid}/{bid}/app" in scan.stdout.splitlines()
    actions = list((served.state / "neon-tui" / "actions").glob("exposure-*.jsonl"))
    assert len(actions) == 1
    recs = [json.loads(x) for x in actions[0].read_text().splitlines()]
    assert recs[0]["event"] == "action" and recs[0]["key_kind"] == "personal" and recs[0]["operator"]["user"]
    scanned = recs[1]
    assert scanned["source"] == "prod.env" and scanned["leaked_at"] == "2026-01-02T03:04:00Z"
    assert [pid, bid, "app"] in scanned["exposed"]

    run = served.run("rotate", f"{pid}/{bid}/app", "--org", org, "--apply", "--yes", "--deliver", "none")
    assert run.returncode == 0, run.stderr
    (journal,) = served.journals()
    header = json.loads(journal.read_text().splitlines()[0])
    assert header["key_kind"] == "personal" and set(header["operator"]) == {"user", "hostname"}
    applying = [json.loads(x) for x in journal.read_text().splitlines() if '"applying"' in x]
    assert applying and applying[0]["request_id"]

    rep = served.run("report", "--json")
    assert rep.returncode == 0, rep.stderr
    data = json.loads(rep.stdout)
    assert data["leak_window"]["start"] == "2026-01-02T03:04:00Z"
    assert data["counts"]["rotated"] == 1 and data["counts"]["exposed_found"] >= 1
    assert applying[0]["request_id"] in data["evidence"]["request_ids"]
    out = tmp_path / "incident.md"
    assert served.run("report", "--out", str(out)).returncode == 0

    status = served.run("status", "--json")
    assert status.returncode == 3, status.stderr  # keys, IP allow and roles are still open
    steps = {s["id"]: s for s in json.loads(status.stdout)["steps"]}
    assert steps["report"]["state"] == "done" and steps["keys"]["state"] == "todo"
    assert json.loads(status.stdout)["account"]["requests"] >= 1  # asked the account about the rotated role

    seen |= _secrets(sim)  # the new passwords too
    files = list((served.state / "neon-tui").rglob("*.jsonl")) + [out]
    for f in files:
        text = f.read_text()
        for s in seen:
            assert s not in text, f"a secret is in {f.name}"
    for text in (rep.stdout, status.stdout, scan.stdout, scan.stderr):
        for s in seen:
            assert s not in text


def test_status_and_report_keep_to_the_keys_account_and_a_demo_to_its_own_session(served):
    """Journals of another account on the same API host (written by the real `ipallow review` with an
    organization key) are not this key's incident; `report --account` chooses one. A --demo status counts
    only its own process's journals."""
    sim = served.sim
    org = next(o for o in sim.account.orgs if o.name == "Acme Robotics")
    personal_key = served.env["NEON_API_KEY"]
    served.env["NEON_API_KEY"] = sim.org_api_key(org.id)
    r = served.run("ipallow", "review", "--json")
    assert json.loads(r.stdout.splitlines()[-1])["reviewed"] is True, r.stderr
    r = served.run("status", "--json")
    assert {s["id"]: s for s in json.loads(r.stdout)["steps"]}["ipallow"]["state"] != "todo", r.stderr
    served.env["NEON_API_KEY"] = personal_key
    r = served.run("status", "--json")
    steps = {s["id"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["ipallow"]["state"] == "todo", steps["ipallow"]
    r = served.run("report", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scope"]["actions"] == [] and f"journals of account {sim.inspect.user_id}" in r.stderr
    r = served.run("report", "--json", "--account", org.id)
    assert [a.split("-")[0] for a in json.loads(r.stdout)["scope"]["actions"]] == ["ipallow"], r.stderr
    # --demo: an earlier demo process's journals are another (simulated) account's.
    served.run("ipallow", "review", "--demo", "--json")
    r = served.run("status", "--demo", "--json")
    assert {s["id"]: s for s in json.loads(r.stdout)["steps"]}["ipallow"]["state"] == "todo", r.stdout
