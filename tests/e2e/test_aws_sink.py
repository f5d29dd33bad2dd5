"""AWS Secrets Manager as a sink, against moto's server mode (real HTTP, boto3 unchanged), and through
`neon-tui rotate --deliver aws-sm:…`."""

from __future__ import annotations

import json
import urllib.request

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from neon_tui.neon.secret import Secret  # noqa: E402
from neon_tui.rotation.aws_sink import AwsSecretSink, parse_aws, replace_member  # noqa: E402
from neon_tui.rotation.events import Connection, RotationResult  # noqa: E402
from neon_tui.rotation.plan import Target  # noqa: E402
from neon_tui.rotation.sinks import SinkError, parse_deliver  # noqa: E402

HOST = "ep-x-1.eu.neon.tech"
REGION = "eu-central-1"
FAKE = {"AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE", "AWS_SECRET_ACCESS_KEY": "fake-secret-key-do-not-print",
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}


def result(pw: str = "pw-1", *, role: str = "app") -> RotationResult:
    t = Target(project_id="proj-1", project_name="acme-prod", branch_id="br-1", branch_name="staging",
               role_name=role, role_updated_at=None, store_passwords=True, protected_branch=False)
    conns = (Connection("neondb", Secret(f"postgresql://{role}:{pw}@{HOST}/neondb?sslmode=require"),
                        Secret(f"postgresql://{role}:{pw}@ep-x-1-pooler.eu.neon.tech/neondb?sslmode=require"), HOST),)
    return RotationResult(target=t, password=Secret(pw), connections=conns)


@pytest.fixture
def aws(monkeypatch):
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        # moto keeps its state per process, not per server: start every test from an empty account
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()
        for k, v in FAKE.items():
            monkeypatch.setenv(k, v)
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(k, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", url)  # boto3 itself honours it
        client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=url)
        client.url = url
        yield client
    finally:
        server.stop()


def versions(client, sid: str) -> int:
    return len(client.list_secret_version_ids(SecretId=sid)["Versions"])


def current(client, sid: str) -> str:
    return client.get_secret_value(SecretId=sid)["SecretString"]


async def test_plain_string_secret_replaced_and_repeat_is_idempotent(aws):
    aws.create_secret(Name="app/db", SecretString="postgresql://app:old@x/neondb")
    sink = AwsSecretSink("app/db")  # endpoint from AWS_ENDPOINT_URL_SECRETS_MANAGER
    sink.set_run("run-1")
    assert "AWS Secrets Manager arn:aws:secretsmanager:" in await sink.preflight()
    rec = await sink.deliver(result("pw-1"))
    assert current(aws, "app/db") == result("pw-1").connections[0].direct.reveal()
    assert rec.detail.startswith("aws-sm app/db version ") and "pw-1" not in rec.detail
    n = versions(aws, "app/db")
    # a new process (a resume of the same run) repeats the delivery: same token, same VersionId, no new version
    again = AwsSecretSink("app/db")
    again.set_run("run-1")
    assert (await again.deliver(result("pw-1"))).detail == rec.detail
    assert versions(aws, "app/db") == n
    # another password for the same target: a new token, a new version
    other = AwsSecretSink("app/db", value="pooled")
    other.set_run("run-2")
    rec2 = await other.deliver(result("pw-2"))
    assert rec2.detail != rec.detail and current(aws, "app/db").startswith("postgresql://app:pw-2@ep-x-1-pooler")
    stages = aws.describe_secret(SecretId="app/db")["VersionIdsToStages"]
    assert stages[rec2.detail.split()[3]] == ["AWSCURRENT"]


async def test_json_secret_one_key_replaced_rest_kept_byte_for_byte(aws):
    original = '{\n  "host": "db.internal",  "port": 5432, "ratio": 1.50,\n  "DATABASE_URL": "old",\n  "nested": {"a": [1, 2]}\n}'
    aws.create_secret(Name="app/cfg", SecretString=original)
    sink = AwsSecretSink("app/cfg", key="DATABASE_URL", value="password")
    sink.set_run("run-j")
    assert "key DATABASE_URL" in await sink.preflight()
    rec = await sink.deliver(result("pw-j"))
    assert current(aws, "app/cfg") == original.replace('"old"', '"pw-j"')
    assert list(json.loads(current(aws, "app/cfg"))) == ["host", "port", "ratio", "DATABASE_URL", "nested"]
    assert rec.detail.startswith("aws-sm app/cfg:DATABASE_URL version ") and "pw-j" not in rec.detail
    n = versions(aws, "app/cfg")
    again = AwsSecretSink("app/cfg", key="DATABASE_URL", value="password")
    again.set_run("run-j")
    assert (await again.deliver(result("pw-j"))).detail == rec.detail
    assert versions(aws, "app/cfg") == n


async def test_preflight_refuses_clearly(aws):
    with pytest.raises(SinkError, match="no such secret"):
        await AwsSecretSink("ghost").preflight()
    aws.create_secret(Name="plain", SecretString="not json")
    with pytest.raises(SinkError, match="not a JSON object"):
        await AwsSecretSink("plain", key="K").preflight()
    aws.create_secret(Name="obj", SecretString='{"a": "1"}')
    with pytest.raises(SinkError, match="no key 'K'"):
        await AwsSecretSink("obj", key="K").preflight()
    with pytest.raises(SinkError, match=r"holds a JSON object \(keys: a\); name the key"):
        await AwsSecretSink("obj").preflight()


