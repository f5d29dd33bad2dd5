"""`neon-tui scan` and `neon-tui rotate --deliver env:DIR`, real processes against a simulator on loopback."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from neon_tui.rotation.journal import read_journal


def _ids(sim, project: str, branch: str) -> tuple[str, str, str]:
    p = sim.inspect.project_by_name(project)
    b = sim.inspect.branch_by_name(p.id, branch)
    ep = next(e for e in p.endpoints.values() if e.branch_id == b.id and e.type == "read_write")
    return p.id, b.id, ep.id


def _uri(sim, project: str, branch: str, role: str, *, pooled: bool = False, db: str = "neondb") -> str:
    pid, bid, eid = _ids(sim, project, branch)
    pw = sim.inspect.password(pid, bid, role)
    assert pw
    host = f"{eid}{'-pooler' if pooled else ''}.c-2.us-east-2.aws.neon.tech"
    return f"postgresql://{quote(role, safe='')}:{quote(pw, safe='')}@{host}/{db}?sslmode=require"


def _tree(tmp_path, sim):
    app = tmp_path / "app"
    (app / "svc").mkdir(parents=True)
    (app / "node_modules" / "x").mkdir(parents=True)
    staging = _uri(sim, "acme-prod", "staging", "app", pooled=True)
    staging_direct = _uri(sim, "acme-prod", "staging", "app", db="analytics")
    (app / ".env").write_bytes(
        f"# settings\r\nexport DATABASE_URL='{staging}'  # pooled\r\nDIRECT_URL=\"{staging_direct}\"\r\n"
        f"UNKNOWN_URL=postgresql://app:x@ep-nobody-home-000000.aws.neon.tech/db\r\n".encode())
    (app / "svc" / "prod.env").write_text(f"DATABASE_URL={staging}\nOTHER=1\n")
    (app / "node_modules" / "x" / ".env").write_text(f"DATABASE_URL={staging}\n")
    return app, [sim.inspect.password(*_ids(sim, "acme-prod", "staging")[:2], "app")]


def test_scan_reports_where_and_whose_without_a_value(served, tmp_path):
    app, secrets = _tree(tmp_path, served.sim)
    out = served.run("scan", str(app))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"{app}/.env:2 DATABASE_URL\tacme-prod/staging/app\tneondb\tpooled" in lines
    assert f"{app}/.env:3 DIRECT_URL\tacme-prod/staging/app\tanalytics\tdirect" in lines
    assert f"{app}/svc/prod.env:1 DATABASE_URL\tacme-prod/staging/app\tneondb\tpooled" in lines
    assert any(line.startswith(f"{app}/.env:4 UNKNOWN_URL\tunmatched: endpoint unknown") for line in lines)
    assert len(lines) == 4  # node_modules skipped
    js = served.run("scan", "--json", str(app))
    objs = [json.loads(x) for x in js.stdout.splitlines()]
    assert objs[-1] == {"type": "summary", "files": 2, "values": 4, "matched": 3, "unmatched": 1}
    for text in (out.stdout, out.stderr, js.stdout, js.stderr):
        assert all(quote(s, safe="") not in text and s not in text for s in secrets)


@pytest.mark.slow
def test_rotate_patches_env_files_and_journals_no_password(served, tmp_path):
    sim = served.sim
    app, (old,) = _tree(tmp_path, sim)
    before = {p: p.read_bytes() for p in [app / ".env", app / "svc" / "prod.env", app / "node_modules/x/.env"]}
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--no-verify",
                     "--deliver", f"env:{app}")
    assert out.returncode == 0, out.stderr
    pid, bid, _ = _ids(sim, "acme-prod", "staging")
    new = sim.inspect.password(pid, bid, "app")
    assert new != old
    for path, data in before.items():
        after = path.read_bytes()
        if "node_modules" in str(path):
            assert after == data
            continue
        assert after != data
        assert after == data.replace(quote(old, safe="").encode(), quote(new, safe="").encode())
    assert b"\r\n" in (app / ".env").read_bytes()
    (journal,) = served.journals()
    text = journal.read_text()
    for pw in (old, new):
        assert pw not in text and quote(pw, safe="") not in text
        assert pw not in out.stdout + out.stderr
    state = read_journal(journal)
    t = state.targets[(pid, bid, "app")]
    assert t.state == "delivered"
    assert f"env:{app}" in t.delivered and "DATABASE_URL" in t.delivered[f"env:{app}"]
