"""Verification: after a target rotates, does the new password log in, and is the old one refused?

Every login goes through `logins.try_login` (three-valued: ok / rejected / unknown); nothing here
classifies a driver error. Verdicts per target:

- new password: `ok` (every connection string tried logged in), `failed` (the server REJECTED it on some
  string), `unknown` (no proof either way: timeout, unreachable, TLS, IP allow...), or `skipped` with the
  reason (no endpoint, no PostgreSQL here, password not held, operations not confirmed, cancelled).
- old password: `still-accepted` if ANY known old password logs in (an alarm), `rejected` only if every
  known old password was REJECTED, `unknown` otherwise, `not-checked` with the reason when no old password
  is known (or there is no endpoint to try it on).

A `Verification` never holds a secret: only verdicts, the kinds of strings tried, and reasons in words.
Logging in wakes an idle compute: front ends say so before a run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from neon_tui.neon.secret import Secret
from neon_tui.rotation.logins import DEFAULT_TIMEOUT, Login, LoginOutcome, Route
from neon_tui.rotation.plan import Target

WAKES_COMPUTES = "verification logs in to every rotated branch, which wakes idle computes"

LoginFn = Callable[..., Awaitable[LoginOutcome]]


class NewVerdict(StrEnum):
    OK = "ok"
    FAILED = "failed"    # the server rejected the new password
    UNKNOWN = "unknown"  # no answer that proves anything
    SKIPPED = "skipped"  # not tried (see the reason)


class OldVerdict(StrEnum):
    REJECTED = "rejected"              # every known old password was refused
    STILL_ACCEPTED = "still-accepted"  # some old password still logs in: alarm
    UNKNOWN = "unknown"
    NOT_CHECKED = "not-checked"        # no old password known, or nowhere to try it


@dataclass(frozen=True, slots=True)
class Check:
    """One login: which string (direct/pooled) or which old password (#1, #2...), and what it said."""

    kind: str
    result: Login
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "result": str(self.result), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Verification:
    new: NewVerdict
    old: OldVerdict
    new_reason: str = ""
    old_reason: str = ""
    database: str | None = None
    new_checks: tuple[Check, ...] = ()
    old_checks: tuple[Check, ...] = ()

    @property
    def alarm(self) -> bool:
        """An old password still logs in after the reset's operations finished."""
        return self.old is OldVerdict.STILL_ACCEPTED

    @property
    def verified(self) -> bool:
        """The whole point: the new password works and every known old one is refused."""
        return self.new is NewVerdict.OK and self.old is OldVerdict.REJECTED

    @classmethod
    def not_verified(cls, reason: str) -> Verification:
        return cls(NewVerdict.SKIPPED, OldVerdict.NOT_CHECKED, reason, reason)

    def short(self) -> str:
        """A cell's worth: `✓ new · old dead`, `new ✗`, `OLD STILL WORKS`, `unknown`..."""
        if self.alarm:
            return "OLD STILL WORKS"
        if self.new is NewVerdict.SKIPPED and self.old is OldVerdict.NOT_CHECKED:
            return "not verified"
        new = {NewVerdict.OK: "✓ new", NewVerdict.FAILED: "new ✗", NewVerdict.UNKNOWN: "new ?",
               NewVerdict.SKIPPED: "new –"}[self.new]
        old = {OldVerdict.REJECTED: "old dead", OldVerdict.UNKNOWN: "old ?",
               OldVerdict.NOT_CHECKED: "old –"}.get(self.old, "")
        if self.new is NewVerdict.UNKNOWN and self.old is OldVerdict.UNKNOWN:
            return "unknown"
        return f"{new} · {old}"

    def describe(self) -> str:
        """One line, with the reasons: for a detail pane, a log line, or the CLI."""
        new = f"new {self.new}" + (f" ({self.new_reason})" if self.new_reason else "")
        old_word = "STILL ACCEPTED" if self.alarm else str(self.old)
        old = f"old {old_word}" + (f" ({self.old_reason})" if self.old_reason else "")
        if self.new is NewVerdict.SKIPPED and self.old is OldVerdict.NOT_CHECKED and self.new_reason == self.old_reason:
            return f"not verified: {self.new_reason}"
        return f"{new} · {old}"

    def to_json(self) -> dict[str, Any]:
        return {"new": str(self.new), "new_reason": self.new_reason or None, "old": str(self.old),
                "old_reason": self.old_reason or None, "database": self.database,
                "new_checks": [c.to_json() for c in self.new_checks],
                "old_checks": [c.to_json() for c in self.old_checks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verification:
        def checks(items) -> tuple[Check, ...]:
            return tuple(Check(str(c["kind"]), Login(c["result"]), str(c.get("detail", ""))) for c in items or ())

        return cls(NewVerdict(data["new"]), OldVerdict(data["old"]), data.get("new_reason") or "",
                   data.get("old_reason") or "", data.get("database"), checks(data.get("new_checks")),
                   checks(data.get("old_checks")))


def summarize(verifications: Iterable[Verification | None]) -> dict[str, int]:
    """Counts for a summary line: verified, new ok/failed/unknown, old still-accepted/..., not verified."""
    out: dict[str, int] = {}

    def bump(k: str) -> None:
        out[k] = out.get(k, 0) + 1

    for v in verifications:
        if v is None:
            continue
        if v.new is NewVerdict.SKIPPED and v.old is OldVerdict.NOT_CHECKED:
            bump("not verified")
            continue
        if v.verified:
            bump("verified")
        bump(f"new {v.new}")
        bump(f"old {v.old}")
    return out


def summary_line(counts: dict[str, int]) -> str:
    """`verification: 3 verified · new ok 4 · OLD STILL ACCEPTED 1 · ...` (empty when nothing to say)."""
    if not counts:
        return ""
    parts = []
    if counts.get("old still-accepted"):
        parts.append(f"OLD PASSWORD STILL ACCEPTED on {counts['old still-accepted']}")
    order = ["verified", "new ok", "new failed", "new unknown", "new skipped", "old rejected", "old unknown",
             "old not-checked", "not verified"]
    parts += [f"{counts[k]} {k}" for k in order if counts.get(k)]
    return "verification: " + " · ".join(parts)


def login_uri(target: Target, host: str, database: str) -> str:
    """A libpq URI without a password (the password is passed apart), as Neon's strings are built."""
    return (f"postgresql://{quote(target.role_name, safe='')}@{host}/{quote(database, safe='')}"
            "?sslmode=require&channel_binding=require")


def where_to_verify(api_base_url: str, sim: Any = None, *, simulated: bool = False,
                    environ: dict[str, str] | None = None) -> tuple[Route | None, str | None]:
    """Where verification logs in: (route, None), or (None, why no login can be made here).

    A simulator with real PostgreSQL behind a router (`sim.postgres.route`): that route. A simulated account
    without one: nothing (never a fake success). An API on loopback is a simulator too: its connection
    strings name Neon-like hosts that must not be looked up on the internet, so without PGHOSTADDR/PGPORT
    there is nothing to log in to. Otherwise route None: libpq's own environment (PGHOSTADDR/PGPORT).
    """
    from urllib.parse import urlsplit

    from neon_tui.neon.client import _is_loopback

    pg = getattr(sim, "postgres", None) if sim is not None else None
    if pg is not None:
        return Route(*pg.route), None
    if simulated or sim is not None:
        return None, "no PostgreSQL here (simulated account)"
    host = urlsplit(api_base_url).hostname or ""
    if _is_loopback(host) and Route.from_env(environ) is None:
        return None, "the API is on this machine (a simulator) and PGHOSTADDR/PGPORT name no PostgreSQL"
    return None, None


class Verifier:
    """Logs in after a rotation. `login` is injectable (tests); the real one is `try_login`.

    `route` (None: libpq's own environment, PGHOSTADDR/PGPORT honoured) goes to every login.
    `unavailable`: a reason no login can be made here (e.g. a simulator without PostgreSQL): every
    verification is then "not verified" with it, and nothing is tried (never a fake success).
    Logins across all targets share `concurrency` slots.
    """

    def __init__(self, route: Route | None = None, login: LoginFn | None = None, concurrency: int = 4,
                 timeout: float = DEFAULT_TIMEOUT, unavailable: str | None = None,
                 recheck_delays: Sequence[float] = (1.0, 3.0)) -> None:
        self.route = route
        # An old password accepted right after the operations finished is checked again after these pauses
        # before it becomes an alarm: a compute that is still picking up its new configuration is not a
        # breach left open, but one that keeps accepting it over seconds is.
        self.recheck_delays = tuple(recheck_delays)
        self.login = login or _real_login
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.unavailable = unavailable
        self._slots: asyncio.Semaphore | None = None

    async def _try(self, kind: str, uri: Secret | str, password: Secret | None = None) -> Check:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            try:
                out = await self.login(uri, password, route=self.route, timeout=self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a login function must not raise; if it does, it proved nothing
                return Check(kind, Login.UNKNOWN, f"login error ({type(e).__name__})")
        return Check(kind, out.result, out.detail)

    def settled(self, target: Target) -> Verification | None:
        """The verdict that needs no login (no PostgreSQL here, no endpoint, no database), at once; None when
        there are logins to try. A cancel cannot change it, so the session records it without waiting."""
        if self.unavailable:
            return Verification.not_verified(self.unavailable)
        ep = target.connect_endpoint
        if ep is None or not target.connection_databases():
            why = "no endpoint" if ep is None else "no database on the branch"
            return Verification(NewVerdict.SKIPPED, OldVerdict.NOT_CHECKED, why, why)
        return None

    async def verify(self, target: Target, new_uris: Sequence[tuple[str, Secret]] | None,
                     old_passwords: Sequence[Secret] = (), *, database: str | None = None,
                     new_skipped: str | None = None, old_missing: str | None = None) -> Verification:
        """Verify one target.

        `new_uris`: (kind, connection string with the new password) pairs to log in with; None or empty
        with `new_skipped` saying why (password not held, ...). `old_passwords` are tried on the direct
        host. `old_missing` says why no old password is known (when there is none).
        """
        settled = self.settled(target)
        if settled is not None:
            return settled
        ep = target.connect_endpoint
        dbs = target.connection_databases()
        database = database or dbs[0].name
        new_secret = None
        new_jobs = []
        for kind, uri in new_uris or ():
            new_jobs.append(self._try(kind, uri))
        olds: list[Secret] = []
        for pw in old_passwords:
            if isinstance(pw, Secret) and pw and pw not in olds:
                olds.append(pw)
        if new_uris:
            new_secret = _password_of(new_uris[0][1])
        if new_secret is not None:
            olds = [pw for pw in olds if pw.reveal() != new_secret]  # the new one is not an "old" one
        direct = login_uri(target, ep.host, database)
        old_jobs = [self._try(f"old #{i}", direct, pw) for i, pw in enumerate(olds, 1)]
        results = await asyncio.gather(*new_jobs, *old_jobs)
        new_checks, old_checks = tuple(results[:len(new_jobs)]), list(results[len(new_jobs):])
        waited = 0.0
        for delay in self.recheck_delays:
            accepted = [i for i, c in enumerate(old_checks) if c.result is Login.OK]
            if not accepted:
                break
            await asyncio.sleep(delay)
            waited += delay
            again = await asyncio.gather(*(self._try(old_checks[i].kind, direct, olds[i]) for i in accepted))
            for i, check in zip(accepted, again):
                if check.result is Login.REJECTED:  # only a refusal clears a login; a timeout proves nothing
                    old_checks[i] = check
        old_checks = tuple(old_checks)

        if not new_checks:
            new, new_reason = NewVerdict.SKIPPED, new_skipped or "new password not held"
        elif all(c.result is Login.OK for c in new_checks):
            new, new_reason = NewVerdict.OK, ""
        elif any(c.result is Login.REJECTED for c in new_checks):
            bad = next(c for c in new_checks if c.result is Login.REJECTED)
            new, new_reason = NewVerdict.FAILED, f"{bad.kind}: {bad.detail}"
        else:
            odd = next(c for c in new_checks if c.result is not Login.OK)
            new, new_reason = NewVerdict.UNKNOWN, f"{odd.kind}: {odd.detail}"

        if not old_checks:
            old, old_reason = OldVerdict.NOT_CHECKED, old_missing or "no old password known"
        elif any(c.result is Login.OK for c in old_checks):
            old, old_reason = OldVerdict.STILL_ACCEPTED, (
                "an old password still logs in" + (f" ({waited:g}s after the first check)" if waited else ""))
        elif all(c.result is Login.REJECTED for c in old_checks):
            # A refusal means "dead" only if the same host let the new password in: a wrong route (a stray
            # PGHOSTADDR, another server) or a compute that kept its old configuration refuses everything.
            if any(c.kind == "direct" and c.result is Login.OK for c in new_checks):
                old, old_reason = OldVerdict.REJECTED, ""
            else:
                old, old_reason = OldVerdict.UNKNOWN, (
                    "refused, but the new password did not log in on the same host, so the refusal proves "
                    "nothing")
        else:
            odd = next(c for c in old_checks if c.result is not Login.REJECTED)
            old, old_reason = OldVerdict.UNKNOWN, f"{odd.kind}: {odd.detail}"
        return Verification(new, old, new_reason, old_reason, database, new_checks, old_checks)


async def _real_login(uri, password=None, *, route=None, timeout=DEFAULT_TIMEOUT) -> LoginOutcome:
    # Looked up at call time, so a test can stand in for the real driver with an ordinary monkeypatch.
    from neon_tui.rotation import logins

    return await logins.try_login(uri, password, route=route, timeout=timeout)


def _password_of(uri: Secret) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        pw = urlsplit(uri.reveal()).password
    except ValueError:
        return None
    return unquote(pw) if pw is not None else None


@dataclass(slots=True)
class OldPasswords:
    """Old passwords known for a run, held in memory only: per target, and leaked ones tried everywhere."""

    per_target: dict[tuple[str, str, str], list[Secret]] = field(default_factory=dict)
    leaked: list[Secret] = field(default_factory=list)

    def add(self, key: tuple[str, str, str], password: Secret) -> None:
        if not isinstance(password, Secret):
            raise TypeError("old passwords must be Secrets")
        got = self.per_target.setdefault(key, [])
        if password not in got:
            got.append(password)

    def for_target(self, key: tuple[str, str, str]) -> list[Secret]:
        out: list[Secret] = []
        for pw in [*self.per_target.get(key, ()), *self.leaked]:
            if pw not in out:
                out.append(pw)
        return out


__all__ = ["where_to_verify", "Check", "NewVerdict", "OldPasswords", "OldVerdict", "Verification", "Verifier", "WAKES_COMPUTES",
           "login_uri", "summarize", "summary_line"]
