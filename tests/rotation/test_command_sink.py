"""Command sinks run real child processes: a fake CLI on PATH records argv, environment and stdin."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from neon_tui.config import load_settings
from neon_tui.neon.models import Database, Endpoint
from neon_tui.neon.secret import Secret
from neon_tui.rotation.command_sink import (
    CommandSink,
    RulesSink,
    SinkConfigError,
    parse_sink_config,
    preset_argv,
    redact,
)
from neon_tui.rotation.events import Connection, RotationResult
from neon_tui.rotation.plan import Target
from neon_tui.rotation.sinks import SinkError

PW = "npg_S3cretPassw0rd"
DIRECT = f"postgresql://app:{PW}@ep-1.neon.test/neondb?sslmode=require"
POOLED = f"postgresql://app:{PW}@ep-1-pooler.neon.test/neondb?sslmode=require"

FAKE = textwrap.dedent("""\
    #!{python}
    import json, os, sys, time
    name = os.path.basename(sys.argv[0])
    data = sys.stdin.read()
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({{"tool": name, "argv": sys.argv[1:], "env": dict(os.environ), "stdin": data}}) + "\\n")
    mode = os.environ.get("FAKE_MODE", "")
    if mode == "sleep":
        with open(os.environ["FAKE_LOG"] + ".pid", "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
    if mode == "fail":
        sys.stderr.write("error: could not set " + data + "\\n")
        sys.exit(3)
""")


def make_fake(bin_dir: Path, *names: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        p = bin_dir / name
        p.write_text(FAKE.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def fake(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    make_fake(bin_dir, "gh", "vercel", "fly", "doppler", "my-tool")
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("NEON_API_KEY", "neon-api-key-must-not-leak")
    monkeypatch.setenv("HOLDS_IT", f"x{PW}x")
    return log


def target(project="acme-prod", branch="main", role="app", endpoint=True) -> Target:
    eps = (Endpoint("ep-1", "p-1", "br-1", "ep-1.neon.test", "read_write", "idle", True, False, None, None),) \
        if endpoint else ()
    return Target("p-1", project, "br-1", branch, role, None, True, False, eps,
                  (Database(1, "br-1", "neondb", role, None, None),))


def result(t: Target | None = None) -> RotationResult:
    t = t or target()
    conns = (Connection("neondb", Secret(DIRECT), Secret(POOLED), "ep-1.neon.test"),) if t.endpoints else ()
    return RotationResult(t, Secret(PW), conns)


def run(coro):
    return asyncio.run(coro)


def assert_only_stdin(rec: dict) -> None:
    assert all(PW not in a for a in rec["argv"])
    assert all(PW not in v for v in rec["env"].values())
    assert "NEON_API_KEY" not in rec["env"] and "HOLDS_IT" not in rec["env"]
    assert not any(k.startswith("NEON_") for k in rec["env"])


# ------------------------------------------------------------------ running a command


def test_secret_goes_to_stdin_only(fake):
    sink = CommandSink("custom", ["my-tool", "put", "{var}", "--project", "{project}", "--role", "{role}"],
                       "pooled", var="DB_URL")
    receipt = run(sink.deliver(result()))
    (rec,) = records(fake)
    assert rec["argv"] == ["put", "DB_URL", "--project", "acme-prod", "--role", "app"]
    assert rec["stdin"] == POOLED
    assert_only_stdin(rec)
    assert PW not in receipt.detail and "DB_URL" in receipt.detail and receipt.sink == "custom"
    # safe to repeat: the same password is not sent twice
    run(sink.deliver(result()))
    assert len(records(fake)) == 1


def test_nonzero_exit_is_a_sink_error_with_redacted_output(fake, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "fail")
    sink = CommandSink("custom", ["my-tool", "{var}"], "direct", var="DB_URL")
    with pytest.raises(SinkError) as e:
        run(sink.deliver(result()))
    msg = str(e.value)
    assert "exited 3" in msg and "********" in msg and "could not set" in msg
    assert PW not in msg


def test_timeout_kills_the_child(fake, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "sleep")
    sink = CommandSink("slow", ["my-tool", "{var}"], "direct", var="DB_URL", timeout=1)
    started = time.monotonic()
    with pytest.raises(SinkError, match="timed out after 1s and was killed"):
        run(sink.deliver(result()))
    assert time.monotonic() - started < 10
    pid = int(Path(str(fake) + ".pid").read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_preflight_needs_the_executable_and_the_check(fake, monkeypatch):
    assert "custom" in run(CommandSink("custom", ["my-tool", "{var}"], var="X", check=["my-tool", "ok"]).preflight())
    with pytest.raises(SinkError, match="not on PATH"):
        run(CommandSink("nope", ["no-such-tool-xyz", "{var}"], var="X").preflight())
    monkeypatch.setenv("FAKE_MODE", "fail")
    with pytest.raises(SinkError, match="check `my-tool whoami` exited 3"):
        run(CommandSink("custom", ["my-tool", "{var}"], var="X", check=["my-tool", "whoami"]).preflight())


def test_fly_gets_an_env_line(fake):
    cfg = parse_sink_config({"sinks": {"fly": {"preset": "fly-secrets", "app": "acme-api", "var": "DATABASE_URL",
                                               "stage": True}}})
    run(cfg.sinks["fly"].deliver(result()))
    (rec,) = records(fake)
    assert rec["tool"] == "fly" and rec["argv"] == ["secrets", "import", "-a", "acme-api", "--stage"]
    assert rec["stdin"] == f'DATABASE_URL="""{DIRECT}"""\n'
    assert_only_stdin(rec)


def test_redact_masks_every_form():
    from neon_tui.rotation.command_sink import secrets_of

    text = redact(f"url {DIRECT} pw {PW}\n\x1b[31m", secrets_of(result()))
    assert PW not in text and text.count("********") == 2 and "\x1b" not in text


# ------------------------------------------------------------------ presets and config


def test_presets_build_the_documented_argv():
    assert preset_argv("gh-secret", {"repo": "acme/app", "env": "prod"}) == \
        ["gh", "secret", "set", "{var}", "--repo", "acme/app", "--env", "prod"]
    assert preset_argv("vercel-env", {"environment": "production"}) == \
        ["vercel", "env", "add", "{var}", "production", "--force"]
    assert preset_argv("vercel-env", {"environment": "preview", "git_branch": "dev", "force": False}) == \
        ["vercel", "env", "add", "{var}", "preview", "dev"]
    assert preset_argv("fly-secrets", {"app": "a"}) == ["fly", "secrets", "import", "-a", "a"]
    assert preset_argv("doppler", {"project": "p", "config": "prd"}) == \
        ["doppler", "secrets", "set", "{var}", "--silent", "--project", "p", "--config", "prd"]
    cfg = parse_sink_config({"sinks": {"g": {"preset": "gh-secret", "repo": "acme/app", "var": "X"}}})
    assert cfg.sinks["g"].check == ["gh", "auth", "status"] and cfg.sinks["g"].stdin == "value"


@pytest.mark.parametrize("data, message", [
    ({"sinks": {"a": {"preset": "heroku"}}}, "sinks.a.preset 'heroku' is unknown"),
    ({"sinks": {"a": {"preset": "gh-secret", "var": "X"}}}, "sinks.a.repo is missing"),
    ({"sinks": {"a": {"preset": "gh-secret", "repo": "o/r", "colour": "x"}}}, "sinks.a.colour is not a setting"),
    ({"sinks": {"a": {"argv": ["t", f"--url={DIRECT}"]}}}, "sinks.a: argv[1] looks like a secret"),
    ({"sinks": {"a": {"argv": ["t", PW]}}}, "looks like a secret"),
    ({"sinks": {"a": {"argv": ["gh", "secret", "set", "X", "--body", "{var}"]}}}, "argv[4] --body"),
    ({"sinks": {"a": {"argv": ["t", "{password}"]}}}, "placeholder {password}"),
    ({"sinks": {"a": {"argv": "t {var}"}}}, "sinks.a.argv must be a list"),
    ({"sinks": {"a": {"argv": ["t"], "value": "both"}}}, "sinks.a.value: 'both'"),
    ({"sinks": {"a": {"argv": ["t"], "timeout": 0}}}, "sinks.a.timeout"),
    ({"sinks": {"a": {}}}, "give a preset"),
    ({"sinks": {"a": {"argv": ["t"], "var": "X"}}, "rules": [{"sinks": ["a"]}]}, "rules[0].select is missing"),
    ({"sinks": {"a": {"argv": ["t"], "var": "X"}}, "rules": [{"select": "p//r", "sinks": ["a"]}]},
     "rules[0].select"),
    ({"sinks": {"a": {"argv": ["t"], "var": "X"}}, "rules": [{"select": "p", "sinks": ["b"]}]},
     "rules[0].sinks: no [sinks.b]"),
    ({"sinks": {"a": {"argv": ["t"]}}, "rules": [{"select": "p", "sinks": ["a"]}]}, "rules[0]: no var for sink a"),
    ({"sinks": {"a": {"argv": ["t"], "var": "1X"}}}, "sinks.a.var '1X'"),
])
def test_config_errors_name_the_key(data, message):
    with pytest.raises(SinkConfigError) as e:
        parse_sink_config(data)
    assert message in str(e.value)
    assert PW not in str(e.value)


def test_settings_keep_working_with_a_bad_sink_table(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[clipboard]\nmode = "osc52"\n[sinks.a]\npreset = "heroku"\n')
    settings, problem = load_settings(path, env={})
    assert settings.clipboard_mode == "osc52" and settings.sink_config is None
    assert "sinks.a.preset" in settings.sink_error and "sinks.a.preset" in problem


def test_settings_parse_sinks_and_rules(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent("""\
        [sinks.app-repo]
        preset = "gh-secret"
        repo = "acme/app"
        [sinks.vercel-prod]
        preset = "vercel-env"
        environment = "production"
        [[rules]]
        select = "acme-prod/main/app"
        sinks = ["app-repo", "vercel-prod"]
        var = "DATABASE_URL"
        database = "neondb"
        """))
    settings, problem = load_settings(path, env={})
    assert problem is None and settings.sink_error is None
    assert set(settings.sink_config.sinks) == {"app-repo", "vercel-prod"}
    assert settings.sink_config.rules[0].sinks == ("app-repo", "vercel-prod")


# ------------------------------------------------------------------ rules


def two_sinks_config():
    return parse_sink_config({
        "sinks": {"app-repo": {"preset": "gh-secret", "repo": "acme/app"},
                  "infra-repo": {"preset": "gh-secret", "repo": "acme/infra", "env": "prod"},
                  "vercel-prod": {"preset": "vercel-env", "environment": "production", "value": "pooled"}},
        "rules": [{"select": "acme-prod/main/app", "sinks": ["app-repo", "infra-repo", "vercel-prod"],
                   "var": "DATABASE_URL"},
                  {"select": "acme-prod/*/ci_*", "sinks": ["app-repo"], "var": "CI_DATABASE_URL"}],
    })


def test_rules_send_one_target_to_several_sinks(fake):
    sink = RulesSink(two_sinks_config())
    assert sink.problems([target()]) == []
    receipt = run(sink.deliver(result()))
    recs = records(fake)
    assert [(r["tool"], r["argv"]) for r in recs] == [
        ("gh", ["secret", "set", "DATABASE_URL", "--repo", "acme/app"]),
        ("gh", ["secret", "set", "DATABASE_URL", "--repo", "acme/infra", "--env", "prod"]),
        ("vercel", ["env", "add", "DATABASE_URL", "production", "--force"]),
    ]
    assert [r["stdin"] for r in recs] == [DIRECT, DIRECT, POOLED]
    for r in recs:
        assert_only_stdin(r)
    assert PW not in receipt.detail
    assert "app-repo" in receipt.detail and "infra-repo" in receipt.detail and "vercel-prod" in receipt.detail


def test_a_target_without_a_rule_is_refused(fake):
    sink = RulesSink(two_sinks_config())
    other = target(branch="staging")
    assert sink.problems([other]) == ["acme-prod/staging/app: no [[rules]] entry in config.toml matches it"]
    with pytest.raises(SinkError, match="no \\[\\[rules\\]\\] entry"):
        run(sink.deliver(result(other)))
    assert records(fake) == []
    # a rule by glob, with its own variable
    ci = target(role="ci_runner")
    assert sink.problems([ci]) == []
    run(sink.deliver(result(ci)))
    assert records(fake)[0]["argv"][2] == "CI_DATABASE_URL"


def test_no_compute_means_no_connection_string(fake):
    sink = RulesSink(two_sinks_config())
    problems = sink.problems([target(endpoint=False)])
    assert problems and all("no compute yet" in p for p in problems)


def test_a_partial_failure_says_which_took_it(fake, tmp_path, monkeypatch):
    cfg = two_sinks_config()
    (tmp_path / "bin" / "vercel").write_text("#!/bin/sh\necho \"bad $(cat)\" >&2\nexit 1\n")
    sink = RulesSink(cfg)
    with pytest.raises(SinkError) as e:
        run(sink.deliver(result()))
    msg = str(e.value)
    assert "vercel-prod" in msg and "exited 1" in msg and "delivered: app-repo" in msg
    assert PW not in msg and "********" in msg
    # the retry runs only the sink that failed
    make_fake(tmp_path / "bin", "vercel")
    run(sink.deliver(result()))
    assert [r["tool"] for r in records(fake)] == ["gh", "gh", "vercel"]
