"""IP Allow review and edit: what each project's allowlist lets in, what to fix, and applying a change.

Neon's IP Allow (`settings.allowed_ips = {ips, protected_branches_only}` on a project) limits which client
addresses may connect to the project's computes. An empty list means every address may connect; with
`protected_branches_only` the list applies to protected branches only and every other branch stays open.
The feature needs a paid plan (Neon's docs: Scale; Business and Enterprise before it); on other plans Neon
refuses to set a list. A change is a PATCH answered with operations; the list is in force once they finish.

No Textual here: the CLI (`neon-tui ipallow`) and the TUI (`IpAllowScreen`) both drive these functions.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from neon_tui.neon.errors import (
    LockedError,
    NeonError,
    OutcomeUnknownError,
    PermissionDeniedError,
)
from neon_tui.neon.models import TERMINAL_FAILED, Operation, Project

# Plans whose projects can have an allowlist (neon.com/docs/introduction/ip-allow: Scale; older pages add
# Business; Enterprise includes everything). Free and Launch cannot. Other names are "unknown": try and see.
IP_ALLOW_PLANS = frozenset({"scale", "business", "enterprise"})
NO_IP_ALLOW_PLANS = frozenset({"free", "launch"})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def plan_allows(plan: str | None) -> bool | None:
    """True/False when the plan is known to include IP Allow or not; None when it is not known."""
    base = (plan or "").strip().lower().split("_")[0]  # e.g. "free_v2", "launch_v3"
    if base in IP_ALLOW_PLANS:
        return True
    if base in NO_IP_ALLOW_PLANS:
        return False
    return None


# ---------------------------------------------------------------------------------------------- entries

@dataclass(frozen=True)
class AllowList:
    ips: tuple[str, ...]
    protected_branches_only: bool = False

    @classmethod
    def of(cls, project: Project) -> AllowList:
        return cls(tuple(project.allowed_ips), project.protected_branches_only)

    @property
    def open(self) -> bool:
        return not self.ips

    def to_json(self) -> dict[str, Any]:
        return {"ips": list(self.ips), "protected_branches_only": self.protected_branches_only}

    def describe(self) -> str:
        if not self.ips:
            return "open to every address (empty list)"
        scope = "protected branches only" if self.protected_branches_only else "all branches"
        return f"{', '.join(self.ips)} ({scope})"


@dataclass(frozen=True)
class EntryProblem:
    entry: str
    message: str

    def __str__(self) -> str:
        return f"{self.entry!r}: {self.message}"


def parse_entries(text: str) -> list[str]:
    """A comma (or whitespace) separated list as typed by a user; empty items are dropped."""
    return [p.strip() for p in text.replace("\n", ",").replace(" ", ",").split(",") if p.strip()]


def entry_range(entry: str) -> tuple[Address, Address]:
    """The first and last address an entry covers. Neon accepts one IPv4 or IPv6 address, a CIDR range
    (`203.0.113.0/24`, `2001:db8::/32`) or a dash range (`192.0.2.1-192.0.2.20`); ValueError says why not."""
    text = entry.strip()
    if not text:
        raise ValueError("empty entry")
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError("not a valid CIDR range (e.g. 203.0.113.0/24 or 2001:db8::/32)") from None
        return net[0], net[-1]
    if "-" in text:
        lo_s, hi_s = (p.strip() for p in text.split("-", 1))
        try:
            lo, hi = ipaddress.ip_address(lo_s), ipaddress.ip_address(hi_s)
        except ValueError:
            raise ValueError("not a valid address range (e.g. 192.0.2.1-192.0.2.20)") from None
        if lo.version != hi.version:
            raise ValueError("a range must not mix IPv4 and IPv6")
        if lo > hi:
            raise ValueError("the range starts after it ends")
        return lo, hi
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("not an IP address, CIDR range or address range") from None
    return addr, addr


def validate(entries: Iterable[str]) -> list[EntryProblem]:
    """One problem per entry Neon would refuse (and per duplicate)."""
    problems: list[EntryProblem] = []
    seen: set[str] = set()
    for entry in entries:
        try:
            entry_range(entry)
        except ValueError as e:
            problems.append(EntryProblem(entry, str(e)))
            continue
        if entry.strip() in seen:
            problems.append(EntryProblem(entry, "listed twice"))
        seen.add(entry.strip())
    return problems


def covers(entries: Iterable[str], addr: str) -> bool:
    """Does any valid entry let `addr` in?"""
    try:
        a = ipaddress.ip_address(addr.strip())
    except ValueError:
        return False
    for entry in entries:
        try:
            lo, hi = entry_range(entry)
        except ValueError:
            continue
        if lo.version == a.version and lo <= a <= hi:
            return True
    return False


# Addresses a client on the internet never has (RFC 1918, carrier-grade NAT, link-local, unique local).
# Not ipaddress's is_private: that also counts the documentation ranges (203.0.113.0/24 ...) as private.
_INTERNAL = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10"))


def _internal(addr: Address) -> bool:
    return any(addr.version == n.version and addr in n for n in _INTERNAL)


# Wider than this, per family, the list is worth a warning (a /8 of IPv4, a /32 of IPv6: more than any one
# organization's egress addresses).
WIDE = {4: 2 ** 24, 6: 2 ** 96}
FAMILY_SIZE = {4: 2 ** 32, 6: 2 ** 128}


def coverage(entries: Iterable[str]) -> dict[int, int]:
    """How many addresses the valid entries cover together, per IP version (overlaps counted once)."""
    spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for entry in entries:
        try:
            lo, hi = entry_range(entry)
        except ValueError:
            continue
        spans[lo.version].append((int(lo), int(hi)))
    out: dict[int, int] = {}
    for version, items in spans.items():
        total, end = 0, -1
        for lo, hi in sorted(items):
            if hi <= end:
                continue
            total += hi - max(lo, end + 1) + 1
            end = hi
        if items:
            out[version] = total
    return out


def breadth_notes(entries: Iterable[str]) -> list[tuple[str, bool]]:
    """(message, flag) for what the entries cover together: every address of a family (flag: the list restricts
    nothing for it), or more than a /8 (IPv4) or /32 (IPv6)."""
    entries = [e.strip() for e in entries]
    notes: list[tuple[str, bool]] = []
    for version, n in sorted(coverage(entries).items()):
        fam = f"IPv{version}"
        if n >= FAMILY_SIZE[version]:
            notes.append((f"together the entries cover every {fam} address: the list restricts nothing", True))
        elif n > WIDE[version]:
            share = n / FAMILY_SIZE[version]
            notes.append((f"together the entries cover {n:,} {fam} addresses ({share:.1%} of all), more than a "
                          f"{'/8' if version == 4 else '/32'}: is that really your own network?", False))
    return notes


def opens_access(after: AllowList) -> str | None:
    """Why a list lets every address in (an empty list; entries covering every address of a family), or None."""
    if not after.ips:
        return "an empty list opens the project to every address"
    for message, flag in breadth_notes(after.ips):
        if flag:
            return message
    if any("covers every address" in m for m, flag in entry_notes(after.ips) if flag):
        return "an entry covers every address: the list restricts nothing"
    return None


def entry_notes(entries: Iterable[str]) -> list[tuple[str, bool]]:
    """(message, flag) for entries that parse but look wrong; flag=True when it defeats the list."""
    notes: list[tuple[str, bool]] = []
    for entry in entries:
        text = entry.strip()
        try:
            lo, hi = entry_range(text)
        except ValueError:
            continue
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if net.prefixlen == 0:
                notes.append((f"{text} covers every address: the list restricts nothing", True))
                continue
            if str(net) != text and ipaddress.ip_interface(text).ip != net.network_address:
                notes.append((f"{text} has host bits set; Neon reads it as {net}", False))
        if lo.is_loopback:
            notes.append((f"{text} is a loopback address: it matches only connections from this machine "
                          "through a local proxy, never clients on the internet", False))
        elif _internal(lo) and _internal(hi):
            what = "a private address" if lo == hi else "a private range"
            notes.append((f"{text} is {what}: Neon sees clients' public addresses, so it never matches", False))
    return notes


# ---------------------------------------------------------------------------------------------- review

@dataclass(frozen=True)
class Finding:
    # flagged: open | protected_only_gap | protected_only_none | bad_entry | covers_all;
    # notes (flag False): odd_entry | protected_only
    kind: str
    message: str
    flag: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "flag": self.flag}


@dataclass
class ProjectReview:
    project_id: str
    name: str
    org_id: str | None
    plan: str | None
    current: AllowList
    findings: list[Finding] = field(default_factory=list)
    problem: str | None = None  # the branches could not be read: the protected-only check is incomplete

    @property
    def plan_allows(self) -> bool | None:
        return plan_allows(self.plan)

    @property
    def flagged(self) -> bool:
        return any(f.flag for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "project": self.name, "org_id": self.org_id, "plan": self.plan,
                "plan_allows_ip_allow": self.plan_allows, **self.current.to_json(),
                "findings": [f.to_json() for f in self.findings], "flagged": self.flagged,
                "problem": self.problem}


@dataclass(frozen=True)
class MyAddress:
    """The user's own address as Neon saw it, or as the user said it; addr None when unknown."""
    addr: str | None
    source: str

    def describe(self) -> str:
        return f"{self.addr} ({self.source})" if self.addr else f"unknown ({self.source})"

    def to_json(self) -> dict[str, Any]:
        return {"addr": self.addr, "source": self.source}


