"""The real `neon-tui exposure` process against a served simulator; its selectors fed to `neon-tui rotate`."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest


LEAKED = "Le@ked pw/42'"


def _set(sim, project, branch, role, password=LEAKED):
    pid = sim.inspect.project_by_name(project).id
    bid = sim.inspect.branch_by_name(pid, branch).id
    sim.inspect.role(pid, bid, role).password = password
    return pid, bid, role


def _leak_file(tmp_path, role="app"):
    f = tmp_path / "leak.env"
    f.write_text(f"# leaked\nexport DATABASE_URL='postgresql://{quote(role, safe='')}:{quote(LEAKED, safe='')}"
                 f"@ep-x-1.aws.neon.tech/neondb?sslmode=require'\n")
    return f


@pytest.mark.slow
def test_selectors_feed_rotate_exactly(served, tmp_path):
    sim = served.sim
    a = _set(sim, "acme-prod", "staging", "app")
    b = _set(sim, "acme-prod", "preview/pr-142", "app")
    c = _set(sim, "acme-prod", "dev/alice", "data team")
    d = _set(sim, "acme-analytics", "main", "etl/loader")
    _set(sim, "acme-prod", "preview/pr-157", "app", "different")
    r = served.run("exposure", "--leaked", str(_leak_file(tmp_path)))
    assert r.returncode == 4, r.stderr  # exposed found; the no-store project could not be checked
    sels = r.stdout.splitlines()
    assert len(sels) == 4
    assert "exposed 4" in r.stderr and "project does not store passwords" in r.stderr
    for out in (r.stdout, r.stderr):
        assert LEAKED not in out and quote(LEAKED, safe="") not in out
    plan = served.run("rotate", "--json", *sels)
    assert plan.returncode == 0, plan.stderr
    got = {(t["project_id"], t["branch_id"], t["role"]) for t in json.loads(plan.stdout)["targets"]}
    assert got == {a, b, c, d}


@pytest.mark.slow
def test_json_stdin_and_exit_codes(served, tmp_path):
    sim = served.sim
    key = _set(sim, "acme-prod", "staging", "app")
    text = _leak_file(tmp_path).read_text()
    org = sim.inspect.org_of(key[0])
    r = served.run("exposure", "--leaked", "-", "--json", "--org", org, input=text)
    assert r.returncode == 4, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    exposed = [x for x in lines if x["type"] == "exposed"]
    assert [(x["project_id"], x["branch_id"], x["role"]) for x in exposed][:1] == [key] or key in [
        (x["project_id"], x["branch_id"], x["role"]) for x in exposed]
    assert exposed[0]["how"] == "revealed" and exposed[0]["leaked"][0]["line"] == 2
    assert exposed[0]["leaked"][0]["kind"] == "uri"
    assert any(x["type"] == "unchecked" for x in lines)
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["complete"] is False and summary["requests"] > 0
    assert LEAKED not in r.stdout + r.stderr and quote(LEAKED, safe="") not in r.stdout + r.stderr
    # an organization where everything is readable and nothing matches: clean, complete
    personal = sim.inspect.personal_org_id
    r = served.run("exposure", "--leaked", "-", "--org", personal, input=text)
    assert r.returncode == 0 and r.stdout == "", r.stderr


def test_usage_errors(served, tmp_path):
    r = served.run("exposure", "--leaked", "postgresql://app:Sup3rSecret@h/db")
    assert r.returncode == 2 and "Sup3rSecret" not in r.stderr and "not the secret itself" in r.stderr
    r = served.run("exposure", "--leaked", str(tmp_path / "missing.env"))
    assert r.returncode == 2 and "no such file" in r.stderr
    empty = tmp_path / "empty.env"
    empty.write_text("# nothing\n")
    r = served.run("exposure", "--leaked", str(empty))
    assert r.returncode == 2 and "no candidate password" in r.stderr
    r = served.run("exposure", "--help")
    assert r.returncode == 0 and "Exit status" in r.stdout


def test_a_bare_password_given_as_the_file_is_not_echoed(served):
    for cmd in (("exposure", "--leaked", "npg_AbCdEf123456"),
                ("rotate", "x/y/z", "--apply", "--yes", "--deliver", "stdout", "--leaked", "npg_AbCdEf123456")):
        r = served.run(*cmd)
        assert r.returncode == 2 and "no such file" in r.stderr
        assert "npg_AbCdEf123456" not in r.stderr + r.stdout


@pytest.mark.slow
def test_probes_against_a_simulator_without_postgres_are_not_sent_anywhere(served, tmp_path):
    """A loopback API without PGHOSTADDR/PGPORT: probing would look up Neon-like host names on the internet
    with leaked passwords. The roles are 'could not check' with the reason instead."""
    sim = served.sim
    billing = sim.inspect.project_by_name("acme-legacy-billing")
    main = sim.inspect.branch_by_name(billing.id, "main").id
    leak = tmp_path / "leak.txt"
    leak.write_text(sim.inspect.password(billing.id, main, "o'brien") + "\n")
    r = served.run("exposure", "--leaked", str(leak), "--probe-logins", "--json",
                   "--org", sim.inspect.org_of(billing.id))
    assert r.returncode in (1, 4), r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    mine = [x for x in lines if x["type"] == "unchecked" and x.get("project_id") == billing.id
            and x.get("branch_id") == main]
    assert mine and all("not possible here" in x["reason"] for x in mine), mine
