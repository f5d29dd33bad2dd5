"""Login answers: only an authentication failure proves a password dead; everything else is unknown."""

from __future__ import annotations

import pytest

from neon_tui.neon.secret import Secret
from neon_tui.rotation.logins import Login, Route, classify, try_login


@pytest.mark.parametrize("message,expected", [
    ('connection failed: FATAL:  password authentication failed for user "app"', Login.REJECTED),
    ("ERROR: password authentication failed for user 'app'", Login.REJECTED),  # Neon's proxy
    ('FATAL:  role "ghost" does not exist', Login.REJECTED),
    ('FATAL:  role "ro" is not permitted to log in', Login.UNKNOWN),
    ("connection timeout expired", Login.UNKNOWN),
    ("connection to server at \"127.0.0.1\", port 1 failed: Connection refused", Login.UNKNOWN),
    ("ERROR: connection is not allowed from IP address 10.1.2.3", Login.UNKNOWN),
    ("SSL SYSCALL error: EOF detected", Login.UNKNOWN),
    ("channel binding required, but server authenticated client without channel binding", Login.UNKNOWN),
    ("something nobody expected", Login.UNKNOWN),
])
def test_classify(message, expected):
    assert classify(message)[0] is expected


def test_route_from_env():
    assert Route.from_env({"PGHOSTADDR": "127.0.0.1", "PGPORT": "6543"}) == Route("127.0.0.1", 6543)
    assert Route.from_env({"PGHOSTADDR": "127.0.0.1"}) is None
    assert Route.from_env({"PGPORT": "x", "PGHOSTADDR": "::1"}) is None


async def test_unreachable_is_unknown_and_quotes_no_secret():
    uri = Secret("postgresql://app:s3cret-Pw@ep-x.c-2.us-east-2.aws.neon.tech/db?sslmode=require")
    out = await try_login(uri, route=Route("127.0.0.1", 1), timeout=2)
    assert out.result is Login.UNKNOWN
    assert "s3cret" not in out.detail
