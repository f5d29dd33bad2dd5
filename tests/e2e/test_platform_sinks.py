"""GitHub Actions secrets and Vercel environment variables as sinks, against fakes that behave like the services
(the GitHub fake decrypts with a real private key), and through `neon-tui rotate --deliver`."""

from __future__ import annotations

import json

import pytest
from platform_fakes import GitHubFake, VercelFake, serve_app

from neon_tui.neon.secret import Secret
from neon_tui.rotation.events import Connection, RotationResult
from neon_tui.rotation.platform_sinks import GitHubSecretSink, VercelEnvSink, check_base_url, parse_platform
from neon_tui.rotation.plan import Target
from neon_tui.rotation.sinks import SinkError, parse_deliver

HOST = "ep-x-1.eu.neon.tech"


def result(pw: str = "pw-1", *, role: str = "app", endpoint: bool = True) -> RotationResult:
    t = Target(project_id="proj-1", project_name="acme-prod", branch_id="br-1", branch_name="staging",
               role_name=role, role_updated_at=None, store_passwords=True, protected_branch=False)
    conns = (Connection("neondb", Secret(f"postgresql://{role}:{pw}@{HOST}/neondb?sslmode=require"),
                        Secret(f"postgresql://{role}:{pw}@ep-x-1-pooler.eu.neon.tech/neondb?sslmode=require"), HOST),
             Connection("other", Secret(f"postgresql://{role}:{pw}@{HOST}/other"), None, HOST))
    return RotationResult(target=t, password=Secret(pw), connections=conns if endpoint else ())


