"""Parsing what leaked: every format, odd names, and never a secret in a repr or an error."""

from __future__ import annotations

import io

import pytest

from neon_tui.rotation.leak import LeakError, parse_leak, parse_leak_bytes, read_leak


def values(leak):
    return {s.password.reveal(): s for s in leak.secrets}


def test_env_file_quotes_export_comments_crlf():
    text = ("# production\r\n"
            "export DATABASE_URL=\"postgresql://app:pw%2Fone@ep-cool-sun-123456-pooler.us-east-2.aws.neon.tech/neondb"
            "?sslmode=require\"\r\n"
            "PGPASSWORD='two words'\r\n"
            "DB_PASS=three#3\r\n"
            "\r\n"
            "LOG_LEVEL=debug   # comment\r\n")
    got = values(parse_leak(text))
    assert set(got) == {"pw/one", "two words", "three#3", "debug"}
    uri = got["pw/one"].origins[0]
    assert (uri.line, uri.kind, uri.name, uri.user, uri.endpoint_id) == (
        2, "uri", "DATABASE_URL", "app", "ep-cool-sun-123456")
    assert got["two words"].kind == "env" and got["two words"].line == 3
    assert got["three#3"].kind == "env"
    # an arbitrary variable's value is compared in memory only, never tried in a login
    assert got["debug"].kind == "env-value" and not got["debug"].probe_worthy
    assert got["pw/one"].probe_worthy


def test_connection_strings_anywhere_and_odd_role_names():
    text = ("see postgres://etl%2Floader:s3cr%40t@ep-a-1.eu-central-1.aws.neon.tech/warehouse, then\n"
            "postgresql://data%20team:p%27q@ep-b-2.c-2.us-east-2.aws.neon.tech/neondb?sslmode=require\n"
            "url: 'postgresql://o%27brien:at@sign@host.example:5432/billing'\n"
            "postgresql://u@h/db?password=fromquery&sslmode=require\n")
    got = values(parse_leak(text))
    assert set(got) == {"s3cr@t", "p'q", "at@sign", "fromquery"}
    assert got["s3cr@t"].origins[0].user == "etl/loader"
    assert got["p'q"].origins[0].user == "data team"
    assert got["at@sign"].origins[0].user == "o'brien" and got["at@sign"].origins[0].host == "host.example"
    assert got["fromquery"].kind == "uri"


def test_libpq_jdbc_and_bare_lines_dedup():
    text = ("host=ep-x-9.aws.neon.tech user=bob password='it\\'s' dbname=neondb\n"
            "jdbc:postgresql://ep-y-1.aws.neon.tech:5432/db?user=al&password=jp%26x&ssl=true\n"
            "hunter2\n"
            "  correct horse battery  \n"
            "\"quoted bare\"\n"
            "hunter2\n"
            "# hunter3 is a comment\n")
    leak = parse_leak(text)
    got = values(leak)
    assert set(got) == {"it's", "jp&x", "hunter2", "correct horse battery", "quoted bare"}
    assert got["it's"].kind == "libpq" and got["it's"].origins[0].user == "bob"
    assert got["it's"].origins[0].endpoint_id == "ep-x-9"
    assert got["jp&x"].kind == "jdbc" and got["jp&x"].origins[0].user == "al"
    assert [o.line for o in got["hunter2"].origins] == [3, 6]  # de-duplicated, both lines kept
    assert got["hunter2"].kind == "bare"


def test_no_secret_in_repr_str_or_summary():
    leak = parse_leak("DATABASE_URL=postgresql://app:TopSecret1@h/db\nTopSecret2\n")
    for thing in (repr(leak), str(leak), leak.summary(), *(s.describe() for s in leak.secrets),
                  *(repr(s) for s in leak.secrets)):
        assert "TopSecret" not in thing


@pytest.mark.parametrize("data, why", [
    (b"\x00\x01\x02binary", "binary"),
    (b"\xff\xfe\xfa not utf8", "not UTF-8"),
    (b"# only a comment\n\n", "no candidate"),
    (b"A=\nB=\n", "no candidate"),
])
def test_unusable_leaks_are_clear_errors(data, why):
    with pytest.raises(LeakError) as e:
        parse_leak_bytes(data, "leak.env")
    assert why in str(e.value) and "leak.env" in str(e.value)


def test_read_file_and_stdin(tmp_path):
    f = tmp_path / "leak.env"
    f.write_text("PGPASSWORD=FromFile9\n")
    assert values(read_leak(f)).keys() == {"FromFile9"}
    stdin = io.TextIOWrapper(io.BytesIO(b"postgresql://a:FromStdin9@h/d\n"))
    leak = read_leak("-", stdin=stdin)
    assert values(leak).keys() == {"FromStdin9"} and leak.source == "standard input"
    with pytest.raises(LeakError, match="no such file"):
        read_leak(tmp_path / "missing")
    with pytest.raises(LeakError, match="directory"):
        read_leak(tmp_path)


def test_compose_yaml_json_and_pgpass_shapes():
    """Found in review: these came back 'clean' (taken whole as one bare line, or dropped)."""
    text = ("services:\n  db:\n    environment:\n      - POSTGRES_PASSWORD=compose-pw\n"
            "      PGPASSWORD: \"yaml-pw\"\n"
            '{"user": "app", "password": "json-pw"}\n'
            "ep-a.c-2.us-east-2.aws.neon.tech:5432:neondb:app:pg\\:pass\n"
            "DATABASE_URL=postgresql://app:semi;colon@ep-b.c-2.us-east-2.aws.neon.tech/db?sslmode=require\n"
            "---\n{\n}\n")
    leak = parse_leak(text)
    got = {s.password.reveal(): s for s in leak.secrets}
    assert got["compose-pw"].kind == "env" and got["compose-pw"].probe_worthy
    assert got["yaml-pw"].kind == "env"
    assert got["json-pw"].kind == "env"
    assert got["app"].kind == "env-value" and not got["app"].probe_worthy  # a user name: memory only
    assert got["pg:pass"].kind == "pgpass" and got["pg:pass"].users == {"app"}
    assert got["semi;colon"].kind == "uri"
    # YAML keys, brackets and document markers are not candidates
    assert not {"services:", "db:", "environment:", "---", "{", "}"} & set(got)
