"""AWS Secrets Manager as a sink (the optional `aws` extra: pip install 'neon-tui[aws]', boto3).

    --deliver aws-sm:SECRET_ID                 the whole SecretString becomes the new value
    --deliver aws-sm:SECRET_ID#KEY             one key of a JSON-object secret is replaced; the rest is kept
                                               byte for byte (other keys, their order, whitespace)
    options after '?': value=direct|pooled|password, database=NAME, region=REGION

SECRET_ID is a name or an ARN (ARNs hold ':'): everything after 'aws-sm:' up to the first '#' or '?'.
Credentials come from the normal AWS chain (environment, profile, SSO, instance role); never from argv.
The region comes from region=, else the ARN, else the chain (AWS_REGION, profile). Endpoints: boto3 honours
AWS_ENDPOINT_URL_SECRETS_MANAGER / AWS_ENDPOINT_URL itself; plain http only to loopback (tests).

Idempotence: PutSecretValue carries a ClientRequestToken, a uuid5 of the run id, the target, the secret (and
key) and a hash of the value written. Secrets Manager returns the same VersionId for the same token and the
same SecretString without creating a version, so a repeat (a retry, a resume of the same run) writes nothing
new. Confirmation is metadata: the VersionId returned, and DescribeSecret showing it as AWSCURRENT. The value
is never read back; a JSON secret is read (GetSecretValue) only to replace its one key, in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from neon_tui.rotation.events import RotationResult
from neon_tui.rotation.platform_sinks import VALUES, _options, check_base_url, pick_value
from neon_tui.rotation.sinks import Receipt, SinkError

EXTRA_HINT = "needs the aws extra: pip install 'neon-tui[aws]'"
# A fixed namespace for our ClientRequestTokens (uuid5 of this string under the URL namespace).
TOKEN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/neon-tui/aws-sm-client-request-token")
ENDPOINT_ENV = ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL")

_WORDS = {
    "AccessDeniedException": "access denied: the credentials may not do this (needs secretsmanager:DescribeSecret, "
                             "GetSecretValue for #KEY or a JSON check, and PutSecretValue on the secret)",
    "ResourceNotFoundException": "no such secret in this account and region (or not visible to these credentials)",
    "UnrecognizedClientException": "the AWS credentials were refused (unknown access key)",
    "InvalidSignatureException": "the AWS credentials were refused (bad secret access key)",
    "SignatureDoesNotMatch": "the AWS credentials were refused (bad secret access key)",
    "ExpiredTokenException": "the AWS session token has expired",
    "DecryptionFailure": "the secret's KMS key cannot be used by these credentials (kms:Decrypt)",
    "EncryptionFailure": "the secret's KMS key cannot be used by these credentials (kms:GenerateDataKey)",
    "InvalidRequestException": "the request was refused (is the secret scheduled for deletion?)",
}


def require_boto3() -> None:
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise ValueError(f"--deliver aws-sm:… {EXTRA_HINT}") from None


def _region_of_arn(secret_id: str) -> str | None:
    parts = secret_id.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "secretsmanager" and parts[3]:
        return parts[3]
    return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def json_members(text: str) -> list[tuple[str, int, int]]:
    """(key, start, end) of each top-level member's value in a JSON object's text. Raises ValueError when the
    text is not one JSON object, or a key repeats."""
    dec = json.JSONDecoder()
    ws = " \t\n\r"
    i, n = 0, len(text)

    def skip(j: int) -> int:
        while j < n and text[j] in ws:
            j += 1
        return j

    i = skip(i)
    if i >= n or text[i] != "{":
        raise ValueError("not a JSON object")
    i = skip(i + 1)
    out: list[tuple[str, int, int]] = []
    if i < n and text[i] == "}":
        i += 1
    else:
        while True:
            if i >= n or text[i] != '"':
                raise ValueError("not a JSON object")
            key, i = json.decoder.scanstring(text, i + 1)
            i = skip(i)
            if i >= n or text[i] != ":":
                raise ValueError("not a JSON object")
            i = skip(i + 1)
            try:
                _, end = dec.raw_decode(text, i)
            except json.JSONDecodeError:
                raise ValueError("not valid JSON") from None
            if any(k == key for k, _, _ in out):
                raise ValueError(f"key {key!r} appears twice")
            out.append((key, i, end))
            i = skip(end)
            if i < n and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < n and text[i] == "}":
                i += 1
                break
            raise ValueError("not a JSON object")
    if skip(i) != n:
        raise ValueError("trailing text after the JSON object")
    return out


def replace_member(text: str, key: str, value: str) -> str:
    """The JSON object text with `key`'s value replaced by the string `value`; everything else byte for byte."""
    for k, start, end in json_members(text):
        if k == key:
            return text[:start] + json.dumps(value) + text[end:]
    raise KeyError(key)