@dataclass
class Review:
    projects: list[ProjectReview]
    problems: list[str] = field(default_factory=list)
    exposed_known: bool = False
    requests: int = 0
    seconds: float = 0.0

    @property
    def flagged(self) -> list[ProjectReview]:
        return [p for p in self.projects if p.flagged]

    @property
    def complete(self) -> bool:
        return not self.problems and all(p.problem is None for p in self.projects)


def _branch_label(name: str | None, branch_id: str) -> str:
    return f"{name} ({branch_id})" if name else branch_id


async def review_project(client, project: Project, *, plan: str | None = None,
                         exposed: Iterable[tuple[str, str, str]] = ()) -> ProjectReview:
    """One project's findings. Reads the branches only when the list covers protected branches only."""
    current = AllowList.of(project)
    r = ProjectReview(project.id, project.name, project.org_id, plan, current)
    mine: dict[str, list[str]] = {}
    for p_id, b_id, role in exposed:
        if p_id == project.id:
            mine.setdefault(b_id, []).append(role)
    if current.open:
        extra = ""
        if r.plan_allows is False:
            extra = f" (IP Allow needs the Scale plan; this organization is on {plan})"
        r.findings.append(Finding("open", "open to every address: the allowlist is empty" + extra))
        return r
    for problem in validate(current.ips):
        r.findings.append(Finding("bad_entry", f"entry {problem}"))
    for message, flag in entry_notes(current.ips):
        r.findings.append(Finding("covers_all" if flag else "odd_entry", message, flag))
    if not any(f.kind == "covers_all" for f in r.findings):  # entries that together cover everything, or a lot
        for message, flag in breadth_notes(current.ips):
            r.findings.append(Finding("covers_all" if flag else "wide", message, flag))
    if current.protected_branches_only:
        try:
            branches = await client.list_branches(project.id)
        except NeonError as e:
            r.problem = f"branches could not be read ({e.message})"
            return r
        protected = [b for b in branches if b.protected]
        if not protected:
            r.findings.append(Finding("protected_only_none", "covers protected branches only, and no branch is "
                                      "protected: the list applies nowhere"))
        for b in branches:
            roles = mine.get(b.id)
            if roles and not b.protected:
                r.findings.append(Finding(
                    "protected_only_gap",
                    f"covers protected branches only while unprotected branch {_branch_label(b.name, b.id)} still "
                    f"holds an exposed password ({', '.join(sorted(roles))})"))
        if not mine and protected:
            r.findings.append(Finding("protected_only", f"covers protected branches only: "
                                      f"{len(branches) - len(protected)} other branch(es) accept every address",
                                      flag=False))
    return r


