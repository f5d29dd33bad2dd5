"""`neon-tui rotate --deliver rules|sink:NAME`: command sinks from config.toml, run for real against fake `gh`
and `vercel` on PATH (they record argv, environment and stdin), with the simulator served on loopback."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest


FAKE = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    data = sys.stdin.read()
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({{"tool": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
                            "env": dict(os.environ), "stdin": data}}) + "\\n")
    if os.environ.get("FAKE_FAIL") == os.path.basename(sys.argv[0]) and "env" in sys.argv[1:2]:
        sys.stderr.write("Error: refused value " + data + "\\n")
        sys.exit(1)
""")

CONFIG = """\
[sinks.app-repo]
preset = "gh-secret"
repo = "acme/app"

[sinks.infra-repo]
preset = "gh-secret"
repo = "acme/infra"
env = "production"

[sinks.vercel-prod]
preset = "vercel-env"
environment = "production"
value = "pooled"

[[rules]]
select = "acme-prod/main/app"
sinks = ["app-repo", "infra-repo", "vercel-prod"]
var = "DATABASE_URL"
database = "neondb"

[[rules]]
select = "acme-prod/staging/*"
sinks = ["app-repo"]
var = "STAGING_DATABASE_URL"
"""


def setup(served, tmp_path: Path, config: str = CONFIG) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gh", "vercel"):
        p = bin_dir / name
        p.write_text(FAKE.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    cfg = tmp_path / "config" / "neon-tui" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(config)
    log = tmp_path / "calls.jsonl"
    served.env.update(PATH=f"{bin_dir}{os.pathsep}{served.env['PATH']}", FAKE_LOG=str(log))
    return log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def resets(sim):
    return [r for r in sim.inspect.requests if r.route and r.route.endswith("reset_password") and r.method == "POST"]


@pytest.mark.slow
def test_rules_deliver_each_target_to_its_sinks(served, tmp_path):
    log = setup(served, tmp_path)
    out = served.run("rotate", "acme-prod/main/app", "acme-prod/staging/app", "--apply", "--yes",
                     "--deliver", "rules", "--deliver", "stdout")
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    value = {(r[0], r[1], r[2]): r[3] for r in rows}
    main_direct = value[("acme-prod/main/app", "neondb", "direct")]
    main_pooled = value[("acme-prod/main/app", "neondb", "pooled")]
    staging_direct = next(v for (label, db, kind), v in value.items()
                          if label == "acme-prod/staging/app" and kind == "direct")
    got = [(c["tool"], c["argv"], c["stdin"]) for c in calls(log) if c["argv"][:1] != ["auth"]
           and c["argv"][:1] != ["whoami"]]
    assert sorted(got) == sorted([
        ("gh", ["secret", "set", "DATABASE_URL", "--repo", "acme/app"], main_direct),
        ("gh", ["secret", "set", "DATABASE_URL", "--repo", "acme/infra", "--env", "production"], main_direct),
        ("vercel", ["env", "add", "DATABASE_URL", "production", "--force"], main_pooled),
        ("gh", ["secret", "set", "STAGING_DATABASE_URL", "--repo", "acme/app"], staging_direct),
    ])
    # preflight ran each tool's check before any reset
    assert ["auth", "status"] in [c["argv"] for c in calls(log)] and ["whoami"] in [c["argv"] for c in calls(log)]
    secrets = [v for v in value.values()] + [v.split(":")[2].split("@")[0] for v in value.values()]
    for c in calls(log):
        assert "NEON_API_KEY" not in c["env"] and not any(k.startswith("NEON_") for k in c["env"])
        assert not any(s in a for s in secrets for a in c["argv"])
        assert not any(s in v for s in secrets for v in c["env"].values())
    (journal,) = served.journals()
    text = journal.read_text()
    assert not any(s in text for s in secrets)
    assert "DATABASE_URL" in text and "app-repo" in text  # the receipt: where it went, by name
    assert "delivered" in out.stderr


def test_a_target_without_a_rule_stops_the_run_before_any_reset(served, tmp_path):
    log = setup(served, tmp_path)
    out = served.run("rotate", "acme-prod/main/app", "acme-prod/dev/alice/app", "--apply", "--yes",
                     "--deliver", "rules")
    assert out.returncode == 2, out.stderr
    assert "acme-prod/dev/alice/app: no [[rules]] entry" in out.stderr and "nothing was changed" in out.stderr
    assert not resets(served.sim) and calls(log) == []


@pytest.mark.slow
def test_a_failing_sink_halts_with_a_redacted_reason(served, tmp_path):
    log = setup(served, tmp_path)
    served.env["FAKE_FAIL"] = "vercel"
    out = served.run("rotate", "acme-prod/main/app", "--apply", "--yes", "--deliver", "rules")
    assert out.returncode == 1
    assert "vercel-prod" in out.stderr and "exited 1" in out.stderr and "Error: refused value ********" in out.stderr
    tries = [c for c in calls(log) if c["tool"] == "vercel" and c["argv"][0] == "env"]
    assert tries and len({c["stdin"] for c in tries}) == 1  # the session retried it with the same value
    vercel = tries[0]
    assert vercel["stdin"] and vercel["stdin"] not in out.stderr
    # the retries ran only the sink that failed: each repository got the password once
    assert len([c for c in calls(log) if c["argv"][0] == "secret"]) == 2
    (journal,) = served.journals()
    assert vercel["stdin"] not in journal.read_text()


@pytest.mark.slow
def test_deliver_one_named_sink_and_bad_config(served, tmp_path):
    log = setup(served, tmp_path, CONFIG.replace('repo = "acme/app"', 'repo = "acme/app"\nvar = "DB_URL"'))
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", "sink:app-repo")
    assert out.returncode == 0, out.stderr
    (c,) = [c for c in calls(log) if c["argv"][0] == "secret"]
    assert c["argv"] == ["secret", "set", "DB_URL", "--repo", "acme/app"] and c["stdin"].startswith("postgresql://")
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", "sink:nope")
    assert out.returncode == 2 and "no [sinks.nope]" in out.stderr
    cfg = tmp_path / "config" / "neon-tui" / "config.toml"
    cfg.write_text('[sinks.x]\npreset = "heroku"\n')
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", "rules")
    assert out.returncode == 2 and "sinks.x.preset 'heroku' is unknown" in out.stderr
