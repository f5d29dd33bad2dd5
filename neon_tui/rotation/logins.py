"""Real PostgreSQL logins: does this password open this role on this endpoint, yes, no, or unknown.

Used by verification (new password works, old one is refused) and by the exposure scan's login probe.
The answer is three-valued on purpose: only a server's "password authentication failed" proves a password
dead. A timeout, a refused connection, a TLS failure or an IP-allow rejection proves nothing, so they are
`unknown`, never `rejected`.

Neon routes by the first label of the TLS SNI host name; libpq honours PGHOSTADDR/PGPORT, so an unchanged
Neon connection string can reach a local router (the simulator's) while the Neon host is still sent as SNI.
`Route` carries that pair explicitly so an app can verify against its in-process simulator without
changing its own environment.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from neon_tui.neon.secret import Secret

DEFAULT_TIMEOUT = 10.0


class Login(StrEnum):
    OK = "ok"  # logged in and `select current_user` named the role
    REJECTED = "rejected"  # the server refused this password (or the role does not exist)
    UNKNOWN = "unknown"  # no answer that proves anything: timeout, unreachable, TLS, IP allow, ...


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    result: Login
    detail: str  # why, in words that never quote a secret
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is Login.OK

    @property
    def rejected(self) -> bool:
        return self.result is Login.REJECTED


@dataclass(frozen=True, slots=True)
class Route:
    """Where to open the TCP connection; the URI's host name is still sent for SNI."""

    hostaddr: str
    port: int

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Route | None:
        env = os.environ if environ is None else environ
        addr, port = env.get("PGHOSTADDR", "").strip(), env.get("PGPORT", "").strip()
        if not addr or not port.isdigit():
            return None
        return cls(addr, int(port))

    def __str__(self) -> str:
        return f"{self.hostaddr}:{self.port}"


def classify(message: str) -> tuple[Login, str]:
    """Map a driver's error text to an answer. Only an authentication failure proves a password dead."""
    text = " ".join(message.split())
    low = text.lower()
    if "password authentication failed for user" in low:
        return Login.REJECTED, "password authentication failed"
    if ("role \"" in low or "role '" in low) and "does not exist" in low:
        return Login.REJECTED, "role does not exist"
    # 'role "x" is not permitted to log in' comes AFTER a correct password: it proves nothing dead.
    if "timeout" in low or "timed out" in low:
        return Login.UNKNOWN, "timed out"
    if "connection refused" in low:
        return Login.UNKNOWN, "connection refused"
    if "ip address" in low and "not allowed" in low or "not allowed from" in low:
        return Login.UNKNOWN, "client IP address not allowed by the project"
    if "channel binding" in low:
        return Login.UNKNOWN, "channel binding failed"
    if "ssl" in low or "tls" in low or "certificate" in low:
        return Login.UNKNOWN, "TLS failed"
    if "could not translate host name" in low or "name or service not known" in low:
        return Login.UNKNOWN, "host name not found"
    if "endpoint" in low and ("not found" in low or "could not be found" in low or "not specified" in low):
        return Login.UNKNOWN, "endpoint not found"
    return Login.UNKNOWN, "connection failed"


def _user_of(uri: str) -> str:
    return unquote(urlsplit(uri).username or "")


def _redacted(text: str, *secrets: str) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "********")
    return text


async def try_login(uri: Secret | str, password: Secret | str | None = None, *, route: Route | None = None,
                    timeout: float = DEFAULT_TIMEOUT) -> LoginOutcome:
    """Log in with `uri` (a libpq URI, as Neon gives it) and, if given, `password` instead of the URI's own.

    Succeeds only when `select current_user` names the URI's user. Never raises for a login failure.
    """
    import psycopg

    raw_uri = uri.reveal() if isinstance(uri, Secret) else uri
    pw = password.reveal() if isinstance(password, Secret) else password
    kwargs: dict[str, object] = {"connect_timeout": max(1, int(round(timeout)))}
    if pw is not None:
        kwargs["password"] = pw
    if route is not None:
        kwargs["hostaddr"], kwargs["port"] = route.hostaddr, route.port
    uri_pw = unquote(urlsplit(raw_uri).password or "")
    user = _user_of(raw_uri)
    t0 = time.monotonic()
    holder: list = []

    async def attempt():
        holder.append(await psycopg.AsyncConnection.connect(raw_uri, **kwargs))
        cur = await holder[0].execute("select current_user")
        row = await cur.fetchone()
        return row[0] if row else None

    try:
        # One deadline for the connection AND the query: a server that stalls after authentication
        # must not hold a run open.
        who = await asyncio.wait_for(attempt(), timeout + 2)
    except (asyncio.TimeoutError, TimeoutError):
        if holder:  # the connection was up: the server had accepted the password for this user
            return LoginOutcome(Login.OK, "logged in (the query after it timed out)", time.monotonic() - t0)
        return LoginOutcome(Login.UNKNOWN, "timed out", time.monotonic() - t0)
    except psycopg.Error as exc:
        result, why = classify(_redacted(str(exc), pw or "", uri_pw, raw_uri))
        return LoginOutcome(result, why, time.monotonic() - t0)
    except OSError as exc:
        return LoginOutcome(Login.UNKNOWN, f"connection failed ({type(exc).__name__})", time.monotonic() - t0)
    finally:
        for conn in holder:
            try:
                await conn.close()
            except Exception:
                pass
    if who != user:
        return LoginOutcome(Login.UNKNOWN, "logged in but the server named a different user",
                            time.monotonic() - t0)
    return LoginOutcome(Login.OK, "logged in", time.monotonic() - t0)