async def review(client, projects: Iterable[Project], *, exposed: Iterable[Iterable[str]] | None = None,
                 plans: dict[str, str] | None = None, concurrency: int = 4) -> Review:
    """Review every project. `exposed` is the exposure set ([project, branch, role] ids) or None when no
    scan is known; `plans` maps org id to plan (read from the organizations list when None)."""
    started = time.monotonic()
    sent = getattr(client, "requests_sent", 0)
    projects = list(projects)
    out = Review([])
    if plans is None:
        try:
            plans = {o.id: o.plan for o in await client.list_organizations()}
        except NeonError as e:
            plans = {}
            out.problems.append(f"organizations could not be read, plans unknown ({e.message})")
    exposed_set = {tuple(str(x) for x in e) for e in exposed} if exposed is not None else set()
    out.exposed_known = exposed is not None
    sem = asyncio.Semaphore(concurrency)

    async def one(p: Project) -> ProjectReview:
        async with sem:
            return await review_project(client, p, plan=plans.get(p.org_id or ""),
                                        exposed=exposed_set)  # type: ignore[arg-type]

    out.projects = list(await asyncio.gather(*(one(p) for p in projects)))
    out.requests = getattr(client, "requests_sent", 0) - sent
    out.seconds = time.monotonic() - started
    return out