async def test_no_credentials_and_one_target(aws, monkeypatch):
    aws.create_secret(Name="one", SecretString="x")
    sink = AwsSecretSink("one")
    await sink.deliver(result(role="app"))
    with pytest.raises(SinkError, match="one value"):
        await sink.deliver(result(role="other"))
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(SinkError, match="no AWS credentials"):
        await AwsSecretSink("one").preflight()


def test_specs():
    s = parse_aws("aws-sm:arn:aws:secretsmanager:us-west-2:123456789012:secret:app/db-AbCdEf#DB_URL?value=pooled"
                  "&database=x", environ={})
    assert (s.secret_id, s.key, s.value, s.database, s.region) == (
        "arn:aws:secretsmanager:us-west-2:123456789012:secret:app/db-AbCdEf", "DB_URL", "pooled", "x", "us-west-2")
    s = parse_aws("aws-sm:app/db?region=eu-central-1", environ={})
    assert (s.secret_id, s.key, s.region, s.name) == ("app/db", None, "eu-central-1", "aws-sm:app/db")
    assert parse_aws("vercel:x", environ={}) is None
    assert parse_deliver("aws-sm:app/db#K").name == "aws-sm:app/db#K"
    for bad in ("aws-sm:", "aws-sm:#K", "aws-sm:a#", "aws-sm:a?nope=1", "aws-sm:a?value=uri"):
        with pytest.raises(ValueError):
            parse_aws(bad, environ={})
    with pytest.raises(ValueError, match="plain http"):
        parse_aws("aws-sm:a", environ={"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://example.com"})


def test_missing_boto3_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ValueError, match=r"needs the aws extra: pip install 'neon-tui\[aws\]'"):
        parse_deliver("aws-sm:app/db")


def test_replace_member_keeps_the_rest():
    assert replace_member('{"a":1,"b" : "x"}', "b", "y") == '{"a":1,"b" : "y"}'
    with pytest.raises(ValueError):
        replace_member('{"a":1,"a":2}', "a", "y")
    with pytest.raises(KeyError):
        replace_member('{}', "a", "y")


# ------------------------------------------------------------------ the CLI, end to end


def _aws_env(served, aws):
    served.env.update(FAKE, AWS_ENDPOINT_URL_SECRETS_MANAGER=aws.url, AWS_EC2_METADATA_DISABLED="true")
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        served.env.pop(k, None)


@pytest.mark.slow
def test_rotate_delivers_to_aws_secret(served, aws):
    _aws_env(served, aws)
    aws.create_secret(Name="app/cfg", SecretString='{"user": "app", "DATABASE_URL": "old"}')
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--json",
                     "--deliver", "aws-sm:app/cfg#DATABASE_URL")
    assert out.returncode == 0, out.stderr
    sim = served.sim
    pid = sim.inspect.project_by_name("acme-prod").id
    branch = sim.inspect.branch_by_name(pid, "staging").id
    password = sim.inspect.password(pid, branch, "app")
    stored = json.loads(current(aws, "app/cfg"))
    assert stored["user"] == "app" and f":{password}@" in stored["DATABASE_URL"]
    assert "-pooler" not in stored["DATABASE_URL"]
    assert versions(aws, "app/cfg") == 2
    for text in (out.stdout, out.stderr, *(p.read_text() for p in served.journals())):
        assert password not in text and FAKE["AWS_SECRET_ACCESS_KEY"] not in text
    assert "aws-sm app/cfg:DATABASE_URL version" in "".join(p.read_text() for p in served.journals())


def _enforce_auth(monkeypatch):
    """moto checks credentials and IAM policies only when asked to; the server runs in this process, so its
    settings are ours to set (and monkeypatch restores them at teardown)."""
    from moto.core.responses import ActionAuthenticatorMixin

    monkeypatch.setattr("moto.settings.INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "denied", "unknown-key"])
def test_rotate_with_a_bad_aws_secret_resets_nothing(served, aws, case, monkeypatch):
    _aws_env(served, aws)
    aws.create_secret(Name="app/db", SecretString="old")
    sid = "ghost" if case == "missing" else "app/db"
    if case == "denied":  # a real IAM user with no policy: AccessDeniedException
        iam = boto3.client("iam", region_name=REGION, endpoint_url=aws.url)
        iam.create_user(UserName="ci")
        key = iam.create_access_key(UserName="ci")["AccessKey"]
        served.env.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
    if case != "missing":
        _enforce_auth(monkeypatch)
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", f"aws-sm:{sid}")
    assert out.returncode == 2, out.stderr
    # real AWS answers AccessDeniedException / UnrecognizedClientException (worded in _WORDS); moto a bare 403
    want = {"missing": "no such secret", "denied": "access denied", "unknown-key": "credentials"}[case]
    assert want in out.stderr, out.stderr
    assert not [r for r in served.sim.inspect.requests if r.method != "GET"]
    assert served.env["AWS_SECRET_ACCESS_KEY"] not in out.stderr + out.stdout
    monkeypatch.undo()
    assert current(aws, "app/db") == "old"
