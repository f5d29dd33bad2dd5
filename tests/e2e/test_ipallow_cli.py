"""The real `neon-tui ipallow` process against a served simulator: exit codes, --json, confirmation, the
paid-plan refusal and the journal."""

from __future__ import annotations

import json

import pytest

from neon_tui.incident.actions import create_action_journal, list_action_journals, read_action_journal


def _lines(stdout):
    return [json.loads(x) for x in stdout.splitlines()]


def _actions(served):
    return served.state / "neon-tui" / "actions"


def test_list_json_exit_codes_and_the_exposure_gap(served):
    sim = served.sim
    r = served.run("ipallow", "--json")
    assert r.returncode == 3, r.stderr
    lines = _lines(r.stdout)
    projects = {x["project"]: x for x in lines if x["type"] == "project"}
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["projects"] == len(projects) == 8
    assert summary["flagged"] == 6 and summary["complete"] is True and summary["exit"] == 3
    assert summary["exposure"] is None and summary["requests"] <= 12
    assert projects["acme-prod"]["protected_branches_only"] is True and not projects["acme-prod"]["flagged"]
    assert projects["blog"]["plan_allows_ip_allow"] is False
    # An exposure scan journaled in the state directory names the unprotected branch that is exposed.
    prod = sim.inspect.project_by_name("acme-prod")
    staging = sim.inspect.branch_by_name(prod.id, "staging").id
    j = create_action_journal("exposure", host=served.url, account=sim.inspect.user_id, directory=_actions(served))
    j.write("exposure_scanned", source="leak.env", exposed=[[prod.id, staging, "app"]], unchecked=[], counts={})
    j.close()
    r = served.run("ipallow", "--org", "Acme Robotics")
    assert r.returncode == 3, r.stderr
    assert "FLAG acme-prod" in r.stdout and f"unprotected branch staging ({staging}) still holds an exposed " \
                                            "password (app)" in r.stdout
    assert f"exposure scan {j.path.stem} (1 exposed)" in r.stderr
    assert "blog" not in r.stdout  # --org limits the review


