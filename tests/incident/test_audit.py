"""The role and access audit, and dropping roles, against the simulated demo account."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from neon_tui.incident.actions import list_action_journals, read_action_journal
from neon_tui.incident.audit import (
    DropTarget,
    PgAccess,
    PgRole,
    audit,
    default_since,
    drop_roles,
    open_roles_journal,
    parse_since,
    review_drops,
)
from neon_tui.neon import NeonClient
from neon_tui.neon.errors import PermissionDeniedError
from neon_tui.rotation.journal import Journal
from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.account import DEMO_INTRUDER
from neon_tui.simulator.leak import demo_leaked_at


@pytest.fixture
def sim():
    return Simulator(SimConfig(op_seconds=0.3))


@pytest.fixture
async def client(sim):
    c = NeonClient(sim.api_key, host="https://neon-sim.invalid/api/v2", transport=sim.transport())
    async with c:
        yield c


def _ids(sim, project, branch):
    p = sim.inspect.project_by_name(project)
    return p.id, sim.inspect.branch_by_name(p.id, branch).id


def _where(findings, kind, severity=None):
    return {(f.project, f.branch, f.role or f.subject) for f in findings
            if f.kind == kind and (severity is None or f.severity == severity)}


async def test_finds_each_planted_thing_where_planted_and_nothing_else(sim, client, tmp_path):
    report = await audit(client, since=demo_leaked_at(sim), journals=tmp_path)
    f = report.findings
    assert _where(f, "role_created") == {("acme-ml-features", "export-tmp", "sync_svc")}
    assert _where(f, "role_changed") == set()
    assert _where(f, "branch_created") == {("acme-ml-features", "export-tmp", "Jordan Hale")}
    # alice_debug was made on dev/alice long before the leak: listed, but low.
    assert _where(f, "role_not_on_parent", "medium") == {("acme-ml-features", "export-tmp", "sync_svc")}
    assert _where(f, "role_not_on_parent", "low") == {("acme-prod", "dev/alice", "alice_debug")}
    assert _where(f, "member", "high") == {(None, None, DEMO_INTRUDER)}
    assert _where(f, "permission", "high") == {("acme-ml-features", None, DEMO_INTRUDER)}
    assert _where(f, "permission", "info") == {("acme-prod", None, "contractor@northwind-consulting.example")}
    assert {x.subject for x in f if x.kind == "member" and x.severity == "info"} == {
        "dana@acme-robotics.dev", "ops@acme-robotics.dev"}
    # Login roles owning nothing: exactly the model's login roles that own no database on their branch.
    expected = set()
    for p in sim.inspect.projects.values():
        for b in p.branches.values():
            owners = {d.owner_name for d in b.databases.values()}
            expected |= {(p.name, b.name, r.name) for r in b.roles.values()
                         if not r.protected and not r.no_login and r.name not in owners}
    assert _where(f, "role_owns_nothing") == expected and len(expected) > 10
    assert {x.severity for x in f if x.kind == "role_owns_nothing"} == {"low"}
    assert len(report.actionable) == 5
    target = next(x for x in f if x.kind == "role_created").target
    pid, bid = _ids(sim, "acme-ml-features", "export-tmp")
    assert target == f"{pid}/{bid}/sync_svc"
    # Counted and timed: one pass over the account.
    assert report.projects == 8 and report.branches == 22 and report.organizations == 3
    assert 0 < report.requests < 120
    # PostgreSQL was not asked for: every project says so, none is reported clean.
    assert {n.what for n in report.not_checked} == {"pg_privilege"}
    assert len(report.not_checked) == 8 and all("no connection" in n.reason for n in report.not_checked)


async def test_since_filters(sim, client, tmp_path):
    later = demo_leaked_at(sim) + timedelta(hours=47)  # after everything the demo planted
    report = await audit(client, since=later, journals=tmp_path)
    assert not [f for f in report.findings if f.severity == "high"]
    assert _where(report.findings, "branch_created") == set()
    assert _where(report.findings, "role_not_on_parent", "low") >= {("acme-ml-features", "export-tmp", "sync_svc")}
    # Only one org, by handle or name.
    one = await audit(client, since=demo_leaked_at(sim), orgs="Dana Kowalski", journals=tmp_path)
    assert one.organizations == 1 and one.projects == 2
    assert {f.project for f in one.findings if f.project} == {"side-project"}  # blog's only role owns its db
    assert {n.scope for n in one.not_checked} == {"project side-project", "project blog"}
    with pytest.raises(LookupError):
        await audit(client, since=later, orgs="no-such-org", journals=tmp_path)


async def test_changes_by_neon_tui_runs_are_not_suspicious(sim, client, tmp_path):
    since = datetime.now(timezone.utc) - timedelta(minutes=5)
    pid, staging = _ids(sim, "acme-prod", "staging")
    ours, theirs = (pid, staging, "app"), (pid, staging, "readonly")
    j = Journal(tmp_path / "run-20261130T000000Z-test.jsonl")
    j.write("run", targets=[{"target": list(ours), "label": "acme-prod/staging/app"}])
    j.write("state", target=list(ours), state="resetting", wall=time.time())
    await client.reset_role_password(*ours)
    j.write("state", target=list(ours), state="delivered")
    j.close()
    await client.reset_role_password(*theirs)
    report = await audit(client, since=since, journals=tmp_path)
    changed = {(f.role, f.severity): f.reason for f in report.findings if f.kind == "role_changed"}
    assert set(changed) == {("app", "info"), ("readonly", "medium")}
    assert "rotated by neon-tui" in changed[("app", "info")]
    assert "password reset counts as a change" in changed[("readonly", "medium")]
    assert report.rotated_by_us == 1


async def test_postgres_findings_and_not_checked_reasons(sim, client, tmp_path):
    seen = []

    async def fake_query(uri, route):
        seen.append(uri)
        return [PgRole("neondb_owner", False, True, True, True), PgRole("app", False, False, True, False),
                PgRole("backdoor", False, True, True, False), PgRole("root2", True, False, True, False)]

    report = await audit(client, since=demo_leaked_at(sim), orgs="Acme Robotics", journals=tmp_path,
                         pg=PgAccess(route=None, query=fake_query))
    pg = [f for f in report.findings if f.kind == "pg_privilege"]
    checked = {(f.project, f.branch) for f in pg}
    # acme-legacy-billing stores no passwords; branches without a read-write compute cannot be logged in to.
    reasons = {n.scope: n.reason for n in report.not_checked}
    assert "does not store passwords" in reasons["acme-legacy-billing/main"]
    assert "no read-write compute" in reasons["acme-prod/preview/pr-157"]
    assert ("acme-prod", "preview/pr-157") not in checked and ("acme-prod", "staging") in checked
    assert len(seen) == len(checked)
    on_staging = {f.role: f for f in pg if f.branch == "staging" and f.project == "acme-prod"}
    assert on_staging["backdoor"].severity == "high" and "not in Neon's role list" in on_staging["backdoor"].reason
    assert on_staging["root2"].severity == "high" and "superuser" in on_staging["root2"].reason
    assert on_staging["neondb_owner"].severity == "info" and "Neon's default" in on_staging["neondb_owner"].reason
    assert "app" not in on_staging
    for uri in seen:  # the connection strings never reach a finding's text
        assert all(uri.reveal() not in f.reason for f in report.findings)
    off = await audit(client, since=demo_leaked_at(sim), orgs="Dana Kowalski", journals=tmp_path,
                      pg=PgAccess(unavailable="no PostgreSQL here (simulated account)"))
    assert {n.reason for n in off.not_checked} == {"PostgreSQL not checked: no PostgreSQL here (simulated account)"}


async def test_an_org_key_sees_its_org_only(sim, tmp_path):
    org = sim.inspect.primary_org_id
    c = NeonClient(sim.org_api_key(org), host="https://neon-sim.invalid/api/v2", transport=sim.transport())
    async with c:
        report = await audit(c, since=demo_leaked_at(sim), journals=tmp_path)
    assert report.organizations == 1 and report.projects == 4
    assert _where(report.findings, "member", "high") == {(None, None, DEMO_INTRUDER)}
    assert {f.org_id for f in report.findings} == {org}


class _NoMembers(NeonClient):
    """Neon refuses the member list (e.g. a key without the right): the audit must say so, not look clean."""

    async def list_org_members(self, org_id, **kw):
        raise PermissionDeniedError("permission denied: members of this organization", status=403)


async def test_unreadable_members_are_not_checked(sim, tmp_path):
    c = _NoMembers(sim.api_key, host="https://neon-sim.invalid/api/v2", transport=sim.transport())
    async with c:
        report = await audit(c, since=demo_leaked_at(sim), orgs="Acme Robotics", journals=tmp_path)
    assert not [f for f in report.findings if f.kind == "member"]
    (nc,) = [n for n in report.not_checked if n.what == "member"]
    assert nc.scope == "organization Acme Robotics" and "permission denied" in nc.reason
    assert not report.complete


def test_parse_since():
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-11-28T09:00Z", now) == datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
    assert parse_since("2026-11-28T09:00", now).tzinfo is not None
    for bad in ("yesterday", "24", "h", "2027-01-01T00:00Z", "9999999d", "99999999999999w"):
        with pytest.raises(ValueError):
            parse_since(bad, now)


def test_default_since_from_exposure_journal(tmp_path):
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    when, why = default_since(tmp_path, now)
    assert when == now - timedelta(days=7) and "7 days" in why
    from neon_tui.incident.actions import create_action_journal

    j = create_action_journal("exposure", host="h", account="a", directory=tmp_path)
    j.write("exposure_scanned", source="leak.env", leaked_at="2026-11-29T03:00:00Z", exposed=[], unchecked=[],
            counts={})
    j.close()
    when, why = default_since(tmp_path, now)
    assert when == datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc) and "exposure scan" in why


# ------------------------------------------------------------------------------------------ dropping

async def test_review_refusals(sim, client):
    pid, staging = _ids(sim, "acme-prod", "staging")
    reviews = await review_drops(client, [
        DropTarget(pid, staging, "authenticator"), DropTarget(pid, staging, "neondb_owner"),
        DropTarget(pid, staging, "data team"), DropTarget(pid, staging, "nobody"), DropTarget(pid, staging, "app")])
    r = {rv.target.role: rv for rv in reviews}
    assert "system-protected" in r["authenticator"].refusal
    assert "project owner role" in r["neondb_owner"].refusal
    assert r["data team"].owns == ["analytics"]
    assert "owns database analytics on staging" in r["data team"].refusal
    assert "ALTER DATABASE" in r["data team"].refusal
    assert "has no role nobody" in r["nobody"].refusal
    assert r["app"].ok and r["app"].label == "acme-prod/staging/app"


async def test_drop_waits_for_operations_and_journals_without_secrets(sim, client, tmp_path):
    pid, staging = _ids(sim, "acme-prod", "staging")
    passwords = [sim.inspect.password(*k) for k in sim.inspect.login_roles()]
    journal = open_roles_journal(client, account="acct", directory=tmp_path)
    started = time.monotonic()
    targets = [DropTarget(pid, staging, "migrator"), DropTarget(pid, staging, "data team")]
    outcomes = await drop_roles(client, targets, journal)
    journal.close()
    took = time.monotonic() - started
    by = {o.review.target.role: o for o in outcomes}
    # a role delete answers the same apply_config + suspend_compute pair as a reset
    assert by["migrator"].status == "dropped" and len(by["migrator"].operations) == 2
    assert took >= 0.3 * 0.5  # waited for apply_config (half an op_seconds)
    ops = {op.id: op for op in sim.inspect.projects[pid].operations}
    assert all(ops[i].status(sim.clock()) == "finished" for i in by["migrator"].operations)
    assert "migrator" not in sim.inspect.role_names(pid, staging)
    assert by["data team"].status == "refused" and "data team" in sim.inspect.role_names(pid, staging)
    (path,) = list_action_journals("roles", directory=tmp_path)
    log = read_action_journal(path)
    assert log.kind == "roles"
    dropped, failed = log.events("role_dropped"), log.events("role_drop_refused")  # refused by the review
    assert not log.events("role_drop_failed")
    assert [(d["role"], d["operations"], d["already_gone"]) for d in dropped] == [
        ("migrator", by["migrator"].operations, False)]
    assert dropped[0]["request_id"]
    assert [(x["role"], "analytics" in x["reason"]) for x in failed] == [("data team", True)]
    text = path.read_text()
    assert all(pw not in text for pw in passwords if pw)


async def test_neon_refuses_a_role_that_owns_a_database(sim, client, tmp_path):
    """If the review is bypassed (a database made in between), Neon's own refusal comes back clearly."""
    pid, staging = _ids(sim, "acme-prod", "staging")
    (rv,) = await review_drops(client, [DropTarget(pid, staging, "app")])
    sim.inspect.branch_by_name(pid, "staging").databases["late"] = type(
        next(iter(sim.inspect.branch_by_name(pid, "staging").databases.values())))(1, staging, "late", "app", 0, 0)
    journal = open_roles_journal(client, account="acct", directory=tmp_path)
    (out,) = await drop_roles(client, [rv.target], journal, reviews=[rv])
    journal.close()
    assert out.status == "failed"
    assert "owns database(s) late" in out.message and "another owner first" in out.message
    assert "app" in sim.inspect.role_names(pid, staging)
