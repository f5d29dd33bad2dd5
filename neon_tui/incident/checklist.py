"""Neon's breach checklist (faq-rotate-after-breach), each step's live state, from the journals and the account.

`checklist(runs, actions)` derives every step from what was journaled, never from ticks; `confirm(...)`
(with a client) checks a few facts against the account cheaply: revoked keys are gone from the key list,
rotated roles changed after the leak. Each step names the view that does it (the TUI opens it on enter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neon_tui.incident.actions import ActionLog
from neon_tui.incident.journals import RunLog
from neon_tui.incident.report import Report, build_report

TODO, IN_PROGRESS, DONE, ATTENTION = "todo", "in progress", "done", "attention"
GLYPHS = {TODO: "○", IN_PROGRESS: "◐", DONE: "●", ATTENTION: "!"}
SHORT = {"exposed": "Exposed roles found", "rotate": "Passwords rotated and verified",
         "deliver": "Stored copies replaced", "keys": "API keys rotated, old ones dead",
         "ipallow": "IP allow reviewed", "audit": "Unknown roles handled", "report": "Report written"}


@dataclass
class Step:
    id: str
    title: str
    state: str
    figure: str
    view: str
    details: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        return SHORT.get(self.id, self.title)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "step": self.short, "title": self.title, "state": self.state, "figure": self.figure, "view": self.view,
                "details": list(self.details)}


def _hm(t: str | None) -> str:
    """"2026-11-30T16:02:11Z" -> "16:02" (the checklist's figures are short; the report has full times)."""
    return t[11:16] if t and len(t) >= 16 else "?"


def _exposed(r: Report, actions: list[ActionLog]) -> Step:
    ex, c = r.exposure, r.counts
    title = "Find every exposed role (every project, branch and role the leak reached)"
    if not ex["scans"]:
        if r.targets:
            return Step("exposed", title, IN_PROGRESS, f"no exposure scan; {c['targets']} target(s) chosen by hand",
                        "leak")
        return Step("exposed", title, TODO, "no exposure scan yet (L loads the leak)", "leak")
    figure = f"{c['exposed_found']} exposed found {_hm(ex['last_scan'])} · {c['unchecked']} unchecked"
    state = ATTENTION if c["unchecked"] else DONE
    return Step("exposed", title, state, figure, "leak", [f"not checked: {u}" for u in ex["unchecked"]])


def _rotated(r: Report) -> Step:
    title = "Reset the password of each exposed role, on every branch, and prove the old one dead"
    c = r.counts
    total = c["exposed_found"] or c["targets"]
    if total == 0:
        return Step("rotate", title, TODO, "nothing to rotate yet", "run")
    rotated = total - c["still_exposed"] if c["exposed_found"] else c["rotated"]
    verified = c["verified"]
    figure = f"rotated {rotated}/{total} · verified {verified}/{total} old dead"
    problems = c["failed"] + c["unknown"] + c["old_still_accepted"]
    if c["old_still_accepted"]:
        figure += f" · {c['old_still_accepted']} old still accepted"
    if c["failed"] or c["unknown"]:
        figure += f" · {c['failed']} failed, {c['unknown']} unknown"
    if problems:
        state = ATTENTION
    elif rotated >= total and verified >= total:
        state = DONE
    elif rotated >= total:
        state = IN_PROGRESS  # rotated, not all proven dead (verification off or still running)
    else:
        state = IN_PROGRESS if (rotated or c["targets"]) else TODO
    details = [f"{row.label}: {row.state}" + (f" ({row.reason})" if row.reason else "")
               for row in r.targets if row.target and row.state != "delivered"]
    return Step("rotate", title, state, figure, "run", details)


def _delivered(r: Report) -> Step:
    title = "Replace every stored copy of the connection strings (platforms, CI, secret managers, .env)"
    rows = [row for row in r.targets if row.target]
    sinks = sorted({s for row in rows for s in row.delivered} | {s for row in rows for s in row.failed_sinks})
    failed = sorted({s for row in rows for s in row.failed_sinks})
    live = [row for row in rows if row.state in ("rotated", "delivered", "unconfirmed")]
    if not live:
        return Step("deliver", title, TODO, "no new password yet", "deliver")
    figure = f"stored copies: {len(sinks)} sink(s), {len(failed)} failed"
    undelivered = [row for row in live if row.state != "delivered"]
    if failed:
        state = ATTENTION
    elif undelivered:
        state = IN_PROGRESS
        figure += f" · {len(undelivered)} password(s) not at every sink"
    else:
        state = DONE
    return Step("deliver", title, state, figure, "deliver",
                [f"{row.label}: {s} failed ({why})" for row in rows for s, why in row.failed_sinks.items()])


def _keys(r: Report, actions: list[ActionLog]) -> Step:
    title = "Revoke the API keys that may have leaked and create new ones"
    k = r.keys
    if not any(a.kind == "keys" for a in actions):
        return Step("keys", title, TODO, "API keys not rotated yet", "keys")
    created = k["created"]
    old_revoked = [x for x in k["revoked"] if x.get("which") in ("old", None)]
    dead = {str(x["key_id"]): x for x in k["dead"]}
    parts = []
    if created:
        parts.append(f"API key rotated {_hm(created[-1]['t'])}")
    else:
        parts.append("no new key yet")
    for x in old_revoked:
        d = dead.get(str(x["key_id"]))
        parts.append(f"old key {d['status']}" if d else f"old key {x['key_id']} revoked, not confirmed dead")
    from neon_tui.incident.report import key_states

    failed_now = sorted(kid for kid, st in key_states(k).items() if st == "failed")  # latest event per key
    if failed_now:
        parts.append(f"{len(failed_now)} revoke(s) failed")
    damaged = [p for p in r.problems if "has no valid key_id" in p]
    if damaged:
        parts.append(f"{len(damaged)} damaged key record(s)")
    if failed_now or damaged or any(x["why"] != "revoked, not yet confirmed dead" for x in k["still_live"]):
        state = ATTENTION
    elif created and old_revoked and not k["still_live"]:
        state = DONE
    else:
        state = IN_PROGRESS
    return Step("keys", title, state, ", ".join(parts), "keys",
                [f"API key {x['key_id']}: {x['why']}" for x in k["still_live"]] + damaged)


RISKY_IPALLOW = frozenset({"protected_only_gap", "bad_entry", "covers_all"})


def _ipallow(r: Report, actions: list[ActionLog], projects: int | None) -> Step:
    title = "Review the IP Allow list of each project and tighten it"
    if not any(a.kind == "ipallow" for a in actions):
        return Step("ipallow", title, TODO, "IP allow not reviewed yet", "ipallow")
    ip = r.ipallow
    # Only a review reviews: a change to one project says nothing of the others, and does not clear what a
    # review found unless a later review of that project shows it gone.
    newest: dict[str, dict[str, Any]] = {}
    for x in sorted(ip["reviewed"], key=lambda x: x["t"] or ""):
        newest[str(x["project_id"])] = x
    reviewed = sorted(newest)
    # Reviewing is the step: an empty list the user has seen (the default, and all a free plan allows) is
    # counted, not an alarm. Attention is for what the review showed to be wrong and is still unchanged: an
    # exposed password on a branch the list does not cover, a bad entry, an entry that covers every address.
    def kinds(x: dict[str, Any]) -> set[str]:
        return {str(f.get("kind")) if isinstance(f, dict) else "" for f in x.get("findings") or []}

    open_ = sorted(p for p, x in newest.items() if kinds(x) & RISKY_IPALLOW)
    # "open" is a fact, not an alarm: a later change that gave the project a list (its journaled "after") ends it
    closed_later = {str(c["project_id"]) for c in ip["changed"]
                    if c.get("after") not in ("?", "(open to all)") and str(c["project_id"]) in newest
                    and (c["t"] or "") > (newest[str(c["project_id"])]["t"] or "")}
    open_to_all = sorted(p for p, x in newest.items() if "open" in kinds(x) and p not in closed_later)
    # The total: the widest review journaled (it names how many projects it covered), else the account's or
    # the exposure scan's project count; unknown otherwise (then the step cannot be done).
    covered = [x["review_projects"] for x in ip["reviewed"] if isinstance(x.get("review_projects"), int)]
    total = projects if projects else (max(covered) if covered else None)
    if total is not None and covered:
        total = max(total, max(covered))
    figure = (f"IP allow: {len(reviewed)} of {total} project(s) reviewed" if total is not None
              else f"IP allow: {len(reviewed)} project(s) reviewed, total unknown (r in the IP allow view reviews all)")
    if open_to_all:
        figure += f", {len(open_to_all)} open to every address"
    if open_:
        figure += f", {len(open_)} with risky findings unchanged"
    if ip["failed"]:
        figure += f", {len(ip['failed'])} change(s) failed"
    if ip["failed"] or open_:
        state = ATTENTION
    elif total is not None and reviewed and len(reviewed) >= total:
        state = DONE
    else:
        state = IN_PROGRESS
    return Step("ipallow", title, state, figure, "ipallow",
                [f"{p}: {f.get('message', f) if isinstance(f, dict) else f}" for p in open_
                 for f in newest[p]["findings"] if not isinstance(f, dict) or f.get("kind") in RISKY_IPALLOW])


def _roles(r: Report, actions: list[ActionLog]) -> Step:
    title = "Audit the Postgres roles you do not recognize and drop the ones that should not exist"
    if not any(a.kind == "roles" for a in actions):
        return Step("audit", title, TODO, "roles not audited yet", "audit")
    from neon_tui.incident.report import role_decisions

    ro = r.roles
    latest = role_decisions(ro)  # the latest decision per role: a later drop clears an earlier failure
    audit = ro["audits"][-1] if ro["audits"] else None
    failed = sorted(t for t, d in latest.items() if d["decision"] == "failed")
    if audit is not None and "flagged_targets" in audit:
        # Each flagged role needs its own decision: dropped or kept (roles dropped before this audit are gone
        # from it; a decision on another role does not count).
        wanted = list(audit["flagged_targets"])
        flagged = len(wanted)
        undecided = [t for t in wanted if latest.get(t, {}).get("decision") not in ("dropped", "kept")]
        dropped = sum(1 for d in latest.values() if d["decision"] == "dropped")
        kept = sum(1 for d in latest.values() if d["decision"] == "kept")
    else:  # an audit journaled without its targets: distinct decided roles against the count
        flagged = audit["flagged"] if audit else 0
        dropped = sum(1 for d in latest.values() if d["decision"] == "dropped")
        kept = sum(1 for d in latest.values() if d["decision"] == "kept")
        undecided = [] if dropped + kept >= flagged else [f"{flagged - dropped - kept} flagged role(s)"]
    figure = f"roles: {flagged} flagged, {dropped} dropped, {kept} kept"
    if failed:
        figure += f", {len(failed)} drop(s) failed"
        state = ATTENTION
    elif audit is not None and not undecided:
        state = DONE
    else:
        state = IN_PROGRESS
    if audit is not None and undecided and "flagged_targets" in audit:
        figure += f", {len(undecided)} undecided"
    details = [f"{t}: {latest[t].get('reason')}" for t in failed]
    details += [f"{t}: flagged, not dropped or kept yet" for t in undecided if "/" in t]
    return Step("audit", title, state, figure, "audit", details)


def _report(actions: list[ActionLog], runs: list[RunLog]) -> Step:
    title = "Write the incident report"
    written = [(str(r.get("t", "")), r) for a in actions if a.kind == "report" for r in a.events("report_written")]
    if not written:
        return Step("report", title, TODO, "report not written yet (w writes it)", "report")
    t, rec = max(written, key=lambda x: x[0])
    # Anything journaled after the report makes it stale.
    last = max([str(rr.get("t", "")) for run in runs for rr in run.records]
               + [str(rr.get("t", "")) for a in actions if a.kind != "report" for rr in a.records] + [""])
    from neon_tui.incident.report import _t

    if last > t:
        return Step("report", title, IN_PROGRESS, f"report written {_hm(_t(t))}, journals changed since", "report",
                    [str(rec.get("path"))])
    return Step("report", title, DONE, f"report written {_hm(_t(t))}", "report", [str(rec.get("path"))])


def checklist(runs: list[RunLog], actions: list[ActionLog], account: dict[str, Any] | None = None) -> list[Step]:
    """The FAQ's steps with their live state. `account` (from `confirm`) adds what the account says."""
    r = build_report(runs, actions)
    projects = None
    for a in actions:
        if a.kind == "exposure":
            for rec in a.events("exposure_scanned"):
                counts = rec.get("counts") or {}
                if isinstance(counts.get("projects"), int):
                    projects = counts["projects"]
    if account and isinstance(account.get("projects"), int):
        projects = account["projects"]
    steps = [_exposed(r, actions), _rotated(r), _delivered(r), _keys(r, actions),
             _ipallow(r, actions, projects), _roles(r, actions), _report(actions, runs)]
    if account:
        _apply_account(steps, account)
    return steps


def _apply_account(steps: list[Step], account: dict[str, Any]) -> None:
    by_id = {s.id: s for s in steps}
    live = account.get("revoked_still_listed") or []
    if live and "keys" in by_id:
        s = by_id["keys"]
        s.state = ATTENTION
        s.figure += f" · account still lists revoked key(s) {', '.join(str(k) for k in live)}"
    stale = account.get("not_changed_since_leak") or []
    if stale and "rotate" in by_id:
        s = by_id["rotate"]
        s.state = ATTENTION
        s.figure += f" · {len(stale)} role(s) unchanged since the leak"
        s.details += [f"{x}: password not changed since the leak (account)" for x in stale]


async def confirm(client, runs: list[RunLog], actions: list[ActionLog], *, max_branches: int = 50) -> dict[str, Any]:
    """What the account says, cheaply: one key list (are the revoked keys gone?) and one role list per branch
    of the rotated targets, up to `max_branches` (did each exposed role change after the leak?)."""
    from neon_tui.neon.errors import NeonError
    from neon_tui.neon.models import parse_time

    out: dict[str, Any] = {"requests": 0}
    before = getattr(client, "requests_sent", 0)
    r = build_report(runs, actions)
    revoked = {str(x["key_id"]) for x in r.keys["revoked"]}
    if revoked:
        try:
            listed = {str(k.id) for k in await client.list_api_keys() if not k.revoked}
            out["revoked_still_listed"] = sorted(revoked & listed)
        except NeonError:
            out["keys_unreadable"] = True
    leaked = r.leak_window["start"]
    if leaked:
        start = parse_time(leaked)
        rows = [row for row in r.targets if row.target and row.state in ("rotated", "delivered", "unconfirmed")]
        branches = sorted({(row.target[0], row.target[1]) for row in rows})[:max_branches]
        stale: list[str] = []
        for pid, bid in branches:
            try:
                roles = {x.name: x for x in await client.list_roles(pid, bid)}
            except NeonError:
                continue
            for row in rows:
                if (row.target[0], row.target[1]) == (pid, bid):
                    role = roles.get(row.target[2])
                    if role is not None and role.updated_at is not None and start and role.updated_at <= start:
                        stale.append(row.label)
        out["not_changed_since_leak"] = sorted(stale)
    out["requests"] = getattr(client, "requests_sent", 0) - before
    return out
