"""The incident report: golden Markdown and JSON for a fixed incident, the guard, and no secret anywhere after
a real rotation against the simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from incident_fixtures import APP_DEV, ETL, write_incident

from neon_tui.incident.journals import load
from neon_tui.incident.report import ReportError, build_report, guard, render_markdown, to_json
from neon_tui.neon.secret import Secret

GOLDEN = Path(__file__).parent / "golden"


def _report(tmp_path, **kw):
    runs, acts = write_incident(tmp_path, **kw)
    inputs = load(None, runs_dir=runs, acts_dir=acts)
    return build_report(inputs.runs, inputs.actions, inputs.since, since_source=inputs.since_source,
                        problems=inputs.problems)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs (UPDATE_GOLDEN=1 rewrites it after a deliberate change)"


@pytest.mark.parametrize("complete", [False, True], ids=["open", "complete"])
def test_golden_markdown_and_json(tmp_path, complete):
    report = _report(tmp_path, complete=complete)
    suffix = "complete" if complete else "open"
    _golden(f"report-{suffix}.md", render_markdown(report))
    _golden(f"report-{suffix}.json", to_json(report))


def test_the_open_incident_says_what_is_open(tmp_path):
    r = _report(tmp_path)
    assert r.leak_window["start"] == "2026-11-02T14:05:00Z" and r.leak_window["open"]
    assert r.leak_window["end"] is None and r.leak_window["still_exposed"] == ["analytics/main/etl"]
    c = r.counts
    assert (c["exposed_found"], c["rotated"], c["failed"], c["failed_sinks"], c["still_exposed"]) == (3, 2, 1, 1, 1)
    assert c["skipped"] == 1 and c["verified"] == 2
    assert any("analytics/main/etl: the reset failed" in a for a in r.open_actions)
    assert any("shop/dev/app: delivery to vercel failed" in a for a in r.open_actions)
    assert "API key 7001: revoked, not yet confirmed dead" in r.open_actions
    dev = next(t for t in r.targets if t.target == APP_DEV)
    assert dev.request_ids == ["req-aaa2"] and dev.operations == ["op-103"] and dev.failed_sinks
    assert r.evidence["request_ids"] == ["req-aaa1", "req-aaa2", "req-iii1", "req-kkk1", "req-kkk2", "req-rrr1"]
    times = [e["t"] for e in r.timeline]
    assert times == sorted(times) and times[0] == "2026-11-02T16:02:09Z"


def test_the_complete_incident_closes_the_window_when_the_last_password_was_proven_dead(tmp_path):
    r = _report(tmp_path, complete=True)
    assert not r.leak_window["open"]
    # the ETL target was the last one verified (old password refused) at 16:05:28
    assert r.leak_window["end"] == "2026-11-02T16:05:28Z"
    assert r.counts["still_exposed"] == 0 and r.counts["failed"] == 0
    assert not [a for a in r.open_actions if "etl" in a or "vercel" in a or "API key" in a]
    etl = next(t for t in r.targets if t.target == ETL)
    assert etl.state == "delivered" and etl.old_login == "rejected"


def test_since_scopes_the_journals(tmp_path):
    runs, acts = write_incident(tmp_path)
    from neon_tui.incident.exposure_log import parse_when

    inputs = load(None, since=parse_when("2026-11-02T16:29Z"), runs_dir=runs, acts_dir=acts)
    assert [a.kind for a in inputs.actions] == ["keys", "ipallow", "roles"] and inputs.runs == []
    assert inputs.since_source == "--since"
    named = load(["run-20261102T160500Z-aaaa1111"], runs_dir=runs, acts_dir=acts)
    assert [r.id for r in named.runs] == ["run-20261102T160500Z-aaaa1111"] and named.actions == []


def test_the_guard_refuses_secrets_keys_and_passwords_in_uris():
    with pytest.raises(ReportError):
        guard({"a": [Secret("x")]})
    with pytest.raises(ReportError):
        guard({"password": "x"})
    with pytest.raises(ReportError):
        guard(["the key napi_abcdef0123456789 leaked"])
    with pytest.raises(ReportError):
        guard("postgresql://app:s3cret@ep-x.neon.tech/neondb")
    assert guard({"t": "postgresql://ep-x.neon.tech/neondb", "key_id": 7}) is not None


def test_a_secret_in_a_journal_never_reaches_the_report(tmp_path):
    runs, acts = write_incident(tmp_path)
    path = acts / "roles-20261102T165000Z-r0r0r0r0.jsonl"
    with open(path, "a") as fh:  # written by hand: the journal's own guard would have refused it
        fh.write(json.dumps({"t": "2026-11-02T16:53:00Z", "event": "role_kept", "project_id": "p",
                             "branch_id": "b", "role": "x", "reason": "napi_deadbeefdeadbeef"}) + "\n")
    inputs = load(None, runs_dir=runs, acts_dir=acts)
    with pytest.raises(ReportError):
        build_report(inputs.runs, inputs.actions)


# ---------------------------------------------------------------------------------------------- a real run


async def test_no_secret_in_journals_or_report_after_a_real_rotation(tmp_path, monkeypatch):
    """A real exposure scan, rotation (with verification) and key hand-off against the simulator, journaled
    where the product journals them; then every password and key the simulator ever held is looked for."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / "rotation"))
    from rotation_helpers import ListSink, drain, fast_session, org_of, sim_client

    from neon_tui.incident.actions import create_action_journal
    from neon_tui.incident.exposure_log import journal_exposure, parse_when
    from neon_tui.rotation.exposure import scan
    from neon_tui.rotation.inventory import Inventory
    from neon_tui.rotation.journal import Journal
    from neon_tui.rotation.leak import parse_leak
    from neon_tui.rotation.logins import Login, LoginOutcome
    from neon_tui.rotation.plan import plan_from_selectors
    from neon_tui.simulator.leak import sample_leak

    monkeypatch.setenv("NEON_TUI_STATE_DIR", str(tmp_path / "state"))
    seen: set[str] = set()

    def remember(sim) -> None:
        for p in sim.account.projects.values():
            for b in p.branches.values():
                for role in b.roles.values():
                    if role.password:
                        seen.add(role.password)
                    if getattr(role, "pending", None) is not None:
                        seen.add(role.pending.password)
        seen.update(k.key for k in sim.account.keys.values())

    async with sim_client() as (sim, client):
        remember(sim)
        leak = parse_leak(sample_leak(sim), "the demo's sample leak (.env)")
        inv = Inventory(client)
        report = await scan(client, leak, inventory=inv)
        assert report.exposed
        auth = await client.get_auth()
        journal_exposure(report, source="demo sample", leaked_at=parse_when("2026-11-02T14:05Z"),
                         host=client.base_url, account=auth.account_id, key_kind="personal")
        exposed = next(e for e in report.exposed if sim.inspect.project_by_name(e.project_name).rw_endpoint(e.key[1]))
        org = exposed.org_id or org_of(sim, exposed.project_name)
        plan = await plan_from_selectors(inv, ["/".join(exposed.key)], org)
        assert plan.targets[0].connect_endpoint is not None

        async def login(uri, password=None, *, route=None, timeout=10):
            from urllib.parse import unquote, urlsplit

            raw = uri.reveal() if isinstance(uri, Secret) else uri
            pw = password.reveal() if password is not None else unquote(urlsplit(raw).password or "")
            ok = pw == sim.inspect.password(*exposed.key)  # only the current password logs in
            return LoginOutcome(Login.OK if ok else Login.REJECTED, "scripted")

        from neon_tui.rotation.verify import Verifier
        from neon_tui.rotation.logins import Route

        sink = ListSink("vault")
        session = fast_session(client, plan, sinks=[sink], account=auth.account_id, key_kind="personal",
                               journal_factory=lambda: Journal.create(tmp_path / "state" / "runs"),
                               verify=True, verifier=Verifier(route=Route("127.0.0.1", 5432), login=login),
                               old_passwords=report.old_passwords())
        await drain(session)
        await session.close()
        assert sink.got and session.view(exposed.key).state == "delivered"
        # An API key hand-off, journaled with the format's names.
        created = await client.create_api_key("neon-tui-incident")
        keys = create_action_journal("keys", host=client.base_url, account=auth.account_id, key_kind="personal")
        keys.write("key_created", key_id=created.id, name="neon-tui-incident", scope="personal", org_id=None,
                   project_id=None, request_id=client.history[-1].request_id)
        await client.revoke_api_key(created.id)
        keys.write("key_revoked", key_id=created.id, which="old", request_id=client.history[-1].request_id)
        keys.close()
        remember(sim)
        assert created.key.reveal() in seen

    from neon_tui.report_cli import write_report_file

    inputs = load(None)
    assert inputs.runs and {a.kind for a in inputs.actions} == {"exposure", "keys"}
    r = build_report(inputs.runs, inputs.actions, inputs.since, since_source=inputs.since_source)
    assert r.counts["rotated"] == 1 and r.counts["verified"] == 1
    assert r.header["key_kinds"] == ["personal"] and r.header["operators"]
    run_row = next(t for t in r.targets if t.target == list(exposed.key))
    assert run_row.request_ids and run_row.operations  # the reset's evidence
    write_report_file(r, tmp_path / "out" / "report.md", "markdown")
    write_report_file(r, tmp_path / "out" / "report.json", "json")
    assert oct((tmp_path / "out" / "report.md").stat().st_mode & 0o777) == "0o600"
    files = [p for p in (tmp_path / "state").rglob("*.jsonl")] + list((tmp_path / "out").iterdir())
    assert len(files) >= 5
    assert len(seen) > 10
    for f in files:
        text = f.read_text()
        for secret in seen:
            assert secret not in text, f"a secret the simulator knows is in {f.name}"
        assert "napi_" not in text
