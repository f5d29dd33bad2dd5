"""`.env` files patched in place: only the password's bytes change, atomically, and never a foreign edit."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from urllib.parse import quote

import pytest

from neon_tui.neon.models import Endpoint
from neon_tui.neon.secret import Secret
from neon_tui.rotation.envfiles import EnvFileSink, find_env_files, neon_values, parse_neon_uri
from neon_tui.rotation.events import RotationResult
from neon_tui.rotation.plan import Target
from neon_tui.rotation.sinks import SinkError, parse_deliver

OLD_A = "npg_oldA'pw#1"  # a quote and a '#': percent-encoded in every URI
OLD_B = "npg_oldBpw2"
HOST_A = "ep-cool-fog-a1b2c3.us-east-2.aws.neon.tech"
HOST_A_POOL = "ep-cool-fog-a1b2c3-pooler.us-east-2.aws.neon.tech"
HOST_B = "ep-old-sun-d4e5f6.eu-central-1.aws.neon.tech"


def uri(pw: str, host: str = HOST_A, user: str = "app", db: str = "neondb",
        query: str = "sslmode=require&channel_binding=require") -> str:
    return f"postgresql://{user}:{quote(pw, safe='')}@{host}/{db}" + (f"?{query}" if query else "")


def endpoint(eid: str, project: str, branch: str) -> Endpoint:
    return Endpoint(eid, project, branch, f"{eid}.neon.tech", "read_write", "idle", True, False, None, None)


TA = Target("proj-a", "acme", "br-a", "main", "app", None, False, False,
            endpoints=(endpoint("ep-cool-fog-a1b2c3", "proj-a", "br-a"),))
TB = Target("proj-b", "other", "br-b", "dev", "svc", None, False, False,
            endpoints=(endpoint("ep-old-sun-d4e5f6", "proj-b", "br-b"),))


def golden() -> str:
    """Every quoting style, export, comments, blank lines, CRLF, duplicates, two targets, pooled and direct."""
    lines = [
        "# app settings",
        "",
        f"DATABASE_URL={uri(OLD_A, HOST_A_POOL)}  # pooled, unquoted",
        f"export DATABASE_URL_UNPOOLED='{uri(OLD_A)}'",
        f'DIRECT_URL="{uri(OLD_A, db="analytics", query="")}" # double',
        "",
        f"DATABASE_URL={uri(OLD_A, HOST_A_POOL)}",
        f"OTHER_URL = {uri(OLD_B, HOST_B, user='svc', db='svcdb', query='sslmode=require&options=x')}",
        f"NOT_MINE={uri(OLD_A, user='someone_else')}",
        "PLAIN=hello world # not a uri",
        "    ",
    ]
    return "\r\n".join(lines[:5]) + "\r\n" + "\n".join(lines[5:]) + "\n"


def result(t: Target, pw: str) -> RotationResult:
    return RotationResult(t, Secret(pw), ())


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def env(tmp_path):
    p = tmp_path / ".env"
    p.write_bytes(golden().encode())
    os.chmod(p, 0o640)
    return p


def test_values_are_located_with_their_lines_kinds_and_spans(env):
    text = env.read_bytes().decode()
    vals = neon_values(env, text)
    got = [(v.line, v.name, v.uri.kind, v.uri.database, v.uri.user) for v in vals]
    assert got == [(3, "DATABASE_URL", "pooled", "neondb", "app"), (4, "DATABASE_URL_UNPOOLED", "direct", "neondb", "app"),
                   (5, "DIRECT_URL", "direct", "analytics", "app"), (7, "DATABASE_URL", "pooled", "neondb", "app"),
                   (8, "OTHER_URL", "direct", "svcdb", "svc"), (9, "NOT_MINE", "direct", "neondb", "someone_else")]
    for v in vals:
        assert parse_neon_uri(text[v.span[0]:v.span[1]]) == v.uri  # the span is exactly the value
    assert parse_neon_uri("postgresql://u:p@db.example.com/x") is None
    assert parse_neon_uri(uri("x", HOST_A_POOL)).endpoint_id == "ep-cool-fog-a1b2c3"


@pytest.mark.parametrize("new", ["npg_NEW9", "we'ird \"pw\" #$ \\x"])
def test_only_the_password_bytes_change(env, new):
    before = env.read_bytes()
    sink = EnvFileSink(env.parent, targets=[TA, TB])
    assert "5 copies of 2 target(s) in 1 file(s)" in run(sink.preflight())
    r = run(sink.deliver(result(TA, new)))
    after = env.read_bytes()
    old_enc, new_enc = quote(OLD_A, safe=""), quote(new, safe="")
    # the expected file: the original with TA's password replaced on TA's lines only
    lines = before.decode().splitlines(keepends=True)
    for i in (2, 3, 4, 6):
        lines[i] = lines[i].replace(old_enc, new_enc)
    assert after.decode() == "".join(lines)
    assert after.count(b"\r\n") == 5 and uri(OLD_A, user="someone_else").encode() in after
    assert re.sub(re.escape(new_enc), old_enc, after.decode()) == before.decode()
    assert r.detail == f"{env}:3 DATABASE_URL, {env}:4 DATABASE_URL_UNPOOLED, {env}:5 DIRECT_URL, {env}:7 DATABASE_URL"
    assert new not in r.detail and new_enc not in r.detail and OLD_A not in r.detail
    assert stat.S_IMODE(os.stat(env).st_mode) == 0o640
    # the other target next, in the same file
    run(sink.deliver(result(TB, "npg_B2")))
    assert uri("npg_B2", HOST_B, user="svc", db="svcdb", query="sslmode=require&options=x").encode() in env.read_bytes()


def test_repeat_is_idempotent(env):
    sink = EnvFileSink(env, targets=[TA])
    run(sink.preflight())
    run(sink.deliver(result(TA, "npg_NEW")))
    once = env.read_bytes()
    mtime = os.stat(env).st_mtime_ns
    r = run(sink.deliver(result(TA, "npg_NEW")))
    assert env.read_bytes() == once and os.stat(env).st_mtime_ns == mtime
    assert r.detail.startswith("already there: ")


def test_old_passwords_are_collected_for_verification(env):
    sink = EnvFileSink(env, targets=[TA, TB])
    run(sink.preflight())
    assert sink.old_passwords() == {TA.key: [Secret(OLD_A)], TB.key: [Secret(OLD_B)]}
    run(sink.deliver(result(TA, "npg_NEW")))
    run(sink.preflight())  # a retry reads the new value: it is not an old one
    assert sink.old_passwords()[TA.key] == [Secret(OLD_A)]


def test_a_file_changed_since_preflight_is_refused_and_untouched(env):
    sink = EnvFileSink(env, targets=[TA])
    run(sink.preflight())
    changed = env.read_bytes() + b"EXTRA=1\n"
    env.write_bytes(changed)
    with pytest.raises(SinkError, match="changed since it was read") as e:
        run(sink.deliver(result(TA, "npg_NEW")))
    assert "npg_NEW" not in str(e.value) and OLD_A not in str(e.value)
    assert env.read_bytes() == changed


def test_a_symlink_is_refused_unless_followed(env, tmp_path):
    link = tmp_path / "app.env"
    link.symlink_to(env)
    with pytest.raises(SinkError, match="symlink"):
        run(EnvFileSink(link, targets=[TA]).preflight())
    sink = parse_deliver(f"env-follow:{link}")
    sink.bind([TA])
    run(sink.preflight())
    run(sink.deliver(result(TA, "npg_NEW")))
    assert link.is_symlink() and b"npg_NEW" in env.read_bytes()


def test_a_crash_before_the_rename_leaves_the_original_and_no_temp_file(env, monkeypatch):
    before = env.read_bytes()
    sink = EnvFileSink(env, targets=[TA])
    run(sink.preflight())

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(SinkError, match="No space left"):
        run(sink.deliver(result(TA, "npg_NEW")))
    assert env.read_bytes() == before
    assert sorted(p.name for p in env.parent.iterdir()) == [".env"]
    monkeypatch.undo()
    run(sink.deliver(result(TA, "npg_NEW")))  # the retry works: the file did not change
    assert b"npg_NEW" in env.read_bytes()


def test_preflight_refuses_files_without_a_copy_and_missing_paths(tmp_path):
    (tmp_path / ".env").write_text("A=1\n")
    with pytest.raises(SinkError, match="no copy of a planned target"):
        run(EnvFileSink(tmp_path, targets=[TA]).preflight())
    with pytest.raises(SinkError, match="no such file"):
        run(EnvFileSink(tmp_path / "nope", targets=[TA]).preflight())
    (tmp_path / "empty").mkdir()
    with pytest.raises(SinkError, match="no .env files"):
        run(EnvFileSink(tmp_path / "empty", targets=[TA]).preflight())


def test_find_skips_vendor_dirs_and_matches_env_names(tmp_path):
    for rel in [".env", ".env.local", "svc/prod.env", "svc/notes.txt", ".git/.env", "node_modules/x/.env",
                ".venv/.env", "environment"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("A=1\n")
    files, problems = find_env_files([tmp_path])
    assert sorted(str(f.relative_to(tmp_path)) for f in files) == [".env", ".env.local", "svc/prod.env"]
    assert not problems