# ---------------------------------------------------------------------------------------------- own address

def _first_addr(text: str) -> str | None:
    for part in (text or "").split(","):
        part = part.strip()
        try:
            return str(ipaddress.ip_address(part))
        except ValueError:
            continue
    return None


async def find_my_address(client, *, given: str | None = None, org_ids: Iterable[str] = ()) -> MyAddress:
    """The address to keep in the list. `given` (--my-ip) wins. Else the address Neon last saw the key in
    use come from (`last_used_from_addr`; when it lists several, the first is the client and the rest
    proxies), the key in use as `keys.list_keys` establishes it. Never another key's address (after a leak the
    most recently used key may be the attacker's): when the key in use is unknown, the address is unknown.
    No external service is ever asked. (`org_ids` is kept for callers; list_keys finds the key lists.)"""
    from neon_tui.incident.keys import KeyError_, list_keys

    if given:
        addr = _first_addr(given)
        if addr is None:
            raise ValueError(f"--my-ip {given!r} is not an IP address")
        return MyAddress(addr, "given with --my-ip")
    try:
        listing = await list_keys(client, host=str(getattr(client, "base_url", "")) or None)
    except (NeonError, KeyError_) as e:
        return MyAddress(None, f"the key in use could not be established ({getattr(e, 'message', e)}); pass --my-ip")
    if listing.in_use_id is None:
        why = "; ".join(listing.problems) or "no key's last use matched this session"
        return MyAddress(None, f"the key in use is unknown ({why}); pass --my-ip")
    row = listing.row(listing.in_use_id)
    addr = _first_addr(row.last_used_from_addr) if row is not None else None
    if row is None or addr is None:
        return MyAddress(None, f"Neon lists no last-used address for the key in use ({listing.in_use_id}); "
                               "pass --my-ip")
    return MyAddress(addr, f"where Neon last saw the key in use, {row.name!r} ({row.id}), used from")


# ---------------------------------------------------------------------------------------------- change

@dataclass
class Change:
    project_id: str
    name: str
    before: AllowList
    after: AllowList
    plan: str | None = None
    my_addr: MyAddress | None = None
    problems: list[EntryProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def added(self) -> list[str]:
        return [i for i in self.after.ips if i not in self.before.ips]

    @property
    def removed(self) -> list[str]:
        return [i for i in self.before.ips if i not in self.after.ips]

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def excludes_me(self) -> bool:
        return any(w.startswith("YOUR ADDRESS") for w in self.warnings)

    @property
    def opens(self) -> str | None:
        """Why this change lets every address in, when it does and the list did not already."""
        return opens_access(self.after) if self.changed else None

    @property
    def needs_typed(self) -> bool:
        """The project's name must be typed (not y/N): it excludes the user's own address, or opens access."""
        return self.excludes_me or self.opens is not None

    def lines(self) -> list[str]:
        """The review, as shown before asking for confirmation."""
        out = [f"project {self.name} ({self.project_id})",
               f"  now:   {self.before.describe()}",
               f"  after: {self.after.describe()}"]
        if self.added:
            out.append(f"  + {', '.join(self.added)}")
        if self.removed:
            out.append(f"  - {', '.join(self.removed)}")
        if self.before.protected_branches_only != self.after.protected_branches_only:
            out.append("  scope: " + ("protected branches only" if self.after.protected_branches_only
                                      else "all branches"))
        if not self.changed:
            out.append("  no change")
        out.append(f"  your address: {self.my_addr.describe() if self.my_addr else 'unknown'}")
        out.extend(f"  invalid: {p}" for p in self.problems)
        out.extend(f"  warning: {w}" for w in self.warnings)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "project": self.name, "before": self.before.to_json(),
                "after": self.after.to_json(), "added": self.added, "removed": self.removed,
                "my_addr": self.my_addr.to_json() if self.my_addr else None,
                "invalid": [str(p) for p in self.problems], "warnings": self.warnings}