def test_nothing_flagged_exits_zero_and_review_is_journaled(served):
    sim = served.sim
    for p in list(sim.account.projects.values()):
        if p.org_id != sim.inspect.primary_org_id:
            sim.account.projects.pop(p.id)
        elif not p.allowed_ips:
            p.allowed_ips = ["203.0.113.0/24"]
    r = served.run("ipallow", "review", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _lines(r.stdout)[-1]["flagged"] == 0 and _lines(r.stdout)[-1]["reviewed"] is True
    (path,) = list_action_journals("ipallow", directory=_actions(served))
    log = read_action_journal(path)
    reviewed = log.events("ipallow_reviewed")
    assert len(reviewed) == 4 and {r["project_id"] for r in reviewed} == set(sim.account.projects)
    assert all(isinstance(r["findings"], list) for r in reviewed)


@pytest.mark.slow
def test_set_asks_and_applies(served):
    sim = served.sim
    p = sim.inspect.project_by_name("acme-ml-features")
    r = served.run("ipallow", "set", p.name, "--ips", "203.0.113.0/24,127.0.0.1", input="n\n")
    assert r.returncode == 1 and "not applied (declined)" in r.stderr and p.allowed_ips == []
    assert "your address: 127.0.0.1 (where Neon last saw the key in use, 'neon-tui' (" in r.stderr, r.stderr
    r = served.run("ipallow", "set", p.id, "--ips", "203.0.113.0/24,127.0.0.1", "--protected-only", input="y\n")
    assert r.returncode == 0, r.stderr
    assert p.allowed_ips == ["203.0.113.0/24", "127.0.0.1"] and p.protected_branches_only is True
    assert "operation(s) finished" in r.stdout and f"waiting for {len(p.endpoints)} operation(s)" in r.stderr
    # Removing your own address needs the project's name typed; "y" is not enough.
    r = served.run("ipallow", "remove", p.name, "--ips", "127.0.0.1", input="y\n")
    assert r.returncode == 1 and "YOUR ADDRESS 127.0.0.1 would be excluded on protected branches" in r.stderr
    assert "127.0.0.1" in p.allowed_ips
    r = served.run("ipallow", "remove", p.name, "--ips", "127.0.0.1", "--json", input=p.name + "\n")
    assert r.returncode == 0, r.stderr
    change, applied = _lines(r.stdout)
    assert change["removed"] == ["127.0.0.1"] and applied["type"] == "applied"
    assert applied["ips"] == ["203.0.113.0/24"] and applied["protected_branches_only"] is True
    # up to 7 of the requests establish the key in use (keys.list_keys: its address is "your address")
    assert len(applied["operations"]) == len(p.endpoints) and applied["requests"] <= 24
    events = [r["event"] for path in list_action_journals("ipallow", directory=_actions(served))
              for r in read_action_journal(path).records]
    assert events == ["ipallow_changed", "ipallow_applied", "ipallow_changed", "ipallow_applied"]
    assert sim.api_key not in "".join(x.read_text() for x in _actions(served).iterdir())


@pytest.mark.slow
def test_paid_plan_refusal_and_usage_errors(served):
    sim = served.sim
    blog = sim.inspect.project_by_name("blog")
    r = served.run("ipallow", "add", "blog", "--ips", "203.0.113.0/24", "--yes")
    assert r.returncode == 1 and blog.allowed_ips == []
    assert ("neon-tui ipallow: not applied: IP Allow needs a paid plan (Scale); Neon refused: IP Allow is not "
            "available on the free plan") in r.stderr
    assert "warning: this organization is on the free plan" in r.stderr
    r = served.run("ipallow", "set", "acme-prod", "--ips", "10.0.0.300", "--yes")
    assert r.returncode == 2 and "invalid: '10.0.0.300': not an IP address" in r.stderr
    assert "nothing sent" in r.stderr and sim.inspect.project_by_name("acme-prod").allowed_ips[0] == "203.0.113.0/24"
    for args, text in ((("set", "acme-prod"), "needs --ips"), (("set",), "needs a PROJECT"),
                       (("add", "acme-prod", "--ips", ""), "at least one entry"),
                       (("list", "acme-prod"), "takes no PROJECT"),
                       (("set", "no-such", "--ips", "203.0.113.1", "--yes"), "no project 'no-such'"),
                       (("remove", "acme-prod", "--ips", "198.51.100.1", "--yes"), "not in the list of acme-prod"),
                       (("set", "acme-prod", "--ips", "1.2.3.4", "--my-ip", "laptop"), "--my-ip 'laptop'")):
        r = served.run("ipallow", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


@pytest.mark.slow
def test_a_change_is_not_a_review_and_the_total_comes_from_the_review(served):
    """The real writers: `ipallow add` to one project is not a review of the account's 8; `ipallow review`
    journals how many projects it covered, so status counts against that."""
    r = served.run("ipallow", "add", "acme-prod", "--ips", "1.2.3.4", "--yes", "--my-ip", "1.2.3.4")
    assert r.returncode == 0, r.stderr
    r = served.run("status", "--json")
    step = {s["id"]: s for s in json.loads(r.stdout)["steps"]}["ipallow"]
    assert step["state"] == "in progress" and step["figure"].startswith("IP allow: 0 project(s) reviewed"), step
    r = served.run("ipallow", "review", "--json")
    assert json.loads(r.stdout.splitlines()[-1])["reviewed"] is True, r.stderr
    r = served.run("status", "--json")
    step = {s["id"]: s for s in json.loads(r.stdout)["steps"]}["ipallow"]
    assert step["figure"].startswith("IP allow: 8 of 8 project(s) reviewed"), step
    (path,) = [p for p in list_action_journals("ipallow", directory=_actions(served))
               if read_action_journal(p).events("ipallow_reviewed")]
    assert {x["review_projects"] for x in read_action_journal(path).events("ipallow_reviewed")} == {8}


@pytest.mark.slow
def test_widening_is_warned_and_opening_needs_the_typed_project_name(served):
    for ips, warning in (("0.0.0.0/1,128.0.0.0/1", "cover every IPv4 address"),
                         ("0.0.0.0-255.255.255.255", "cover every IPv4 address"),
                         ("", "an empty list opens the project to every address")):
        r = served.run("ipallow", "set", "acme-prod", "--ips", ips, "--my-ip", "1.2.3.4", input="y\n")
        assert r.returncode == 1 and "not applied (declined)" in r.stderr, r.stderr
        assert warning in r.stderr and "Type the project name (acme-prod)" in r.stderr, r.stderr
    r = served.run("ipallow", "set", "acme-prod", "--ips", "10.0.0.0/7,1.2.3.4", "--my-ip", "1.2.3.4", input="n\n")
    assert "more than a /8" in r.stderr and "Apply this change? [y/N]" in r.stderr, r.stderr
    r = served.run("ipallow", "set", "acme-prod", "--ips", "0.0.0.0/1,128.0.0.0/1", "--my-ip", "1.2.3.4",
                   "--json", input="acme-prod\n")
    assert r.returncode == 0, r.stderr
    assert _lines(r.stdout)[-1]["ips"] == ["0.0.0.0/1", "128.0.0.0/1"]
    # The review flags the list now: together the entries restrict nothing.
    r = served.run("ipallow", "--json")
    prod = next(x for x in _lines(r.stdout) if x.get("project") == "acme-prod")
    assert prod["flagged"] and any(f["kind"] == "covers_all" for f in prod["findings"]), prod
