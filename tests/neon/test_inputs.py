"""Key and host hygiene, and TLS failures that are reported clearly and never retried."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import traceback

import httpx
import pytest

from neon_tui.neon import NeonClient, RetryPolicy, Secret
from neon_tui.neon.client import DEFAULT_HOST, check_host
from neon_tui.neon.errors import (
    InsecureTransportError,
    InvalidHostError,
    MalformedApiKeyError,
    NeonError,
    NetworkError,
    OutcomeUnknownError,
    TlsError,
)
from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.serve import serve_in_thread

KEY = "napi_unit_test_key_0123456789abcdefghijklmnopqrstuvwxyz"
SIM_HOST = "https://neon-sim.invalid/api/v2"


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests on to another transport and keeps the Authorization headers it saw."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.auth: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.auth.append(request.headers["authorization"])
        return await self.inner.handle_async_request(request)


class Counting(httpx.AsyncBaseTransport):
    """Raises what `make` returns for every request, counting them."""

    def __init__(self, make) -> None:
        self.make = make
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        raise self.make(request)


def fast(**kw):
    sleeps: list[float] = []

    async def sleep(s):
        sleeps.append(s)

    return sleeps, dict(limiter=False, sleep=sleep, **kw)


def assert_no_key(text: str, key: str = KEY) -> None:
    for part in (key, key[:12], key[-12:], key[12:30]):
        assert part not in text


# ---------------------------------------------------------------- the key


@pytest.mark.parametrize("padding", ["\n", "\r\n", " \n", "\t", "  "])
async def test_key_with_surrounding_whitespace_works_against_the_simulator(padding):
    sim = Simulator(SimConfig())
    transport = Recorder(sim.transport())
    async with NeonClient(padding + sim.api_key + padding, host=SIM_HOST, transport=transport, limiter=False) as c:
        assert await c.list_organizations()
    assert transport.auth == [f"Bearer {sim.api_key}"]  # exactly the key, no newline


async def test_key_from_cat_keyfile_works_from_env_and_over_loopback_http(monkeypatch):
    sim = Simulator(SimConfig())
    with serve_in_thread(sim) as url:
        monkeypatch.setenv("NEON_API_KEY", sim.api_key + "\n")  # $(cat keyfile) keeps the newline in some shells
        monkeypatch.setenv("NEON_API_HOST", url + "\n")
        async with NeonClient.from_env(limiter=False) as c:  # real h11 on a real socket
            assert c.base_url == url
            assert await c.list_organizations()


async def test_a_secret_key_is_trimmed_too():
    sim = Simulator(SimConfig())
    transport = Recorder(sim.transport())
    async with NeonClient(Secret(sim.api_key + "\n"), host=SIM_HOST, transport=transport, limiter=False) as c:
        await c.get_auth()
    assert transport.auth == [f"Bearer {sim.api_key}"]


@pytest.mark.parametrize("bad,kind", [
    ("\n", "line break"), ("\r", "line break"), ("\t", "whitespace"), (" ", "whitespace"),
    ("\u00a0", "whitespace"), ("\u2028", "whitespace"), ("\x85", "whitespace"), ("\x9b", "control"),
    ("\x00", "control"), ("\x1b", "control"), ("\x7f", "control"), ("é", "non-ASCII"), ("\u200b", "non-ASCII"),
])
async def test_inner_whitespace_control_or_non_ascii_key_is_refused_before_any_request(bad, kind):
    key = KEY[:20] + bad + KEY[20:]
    transport = Counting(lambda r: AssertionError("no request may be made"))
    with pytest.raises(MalformedApiKeyError) as info:
        NeonClient(key, host="https://neon.example/api/v2", transport=transport, limiter=False)
    assert transport.count == 0
    e = info.value
    assert kind in str(e) and "API key" in str(e)
    assert_no_key(str(e) + repr(e) + "".join(traceback.format_exception(e)), key)
    with pytest.raises(MalformedApiKeyError):
        NeonClient(Secret(key), host="https://neon.example/api/v2", transport=transport)


async def test_inner_newline_in_env_key_is_refused_by_from_env(monkeypatch):
    key = KEY[:20] + "\n" + KEY[20:]
    monkeypatch.setenv("NEON_API_KEY", key + "\n")
    with pytest.raises(MalformedApiKeyError) as info:
        NeonClient.from_env(host="https://neon.example/api/v2")
    assert_no_key(str(info.value) + repr(info.value), key)


@pytest.mark.parametrize("key", ["", " ", "\n", "\r\n\t"])
def test_blank_key_is_no_key(monkeypatch, key):
    with pytest.raises(NeonError, match="no API key"):
        NeonClient(key, host="https://neon.example/api/v2")
    monkeypatch.setenv("NEON_API_KEY", key)
    with pytest.raises(NeonError, match="NEON_API_KEY is not set"):
        NeonClient.from_env(host="https://neon.example/api/v2")


# ---------------------------------------------------------------- the host


@pytest.mark.parametrize("raw,clean", [
    ("https://neon.example/api/v2\n", "https://neon.example/api/v2"),
    ("  https://neon.example/api/v2/ \r\n", "https://neon.example/api/v2"),
    ("\thttp://127.0.0.1:8080/api/v2", "http://127.0.0.1:8080/api/v2"),
])
def test_host_surrounding_whitespace_is_trimmed(raw, clean):
    assert check_host(raw) == clean
    assert NeonClient(KEY, host=raw).base_url == clean


def test_blank_env_host_means_the_default(monkeypatch):
    monkeypatch.setenv("NEON_API_HOST", " \n")
    assert NeonClient(KEY).base_url == DEFAULT_HOST


@pytest.mark.parametrize("host,what", [
    ("https://neon .example/api/v2", "whitespace"),
    ("https://neon.example/api/v2\n/x", "line break"),
    ("https://neon.example\t/api/v2", "whitespace"),
    ("https://neon.example/api/v2\x00", "control"),
    ("https://neon.example/\x1b[31m", "control"),
    ("https://neon.example:99999/api/v2", "not a valid URL"),
    ("https://neon.example:port/api/v2", "not a valid URL"),
    ("https://[::1/api/v2", "not a valid URL"),
    ("ftp://neon.example/api/v2", "http(s) URL"),
    ("neon.example/api/v2", "http(s) URL"),
])
def test_bad_host_is_refused_clearly(host, what, monkeypatch):
    with pytest.raises(InvalidHostError, match="NEON_API_HOST") as info:
        NeonClient(KEY, host=host)
    assert what in str(info.value)
    assert isinstance(info.value, InsecureTransportError)  # callers catching the old class still do
    if "\x00" not in host:  # the environment cannot hold a NUL
        monkeypatch.setenv("NEON_API_HOST", host)
        with pytest.raises(InvalidHostError):
            NeonClient(KEY)


@pytest.mark.parametrize("host", ["https://user:hunter2@neon .example/api", "ftp://user:hunter2@neon.example/",
                                  "https://user:hunter2@neon.example:99999/"])
def test_host_messages_never_echo_credentials(host):
    with pytest.raises(InsecureTransportError) as info:
        check_host(host)
    assert "hunter2" not in str(info.value) + repr(info.value)


def test_plain_http_still_only_to_loopback():
    with pytest.raises(InsecureTransportError, match="plain http"):
        check_host("http://neon.example/api/v2\n")
    assert check_host("http://localhost:1/api/v2 ") == "http://localhost:1/api/v2"


# ---------------------------------------------------------------- TLS


def _cert_error(request, cls=ssl.SSLCertVerificationError, *args):
    args = args or (1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired")
    try:
        try:
            raise cls(*args)
        except ssl.SSLError as inner:
            raise httpx.ConnectError(str(inner)) from inner  # as httpcore/httpx chain it
    except httpx.ConnectError as outer:
        return outer


async def test_tls_certificate_failure_is_reported_and_not_retried():
    transport = Counting(_cert_error)
    sleeps, kw = fast(transport=transport)
    async with NeonClient(KEY, host="https://neon.example/api/v2", **kw) as c:
        with pytest.raises(TlsError) as info:
            await c.list_organizations()
        assert transport.count == 1 and sleeps == []
        assert "TLS certificate verification failed for neon.example" in str(info.value)
        assert not isinstance(info.value, NetworkError)  # nothing that retries network errors retries this
        assert_no_key(str(info.value) + repr(info.value))
        # A mutation is not "outcome unknown": the handshake failed before anything was sent.
        with pytest.raises(TlsError):
            await c.reset_role_password("p-1", "br-1", "app")
        assert transport.count == 2
    assert c.history[-1].error == "TLS"


async def test_other_ssl_errors_are_not_retried_but_closed_connections_are():
    transport = Counting(lambda r: _cert_error(r, ssl.SSLError, 1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"))
    sleeps, kw = fast(transport=transport)
    async with NeonClient(KEY, host="https://neon.example/api/v2", **kw) as c:
        with pytest.raises(TlsError, match="TLS certificate verification failed for neon.example"):
            await c.get_auth()
    assert transport.count == 1
    eof = Counting(lambda r: _cert_error(r, ssl.SSLEOFError, 8, "EOF occurred in violation of protocol"))
    sleeps, kw = fast(transport=eof, retry=RetryPolicy(max_attempts=3))
    async with NeonClient(KEY, host="https://neon.example/api/v2", **kw) as c:
        with pytest.raises(NetworkError):
            await c.get_auth()
    assert eof.count == 3


async def test_tls_error_after_connect_on_a_mutation_stays_outcome_unknown():
    def mid_stream(request):
        try:
            raise ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed")
        except ssl.SSLError as inner:
            try:
                raise httpx.ReadError(str(inner)) from inner
            except httpx.ReadError as outer:
                return outer

    transport = Counting(mid_stream)
    sleeps, kw = fast(transport=transport)
    async with NeonClient(KEY, host="https://neon.example/api/v2", **kw) as c:
        with pytest.raises(OutcomeUnknownError):
            await c.reset_role_password("p-1", "br-1", "app")
    assert transport.count == 1


async def test_local_protocol_error_is_not_retried_and_does_not_leak_the_header():
    transport = Counting(lambda r: httpx.LocalProtocolError(f"Illegal header value b'Bearer {KEY}'"))
    sleeps, kw = fast(transport=transport)
    async with NeonClient(KEY, host="https://neon.example/api/v2", **kw) as c:
        with pytest.raises(NeonError) as info:
            await c.get_auth()
        with pytest.raises(NeonError):
            await c.reset_role_password("p-1", "br-1", "app")
    assert not isinstance(info.value, OutcomeUnknownError)
    assert transport.count == 2 and sleeps == []
    assert_no_key(str(info.value) + repr(info.value) + "".join(traceback.format_exception(info.value)))


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


async def test_real_loopback_tls_server_with_a_self_signed_certificate(tmp_path):
    ctx = _self_signed(tmp_path)
    connections = 0

    async def handle(reader, writer):
        nonlocal connections
        connections += 1
        try:
            await writer.start_tls(ctx, ssl_handshake_timeout=2)
            await reader.read(1)  # a request here would mean verification was off
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        except (Exception, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sleeps, kw = fast()
    try:
        async with NeonClient(KEY, host=f"https://127.0.0.1:{port}/api/v2", **kw) as c:  # default transport
            with pytest.raises(TlsError) as info:
                await c.list_organizations()
    finally:
        server.close()
    msg = str(info.value)
    assert "TLS certificate verification failed for 127.0.0.1" in msg and "self-signed" in msg
    assert connections == 1 and sleeps == []
    assert_no_key(msg + repr(info.value))