def plan_change(current: AllowList, new: AllowList, my_addr: MyAddress | None, *, project_id: str = "",
                name: str = "", plan: str | None = None) -> Change:
    """Review a change: entries Neon would refuse, and warnings (above all: the user's own address would
    be excluded)."""
    ips = tuple(i.strip() for i in new.ips)
    new = AllowList(ips, new.protected_branches_only)
    c = Change(project_id, name, current, new, plan, my_addr, validate(ips))
    if plan_allows(plan) is False and (ips or new.protected_branches_only):
        c.warnings.append(f"this organization is on the {plan} plan: Neon refuses IP Allow below the Scale plan")
    if not ips:
        c.warnings.append("an empty list opens the project to every address")
    else:
        scope = " on protected branches" if new.protected_branches_only else ""
        if my_addr is None or my_addr.addr is None:
            c.warnings.append("your own address is unknown (pass --my-ip): check that you are not locking "
                              "yourself out")
        elif not covers(ips, my_addr.addr):
            had = covers(current.ips, my_addr.addr) or current.open
            c.warnings.append(f"YOUR ADDRESS {my_addr.addr} would be excluded{scope}"
                              + (": you can connect now and would lose access" if had else ""))
        if new.protected_branches_only:
            c.warnings.append("unprotected branches stay open to every address")
        for message, flag in entry_notes(ips):
            if flag:
                c.warnings.append(message)
        if not any("covers every address" in w for w in c.warnings):
            c.warnings.extend(message for message, _flag in breadth_notes(ips))
    return c


# ---------------------------------------------------------------------------------------------- apply

class IpAllowError(Exception):
    """A change that did not apply; `kind` is "plan", "locked", "invalid", "operations" or "api"."""

    def __init__(self, message: str, kind: str = "api") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass
class Applied:
    project: Project
    operations: list[Operation]
    request_id: str | None
    seconds: float
    waited_for_lock: float = 0.0


async def wait_operations(client, project_id: str, op_ids: list[str], *, deadline: float,
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                          poll_min: float = 0.2, poll_max: float = 2.0) -> list[Operation]:
    """Poll (one list request per round) until every operation is terminal; IpAllowError on a failed one
    or at the deadline (time.monotonic())."""
    if not op_ids:
        return []
    delay = poll_min
    while True:
        ops, _ = await client.list_operations(project_id, limit=max(10, 2 * len(op_ids) + 4))
        by_id = {o.id: o for o in ops}
        for missing in [i for i in op_ids if i not in by_id]:
            by_id[missing] = await client.get_operation(project_id, missing)
        mine = [by_id[i] for i in op_ids]
        bad = [o for o in mine if o.status in TERMINAL_FAILED]
        if bad:
            raise IpAllowError(f"operation {bad[0].action} {bad[0].status}: {bad[0].error or 'no error text'}",
                               "operations")
        if all(o.done for o in mine):
            return mine
        if time.monotonic() + delay > deadline:
            left = sum(1 for o in mine if not o.done)
            raise IpAllowError(f"{left} operation(s) still running at the deadline", "operations")
        await sleep(delay)
        delay = min(delay * 2, poll_max)


async def wait_idle(client, project_id: str, *, deadline: float,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, poll: float = 0.5) -> None:
    """Wait until the project has no running operation (what a 423 is about); IpAllowError at the deadline."""
    while True:
        ops, _ = await client.list_operations(project_id, limit=50)
        if all(o.done for o in ops):
            return
        if time.monotonic() + poll > deadline:
            raise IpAllowError("the project stayed busy with other operations until the deadline", "locked")
        await sleep(poll)


def _last_request_id(client, method: str) -> str | None:
    for rec in reversed(getattr(client, "history", ())):
        if rec.method == method:
            return rec.request_id
    return None


def _plan_refusal(e: NeonError, plan: str | None) -> bool:
    return isinstance(e, PermissionDeniedError) and ("plan" in e.message.lower() or plan_allows(plan) is False)