class AwsSecretSink:
    """One AWS Secrets Manager secret (the whole string, or one key of a JSON object)."""

    automatic = True
    one_target = True  # one secret holds one value: a run with several targets is refused up front

    def __init__(self, secret_id: str, *, key: str | None = None, value: str = "direct", database: str | None = None,
                 region: str | None = None, endpoint_url: str | None = None) -> None:
        if not secret_id or any(c.isspace() for c in secret_id):
            raise ValueError(f"{secret_id!r} is not a secret name or ARN")
        if value not in VALUES:
            raise ValueError(f"value={value}: use direct, pooled or password")
        if key is not None and not key:
            raise ValueError("#KEY is empty: drop '#' to replace the whole secret string")
        self.secret_id, self.key, self.value, self.database = secret_id, key, value, database
        self.region = region or _region_of_arn(secret_id)
        self.endpoint_url = check_base_url(endpoint_url, "endpoint_url") if endpoint_url else None
        self.name = f"aws-sm:{secret_id}" + (f"#{key}" if key else "")
        self.where = secret_id + (f":{key}" if key else "")
        self.run_id: str | None = None
        self._client: Any = None
        self._taken: tuple | None = None
        self._done: dict[tuple, Receipt] = {}

    def set_run(self, run_id: str) -> None:
        """The run's id (the journal's), part of each ClientRequestToken: a resume of the run repeats tokens."""
        self.run_id = run_id

    # ------------------------------------------------------------------ boto3 (blocking; called in a thread)

    def _boto(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise SinkError(f"{self.name} {EXTRA_HINT}") from None
            try:
                session = boto3.session.Session(region_name=self.region)
                self._client = session.client(
                    "secretsmanager", endpoint_url=self.endpoint_url,
                    config=Config(connect_timeout=10, read_timeout=30, retries={"mode": "standard", "max_attempts": 4},
                                  user_agent_extra="neon-tui"))
            except Exception as e:
                raise self._why(e, "connect") from None
        return self._client

    def _why(self, e: BaseException, what: str) -> SinkError:
        code = ""
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            code = str(resp.get("Error", {}).get("Code") or "")
        kind = type(e).__name__
        if code in _WORDS:
            why = f"{_WORDS[code]} ({code})"
        elif kind == "NoCredentialsError" or kind == "PartialCredentialsError":
            why = ("no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an "
                   "instance or SSO role")
        elif kind == "NoRegionError":
            why = "no AWS region: set AWS_REGION, add ?region=REGION, or give the secret's ARN"
        elif kind in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
            why = f"cannot reach Secrets Manager ({kind})"
        elif code == "403" or (isinstance(resp, dict) and resp.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403):
            why = "access denied or credentials refused (HTTP 403): check the credentials and their permissions"
        elif code:
            why = f"refused ({code})"
        else:
            why = f"failed ({kind})"
        return SinkError(f"AWS Secrets Manager: {what} {self.where}: {why}")

    def _call(self, op: str, what: str, **kw) -> dict:
        client = self._boto()
        try:
            return getattr(client, op)(**kw)
        except SinkError:
            raise
        except Exception as e:
            raise self._why(e, what) from None

    def _current_string(self) -> str | None:
        """The AWSCURRENT SecretString (memory only), or None when the secret has no current string value."""
        try:
            out = self._boto().get_secret_value(SecretId=self.secret_id)
        except Exception as e:
            code = getattr(e, "response", {}).get("Error", {}).get("Code") if hasattr(e, "response") else None
            if code == "ResourceNotFoundException":
                return None  # exists (DescribeSecret said so) but holds no current value yet
            raise self._why(e, "read") from None
        text = out.get("SecretString")
        return text if isinstance(text, str) else None

    def _check(self) -> str:
        desc = self._call("describe_secret", "describe", SecretId=self.secret_id)
        if desc.get("DeletedDate"):
            raise SinkError(f"AWS Secrets Manager: {self.where} is scheduled for deletion; restore it first")
        arn = str(desc.get("ARN") or self.secret_id)
        if self.key is not None:
            text = self._current_string()
            if text is None:
                raise SinkError(f"AWS Secrets Manager: {self.secret_id} holds no JSON string value to replace key "
                                f"{self.key} in; drop #KEY to write the whole secret")
            try:
                keys = [k for k, _, _ in json_members(text)]
            except ValueError as e:
                raise SinkError(f"AWS Secrets Manager: {self.secret_id} is not a JSON object ({e}); drop #{self.key} "
                                "to replace the whole string") from None
            if self.key not in keys:
                shown = ", ".join(keys[:10]) or "none"
                raise SinkError(f"AWS Secrets Manager: {self.secret_id} has no key {self.key!r} (keys: {shown}); "
                                "name an existing key")
            return f"AWS Secrets Manager {arn} key {self.key}"
        # The whole string: refuse to flatten a JSON object the user forgot to name a key of.
        try:
            text = self._current_string()
        except SinkError as e:
            if "AccessDenied" in str(e):
                text = None  # a write-only role: nothing to check against
            else:
                raise
        if text is not None:
            try:
                keys = [k for k, _, _ in json_members(text)]
            except ValueError:
                keys = None
            if keys is not None:
                raise SinkError(f"AWS Secrets Manager: {self.secret_id} holds a JSON object (keys: "
                                f"{', '.join(keys[:10]) or 'none'}); name the key to replace: aws-sm:{self.secret_id}#KEY")
        return f"AWS Secrets Manager {arn}"

    def token(self, result: RotationResult, text: str) -> str:
        run = self.run_id or "no-run"
        t = result.target
        parts = [run, t.project_id, t.branch_id, t.role_name, self.secret_id, self.key or "", self.value,
                 _digest(result.password.reveal()), _digest(text)]
        return str(uuid.uuid5(TOKEN_NAMESPACE, "\0".join(parts)))

    def _write(self, result: RotationResult) -> Receipt:
        value, what = pick_value(result, self.value, self.database)
        if self.key is None:
            text = value.reveal()
            token = self.token(result, text)
        else:
            current = self._current_string()
            if current is None:
                raise SinkError(f"AWS Secrets Manager: {self.secret_id} no longer holds a JSON string value")
            try:
                text = replace_member(current, self.key, value.reveal())
            except (ValueError, KeyError):
                raise SinkError(f"AWS Secrets Manager: {self.secret_id} is no longer a JSON object with key "
                                f"{self.key!r}; not written") from None
            # The token hashes the key's new value, not the whole string: a second attempt after another key
            # changed reuses it, and Secrets Manager refuses it (ResourceExistsException) instead of writing twice.
            token = self.token(result, value.reveal())
        client = self._boto()
        try:
            out = client.put_secret_value(SecretId=self.secret_id, SecretString=text, ClientRequestToken=token)
        except Exception as e:
            code = getattr(e, "response", {}).get("Error", {}).get("Code") if hasattr(e, "response") else None
            if code != "ResourceExistsException":
                raise self._why(e, "write") from None
            out = {"VersionId": token}  # this very delivery was written before; check below that it is current
        version = str(out.get("VersionId") or "")
        if version != token:
            raise SinkError(f"AWS Secrets Manager took {self.where} but answered version {version or 'none'}, "
                            "not the one asked for: not confirmed")
        desc = self._call("describe_secret", "confirm", SecretId=self.secret_id)
        stages = (desc.get("VersionIdsToStages") or {}).get(version) or []
        if "AWSCURRENT" not in stages:
            raise SinkError(f"AWS Secrets Manager: version {version} of {self.where} is not AWSCURRENT "
                            f"({', '.join(stages) or 'no stage'}): something else wrote the secret; not confirmed")
        return Receipt(self.name, f"aws-sm {self.where} version {version} ({what})")

    # ------------------------------------------------------------------ the Sink protocol

    async def preflight(self) -> str:
        return await asyncio.to_thread(self._check)

    async def deliver(self, result: RotationResult) -> Receipt:
        fp = (result.target.key, _digest(result.password.reveal()))
        if fp in self._done:
            return self._done[fp]
        key = result.target.key
        if self._taken is not None and self._taken != key:
            raise SinkError(f"{self.name} holds one value and already took another target's in this run; "
                            "give each target its own secret (one --deliver per target)")
        self._taken = key
        receipt = await asyncio.to_thread(self._write, result)
        self._done[fp] = receipt
        return receipt


def _check_endpoint_env(env: Mapping[str, str]) -> None:
    for name in ENDPOINT_ENV:
        if env.get(name):
            check_base_url(env[name], name)
            return


def parse_aws(spec: str, *, environ: Mapping[str, str] | None = None) -> AwsSecretSink | None:
    """aws-sm:SECRET_ID[#KEY][?value=…&database=…&region=…] or None when the spec is not one. Raises ValueError."""
    if not spec.startswith("aws-sm:"):
        return None
    env = os.environ if environ is None else environ
    rest = spec[len("aws-sm:"):]
    cut = min((i for i in (rest.find("#"), rest.find("?")) if i >= 0), default=len(rest))
    secret_id, tail = rest[:cut], rest[cut:]
    key: str | None = None
    query = ""
    if tail.startswith("#"):
        key, _, query = tail[1:].partition("?")
    elif tail.startswith("?"):
        query = tail[1:]
    if not secret_id:
        raise ValueError(f"--deliver aws-sm:SECRET_ID[#KEY][?value=…]: got {spec!r}")
    opts = _options(query)
    value = opts.pop("value", "direct") or "direct"
    database = opts.pop("database", None) or None
    region = opts.pop("region", None) or None
    if opts:
        raise ValueError(f"--deliver aws-sm: unknown option(s) {', '.join(sorted(opts))}")
    require_boto3()
    _check_endpoint_env(env)
    return AwsSecretSink(secret_id, key=key, value=value, database=database, region=region)


__all__ = ["AwsSecretSink", "parse_aws", "json_members", "replace_member"]