@pytest.fixture
def github():
    fake = GitHubFake()
    with serve_app(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture
def vercel():
    fake = VercelFake()
    with serve_app(fake.app) as url:
        fake.url = url
        yield fake


def gh_sink(fake, scope="repo", **kw) -> GitHubSecretSink:
    args = {"repo": ("acme", "app"), "env": ("acme", "app", "production"), "org": ("acme",)}[scope]
    kw.setdefault("token", Secret(fake.token))
    return GitHubSecretSink(scope, *args, base_url=fake.url, **kw)


def v_sink(fake, **kw) -> VercelEnvSink:
    kw.setdefault("token", Secret(fake.token))
    return VercelEnvSink("web", base_url=fake.url, **kw)


# ------------------------------------------------------------------ GitHub


async def test_github_repo_secret_round_trip_create_then_update(github):
    sink = gh_sink(github)
    assert "DATABASE_URL of acme/app" in await sink.preflight()
    r1 = await sink.deliver(result("pw-1"))
    assert github.value("repos/acme/app", "DATABASE_URL") == result("pw-1").connections[0].direct.reveal()
    assert "created" in r1.detail and "pw-1" not in r1.detail and r1.detail.startswith("github acme/app DATABASE_URL")
    # the same target, a new password (a second run): 204 updated, the fake decrypts the new value
    r2 = await gh_sink(github).deliver(result("pw-2"))
    assert "updated" in r2.detail
    assert github.value("repos/acme/app", "DATABASE_URL").startswith("postgresql://app:pw-2@")
    puts = [s for m, p, s in github.requests if m == "PUT"]
    assert puts == [201, 204]


async def test_github_repeat_is_idempotent(github):
    sink = gh_sink(github)
    a = await sink.deliver(result())
    b = await sink.deliver(result())
    assert a == b
    assert [m for m, _, _ in github.requests].count("PUT") == 1


async def test_github_one_secret_takes_one_target(github):
    sink = gh_sink(github)
    await sink.deliver(result(role="app"))
    with pytest.raises(SinkError, match="one value"):
        await sink.deliver(result(role="other"))
    assert github.value("repos/acme/app", "DATABASE_URL").startswith("postgresql://app:")


async def test_github_environment_and_org_scopes(github):
    await gh_sink(github, "env", name="DB", value="pooled").deliver(result("pw-e"))
    assert github.value("repos/acme/app/environments/production", "DB").startswith(
        "postgresql://app:pw-e@ep-x-1-pooler")
    assert github.value("repos/acme/app", "DB") is None
    rec = await gh_sink(github, "org", value="password", visibility="all").deliver(result("pw-o"))
    assert github.value("orgs/acme", "DATABASE_URL") == "pw-o"
    assert github.secrets["orgs/acme"]["DATABASE_URL"].visibility == "all"
    assert "organization acme" in rec.detail and "pw-o" not in rec.detail


async def test_github_database_choice_and_no_endpoint(github):
    await gh_sink(github, database="other").deliver(result("pw-d"))
    assert github.value("repos/acme/app", "DATABASE_URL").endswith("/other")
    with pytest.raises(SinkError, match="no endpoint yet"):
        await gh_sink(github).deliver(result(endpoint=False))
    await gh_sink(github, value="password").deliver(result("pw-bare", endpoint=False))
    assert github.value("repos/acme/app", "DATABASE_URL") == "pw-bare"


@pytest.mark.parametrize("scope,token,match", [
    ("repo", "wrong-token", "401"),
    ("repo-missing", None, "not found"),
    ("env-missing", None, "not found"),
])
async def test_github_preflight_fails_clearly(github, scope, token, match):
    if scope == "repo-missing":
        sink = GitHubSecretSink("repo", "acme", "nope", base_url=github.url, token=Secret(github.token))
    elif scope == "env-missing":
        sink = GitHubSecretSink("env", "acme", "app", "staging", base_url=github.url, token=Secret(github.token))
    else:
        sink = gh_sink(github, token=Secret(token))
    with pytest.raises(SinkError, match=match) as e:
        await sink.preflight()
    assert github.token not in str(e.value) and "wrong-token" not in str(e.value)
    assert not github.secrets


async def test_github_wrong_key_id_is_refused_with_its_message(github, monkeypatch):
    sink = gh_sink(github)
    real = sink._public_key

    async def stale(client):
        _, key = await real(client)
        return "0000", key
    monkeypatch.setattr(sink, "_public_key", stale)
    with pytest.raises(SinkError, match="422") as e:
        await sink.deliver(result("pw-k"))
    assert "pw-k" not in str(e.value)
    assert not github.secrets.get("repos/acme/app")


async def test_github_no_token_anywhere_says_where_to_put_one(github, monkeypatch):
    from neon_tui import secrets

    monkeypatch.setattr(secrets, "load_token", lambda name, allow=(): None)
    sink = GitHubSecretSink("repo", "acme", "app", base_url=github.url, token=None)
    with pytest.raises(SinkError, match="GITHUB_TOKEN or GH_TOKEN"):
        await sink.preflight()
    monkeypatch.setattr(secrets, "load_token", lambda name, allow=(): Secret(github.token) if name == "GITHUB_TOKEN"
                        else None)
    assert await sink.preflight()


def test_base_urls_plain_http_only_to_loopback():
    assert check_base_url("http://127.0.0.1:5/", "X") == "http://127.0.0.1:5"
    assert check_base_url("https://ghe.example.com/api/v3", "X") == "https://ghe.example.com/api/v3"
    for bad in ("http://api.github.com", "https://u:p@api.github.com", "ftp://x", "https://a b"):
        with pytest.raises(ValueError):
            check_base_url(bad, "X")


def test_deliver_specs():
    env = {"GITHUB_TOKEN": "t", "VERCEL_TOKEN": "v"}
    s = parse_platform("github:acme/app", environ=env)
    assert (s.scope, s.owner, s.repo, s.secret_name, s.value) == ("repo", "acme", "app", "DATABASE_URL", "direct")
    s = parse_platform("github:acme/app@production:DB?value=pooled&database=x", environ=env)
    assert (s.scope, s.environment, s.secret_name, s.value, s.database) == ("env", "production", "DB", "pooled", "x")
    s = parse_platform("github-org:acme:PG?visibility=all", environ=env)
    assert (s.scope, s.owner, s.visibility, s.name) == ("org", "acme", "all", "github-org:acme:PG")
    s = parse_platform("vercel:web:PG_URL?targets=production,development&redeploy=1&team=team_1", environ=env)
    assert (s.project, s.key, s.redeploy, s.team_id) == ("web", "PG_URL", True, "team_1")
    assert s.groups() == [("sensitive", ("production",)), ("encrypted", ("development",))]
    assert parse_platform("stdout", environ=env) is None
    for bad in ("github:acme", "github:acme/app@", "github:acme/app?nope=1", "github-org:a/b", "vercel:",
                "github:acme/app:GITHUB_X", "vercel:web?targets=staging", "github:acme/app?value=uri"):
        with pytest.raises(ValueError):
            parse_platform(bad, environ=env)
    assert parse_deliver("stdout").name == "stdout"  # the old specs are untouched
    with pytest.raises(ValueError, match="github:OWNER/REPO"):
        parse_deliver("gitlab:x/y")


# ------------------------------------------------------------------ Vercel


async def test_vercel_upsert_sensitive_then_update(vercel):
    sink = v_sink(vercel)
    assert "project web" in await sink.preflight()
    rec = await sink.deliver(result("pw-1"))
    direct = result("pw-1").connections[0].direct.reveal()
    assert vercel.values("DATABASE_URL") == {"production": ("sensitive", direct), "preview": ("sensitive", direct)}
    assert "pw-1" not in rec.detail and "production+preview sensitive updated" in rec.detail
    await v_sink(vercel).deliver(result("pw-2"))
    assert len(vercel.envs) == 1 and vercel.envs[0]["value"].startswith("postgresql://app:pw-2@")
    assert not vercel.redeploys


async def test_vercel_development_gets_encrypted_because_sensitive_is_refused_there(vercel):
    # the fake refuses what the real API refuses
    raw = v_sink(vercel, targets=["development"])
    raw.groups = lambda: [("sensitive", ("development",))]
    with pytest.raises(SinkError, match="development") as e:
        await raw.deliver(result("pw-x"))
    assert "pw-x" not in str(e.value)
    await v_sink(vercel, targets=["production", "preview", "development"]).deliver(result("pw-3"))
    vals = vercel.values("DATABASE_URL")
    assert {t: ty for t, (ty, _) in vals.items()} == {"production": "sensitive", "preview": "sensitive",
                                                       "development": "encrypted"}


async def test_vercel_redeploy_opt_in_once(vercel):
    sink = v_sink(vercel, redeploy=True)
    rec = await sink.deliver(result("pw-r"))
    again = await sink.deliver(result("pw-r"))
    assert rec == again
    assert vercel.redeploys == [{"name": "web", "deploymentId": "dpl_old1", "target": "production"}]
    assert "redeploy dpl_new" in rec.detail


async def test_vercel_bad_token_and_unknown_project(vercel):
    with pytest.raises(SinkError, match="403") as e:
        await v_sink(vercel, token=Secret("nope-token")).preflight()
    assert "nope-token" not in str(e.value)
    with pytest.raises(SinkError, match="not found"):
        await VercelEnvSink("ghost", base_url=vercel.url, token=Secret(vercel.token)).preflight()
    assert not vercel.envs


# ------------------------------------------------------------------ the CLI, end to end


@pytest.mark.slow
def test_rotate_delivers_to_github_and_vercel(served, github, vercel):
    sim = served.sim
    served.env.update(GITHUB_API_URL=github.url, GITHUB_TOKEN=github.token, VERCEL_API_URL=vercel.url,
                      VERCEL_TOKEN=vercel.token)
    served.env.pop("GH_TOKEN", None)
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--json",
                     "--deliver", "github:acme/app", "--deliver", "github:acme/app@production:DB_POOLED?value=pooled",
                     "--deliver", "vercel:web?redeploy=1")
    assert out.returncode == 0, out.stderr
    pid = sim.inspect.project_by_name("acme-prod").id
    branch = sim.inspect.branch_by_name(pid, "staging").id
    password = sim.inspect.password(pid, branch, "app")
    stored = github.value("repos/acme/app", "DATABASE_URL")
    assert f":{password}@" in stored and "-pooler" not in stored
    assert f":{password}@" in github.value("repos/acme/app/environments/production", "DB_POOLED")
    assert vercel.values("DATABASE_URL")["production"] == ("sensitive", stored)
    assert vercel.redeploys
    for text in (out.stdout, out.stderr, *(p.read_text() for p in served.journals())):
        assert password not in text and github.token not in text and vercel.token not in text
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert any("github" in json.dumps(r) for r in rows)


def test_rotate_with_a_bad_github_token_resets_nothing(served, github):
    served.env.update(GITHUB_API_URL=github.url, GITHUB_TOKEN="bad-token")
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", "github:acme/app")
    assert out.returncode != 0
    assert "401" in out.stderr and "bad-token" not in out.stderr + out.stdout
    assert not [r for r in served.sim.inspect.requests if r.method != "GET"]
    assert not github.secrets


def test_one_secret_refuses_a_run_with_several_targets_before_any_reset(served, github):
    served.env.update(GITHUB_API_URL=github.url, GITHUB_TOKEN=github.token)
    out = served.run("rotate", "acme-prod/*/app", "--apply", "--yes", "--deliver", "github:acme/app")
    assert out.returncode == 2, out.stderr
    assert "holds one value" in out.stderr
    assert not [r for r in served.sim.inspect.requests if r.method != "GET"]
    assert not github.requests