async def apply(client, change: Change, journal=None, *, timeout: float = 120.0,
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                on_state: Callable[[str], None] | None = None) -> Applied:
    """PATCH the project with both fields, wait for the operations, read the list back.

    423 (the project is busy): wait until its operations finish, then send again, within `timeout`.
    A lost answer: read the project; if the new list is there it landed, else it is sent again (setting a
    list is idempotent). Journal (when given): ipallow_changed, then ipallow_applied or ipallow_failed.
    Raises IpAllowError with a one-line reason."""
    def state(text: str) -> None:
        if on_state is not None:
            on_state(text)

    async def failed(reason: str, kind: str) -> IpAllowError:
        if journal is not None:
            await journal.awrite("ipallow_failed", project_id=change.project_id, reason=reason)
        return IpAllowError(reason, kind)

    if change.problems:
        raise await failed("invalid entries: " + "; ".join(str(p) for p in change.problems), "invalid")
    started = time.monotonic()
    deadline = started + timeout
    after = change.after
    locked_for = 0.0
    project: Project | None = None
    ops: list[Operation] = []
    request_id: str | None = None
    while project is None:
        state("sending the new list")
        try:
            project, ops = await client.set_allowed_ips(change.project_id, list(after.ips),
                                                        after.protected_branches_only)
            request_id = _last_request_id(client, "PATCH")
        except LockedError as e:
            if time.monotonic() > deadline:
                raise await failed(f"the project stayed busy for {timeout:.0f}s ({e.message})", "locked") from None
            state("project busy (423): waiting for its running operations")
            t = time.monotonic()
            try:
                await wait_idle(client, change.project_id, deadline=deadline, sleep=sleep)
            except IpAllowError as w:
                raise await failed(w.message, w.kind) from None
            except NeonError as w:
                raise await failed(f"operations could not be read ({w.message})", "api") from None
            locked_for += time.monotonic() - t
        except OutcomeUnknownError as e:
            state("answer lost: reading the project back")
            try:
                now = await client.get_project(change.project_id)
            except NeonError as w:
                raise await failed(f"answer lost ({e.message}) and the project could not be read ({w.message})",
                                   "api") from None
            if AllowList.of(now) == after:
                project, ops = now, []
                request_id = e.request_id
            elif time.monotonic() > deadline:
                raise await failed(f"answer lost and the change did not land ({e.message})", "api") from None
        except NeonError as e:
            if _plan_refusal(e, change.plan):
                raise await failed(f"IP Allow needs a paid plan (Scale); Neon refused: {e.message}", "plan") from None
            raise await failed(str(e), "api") from None
    if journal is not None:
        await journal.awrite("ipallow_changed", project_id=change.project_id, before=change.before.to_json(),
                             after=after.to_json(), operations=[o.id for o in ops], request_id=request_id)
    state(f"waiting for {len(ops)} operation(s)" if ops else "checking the project")
    try:
        final = await wait_operations(client, change.project_id, [o.id for o in ops], deadline=deadline, sleep=sleep)
        if not ops:
            await wait_idle(client, change.project_id, deadline=deadline, sleep=sleep)
        check = await client.get_project(change.project_id)
    except IpAllowError as e:
        raise await failed(e.message, e.kind) from None
    except NeonError as e:
        raise await failed(f"the change was sent but could not be confirmed ({e.message})", "api") from None
    if AllowList.of(check) != after:
        raise await failed(f"Neon now reports {AllowList.of(check).describe()}, not the new list", "api")
    if journal is not None:
        await journal.awrite("ipallow_applied", project_id=change.project_id, operations=[o.id for o in final])
    state("applied")
    return Applied(check, final, request_id, time.monotonic() - started, locked_for)


# ---------------------------------------------------------------------------------------------- journals

def open_journal(client, *, account: str | None, key_kind: str | None, directory: Path | None = None):
    """A new "ipallow" action journal."""
    from neon_tui.incident.actions import create_action_journal

    return create_action_journal("ipallow", host=client.base_url, account=account, key_kind=key_kind,
                                 directory=directory)


async def journal_reviewed(journal, projects: Iterable[ProjectReview]) -> None:
    """One ipallow_reviewed per project, each with review_projects: how many projects this review covered
    (the checklist's total: a change to one project is not a review of the others)."""
    projects = list(projects)
    for p in projects:
        await journal.awrite("ipallow_reviewed", project_id=p.project_id,
                             findings=[f.to_json() for f in p.findings], review_projects=len(projects))


@dataclass(frozen=True)
class ExposureSet:
    exposed: frozenset[tuple[str, str, str]]
    source: str      # the journal's id
    scanned_at: str | None


def latest_exposure(directory: Path | None = None, *, host: str | None = None, account: str | None = None,
                    not_before=None) -> ExposureSet | None:
    """The newest journaled exposure scan (kind "exposure", event exposure_scanned) of this API host and
    account (a journal naming no account counts), or None."""
    from neon_tui.incident.journals import exposure_journals

    for log in reversed(exposure_journals(directory, host=host, account=account, not_before=not_before)):
        scans = log.events("exposure_scanned")
        if not scans:
            continue
        rec = scans[-1]
        items = rec.get("exposed") or []
        exposed = frozenset(tuple(str(x) for x in e) for e in items if isinstance(e, list) and len(e) == 3)
        return ExposureSet(exposed, log.id, rec.get("t"))  # type: ignore[arg-type]
    return None
