"""The incident report: what happened, when, with which evidence, and what is still open; never a secret.

`build_report(runs, actions, since=None)` reads run journals (journals.RunLog) and action journals
(actions.ActionLog) into a `Report`; `render_markdown` and `to_json` write it. Everything is sorted so the
same journals always give the same text (golden tests). Both outputs pass `guard`, which refuses a Secret,
a secret-shaped field name, a Neon API key or a connection string with a password, whatever put it there.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from neon_tui.incident.actions import ActionLog
from neon_tui.incident.exposure_log import TimeError, iso, parse_when
from neon_tui.incident.journals import RunLog
from neon_tui.neon.secret import Secret

ROTATED_STATES = ("rotated", "delivered", "unconfirmed")  # the new password is live (old one replaced)
_SECRET_FIELDS = ("password", "uri", "key", "api_key", "connection_string", "direct", "pooled", "value",
                  "token", "secret")
_NAPI = re.compile(r"napi_[A-Za-z0-9]")
_URI_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/@:]+:[^\s/@]+@", re.I)


class ReportError(Exception):
    """The report would carry a secret (or something shaped like one): refused, nothing written."""

    title = "Report"


def guard(value: Any, where: str = "report") -> Any:
    """Refuse anything secret-shaped anywhere in `value`; returns it unchanged otherwise."""
    if isinstance(value, Secret):
        raise ReportError(f"refusing to put a secret in the {where}")
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).lower() in _SECRET_FIELDS:
                raise ReportError(f"refusing to put field {k!r} in the {where}")
            guard(v, where)
    elif isinstance(value, (list, tuple)):
        for v in value:
            guard(v, where)
    elif isinstance(value, str):
        if _NAPI.search(value):
            raise ReportError(f"refusing to put something shaped like a Neon API key in the {where}")
        if _URI_WITH_PASSWORD.search(value):
            raise ReportError(f"refusing to put a connection string with a password in the {where}")
    return value


def _t(value: Any) -> str:
    """A journal time as "2026-11-30T16:02:11Z" (UTC, seconds); "" when absent or unreadable."""
    try:
        return iso(parse_when(str(value))) if value else ""
    except TimeError:
        return ""


def _label(target: Any) -> str:
    if isinstance(target, (list, tuple)):
        return "/".join(str(x) for x in target if x is not None) or "(the account)"
    return str(target)


@dataclass
class TargetRow:
    run: str
    target: list[str]
    label: str
    state: str
    reason: str | None
    attempts: int
    operations: list[str]
    request_ids: list[str]
    new_login: str | None      # verification: the new password ("ok", "failed", ...) or None (not verified)
    old_login: str | None      # verification: the old ones ("rejected", "still-accepted", ...)
    delivered: list[str]
    failed_sinks: dict[str, str]
    rotated_at: str | None     # when the new password went live (operations finished or reset answered)
    verified_at: str | None


@dataclass
class Report:
    scope: dict[str, Any]
    header: dict[str, Any]
    leak_window: dict[str, Any]
    counts: dict[str, int]
    timeline: list[dict[str, str]]
    targets: list[TargetRow]
    exposure: dict[str, Any]
    keys: dict[str, list[dict[str, Any]]]
    ipallow: dict[str, list[dict[str, Any]]]
    roles: dict[str, list[dict[str, Any]]]
    evidence: dict[str, list[str]]
    open_actions: list[str]
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- runs


def _run_rows(run: RunLog) -> tuple[list[TargetRow], list[dict[str, str]]]:
    """Per-target rows (the last attempt's facts) and the run's timeline events."""
    st = run.state
    events: list[dict[str, str]] = []
    rid = run.id
    labels = {tuple(t.key): t.label for t in st.targets.values()}
    request_ids: dict[tuple, list[str]] = {}
    rotated_at: dict[tuple, str | None] = {}
    verified_at: dict[tuple, str | None] = {}

    def ev(t: Any, what: str) -> None:
        events.append({"t": _t(t), "source": rid, "event": what})

    for rec in run.records:
        e = rec.get("event")
        key = tuple(rec.get("target", ())) if isinstance(rec.get("target"), list) else ()
        label = labels.get(key, _label(key))
        if e == "run":
            ev(rec.get("t"), f"rotation run started: {len(rec.get('targets', []))} target(s), "
                             f"sinks {', '.join(rec.get('sinks', [])) or 'none'}")
        elif e == "resumed":
            ev(rec.get("t"), "rotation run resumed")
        elif e == "end":
            ev(rec.get("t"), "rotation run ended")
        elif e == "paused":
            ev(rec.get("t"), "rotation run paused (something left to resume)")
        elif e == "state":
            s = rec.get("state")
            if s == "resetting":
                rotated_at[key] = verified_at[key] = None
                request_ids.setdefault(key, [])
                ev(rec.get("t"), f"reset requested: {label}")
            elif s == "applying":
                if rec.get("request_id"):
                    request_ids.setdefault(key, []).append(str(rec["request_id"]))
            elif s in ROTATED_STATES:
                if rotated_at.get(key) is None:
                    rotated_at[key] = _t(rec.get("t"))
                    what = "operations finished" if s != "unconfirmed" else "reset applied, operations unconfirmed"
                    ev(rec.get("t"), f"{what}: {label}")
            elif s in ("failed", "unknown"):
                ev(rec.get("t"), f"{s}: {label}" + (f" ({rec['reason']})" if rec.get("reason") else ""))
        elif e == "verified":
            v = rec.get("verification") if isinstance(rec.get("verification"), dict) else {}
            verified_at[key] = _t(rec.get("t"))
            ev(rec.get("t"), f"verified: {label}: new password {v.get('new')}, old {v.get('old')}")
        elif e == "delivered":
            ev(rec.get("t"), f"delivered: {label} to {rec.get('sink')}")
        elif e == "delivery_failed":
            ev(rec.get("t"), f"delivery failed: {label} to {rec.get('sink')} ({rec.get('reason', '')})")
    rows: list[TargetRow] = []
    for t in st.targets.values():
        v = t.verified or {}
        rows.append(TargetRow(
            run=rid, target=list(t.key), label=t.label, state=str(t.state), reason=t.reason, attempts=t.attempts,
            operations=list(t.operations), request_ids=request_ids.get(tuple(t.key), []),
            new_login=v.get("new") if v else None, old_login=v.get("old") if v else None,
            delivered=sorted(t.delivered), failed_sinks=dict(sorted(t.delivery_failed.items())),
            rotated_at=rotated_at.get(tuple(t.key)) if str(t.state) in ROTATED_STATES else None,
            verified_at=verified_at.get(tuple(t.key)) if v else None))
    for s in st.header.get("skipped", []) or []:
        if isinstance(s, dict):
            rows.append(TargetRow(run=rid, target=[], label=str(s.get("label", "?")), state="skipped",
                                  reason=s.get("reason"), attempts=0, operations=[], request_ids=[], new_login=None,
                                  old_login=None, delivered=[], failed_sinks={}, rotated_at=None, verified_at=None))
    return rows, events


# ---------------------------------------------------------------------------------------------- actions


_ACTION_TEXT = {
    "key_created": lambda r: f"API key created: id {r.get('key_id')} ({r.get('scope') or 'key'}"
                             f"{', ' + str(r['name']) if r.get('name') else ''})",
    "key_stored": lambda r: f"API key {r.get('key_id')} stored in {r.get('sink')}",
    "key_switched": lambda r: f"switched to API key {r.get('key_id')}",
    "key_proven": lambda r: f"API key {r.get('key_id')} proven on account {r.get('account')}",
    "key_revoked": lambda r: f"API key revoked: id {r.get('key_id')} ({r.get('which')})",
    "key_dead": lambda r: f"API key {r.get('key_id')} confirmed dead ({r.get('status')})",
    "key_revoke_failed": lambda r: f"API key {r.get('key_id')} revoke failed: {r.get('reason')}",
    "ipallow_reviewed": lambda r: f"IP allow reviewed: {r.get('project_id')} "
                                  f"({len(r.get('findings') or [])} finding(s))",
    "ipallow_changed": lambda r: f"IP allow changed: {r.get('project_id')}: {_ips(r.get('before'))} -> "
                                 f"{_ips(r.get('after'))}",
    "ipallow_applied": lambda r: f"IP allow change applied: {r.get('project_id')}",
    "ipallow_failed": lambda r: f"IP allow change failed: {r.get('project_id')}: {r.get('reason')}",
    "audit_reviewed": lambda r: "roles audited" + (f": {_audit_flagged(r)} flagged" if _audit_flagged(r) else ""),
    "role_dropped": lambda r: f"role dropped: {r.get('project_id')}/{r.get('branch_id')}/{r.get('role')}",
    "role_drop_failed": lambda r: f"role drop failed: {r.get('project_id')}/{r.get('branch_id')}/{r.get('role')}: "
                                  f"{r.get('reason')}",
    "role_drop_refused": lambda r: f"role drop refused: {r.get('project_id')}/{r.get('branch_id')}/{r.get('role')}: "
                                   f"{r.get('reason')}",
    "role_kept": lambda r: f"role kept: {r.get('project_id')}/{r.get('branch_id')}/{r.get('role')}"
                           + (f" ({r['reason']})" if r.get("reason") else ""),
    "report_written": lambda r: f"report written ({r.get('format')})",
    "exposure_scanned": lambda r: f"exposure scan of {r.get('source')}: {len(r.get('exposed') or [])} exposed, "
                                  f"{len(r.get('unchecked') or [])} not checked",
    "done": lambda r: f"finished: {r.get('outcome')}" + (f" ({r['reason']})" if r.get("reason") else ""),
}


def _ips(v: Any) -> str:
    if not isinstance(v, dict):
        return "?"
    ips = v.get("ips") or []
    text = ", ".join(str(i) for i in ips) if ips else "(open to all)"
    return text + (" [protected branches only]" if v.get("protected_branches_only") else "")


def _is_key_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# How a key hand-off can end (neon_tui/incident/keys.py), and the ones that leave a key live with why.
HANDOFF_OUTCOMES = frozenset({"rotated", "undone", "old_live", "new_key_dead", "wrong_key", "half_made_live",
                              "failed"})
HANDOFF_LIVE = {
    "old_live": "revoke failed",
    "new_key_dead": "hand-off stopped: the new key was revoked by someone else; the old key is still live",
    "wrong_key": "hand-off revoked a key that was not in use; the key in use is still live",
    "half_made_live": "an undone hand-off could not revoke the key it made",
}


def key_states(keys: dict[str, list[dict[str, Any]]]) -> dict[int, str]:
    """The latest revoke state per key id: "revoked", "failed" or "dead" (by time, then journal order)."""
    events = [(x["t"] or "", n, i, state, x["key_id"]) for n, (name, state) in
              enumerate((("revoked", "revoked"), ("revoke_failed", "failed"), ("dead", "dead")))
              for i, x in enumerate(keys.get(name, []))]
    out: dict[int, str] = {}
    # same time: a revoke, then its failure or its proof (the order the hand-off writes them)
    for *_rest, state, kid in sorted(events, key=lambda e: (e[0], e[1], e[2])):
        out[kid] = state
    return out


def role_target(x: dict[str, Any]) -> str:
    return f"{x.get('project_id')}/{x.get('branch_id')}/{x.get('role')}"


def role_decisions(roles: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The latest decision per role target ("PROJECT/BRANCH/ROLE"): dropped, kept or failed, with its record.
    Refusals of a review (a role the API does not know, a protected role) are not decisions."""
    events = [(x["t"] or "", i, name, x) for name in ("dropped", "kept", "failed")
              for i, x in enumerate(roles.get(name, []))]
    out: dict[str, dict[str, Any]] = {}
    for _t_, _i, name, x in sorted(events, key=lambda e: (e[0], e[1])):
        out[role_target(x)] = {"decision": name, **x}
    return out


def _audit_flagged(rec: dict[str, Any]) -> int:
    """How many roles an audit flagged. The format says "findings counts": a dict of counts under
    "findings" (or "counts"); a top-level "flagged" (what neon-tui audit writes: the high and medium role
    findings, the ones that need a decision) or one in the dict when it names it, else the sum of its counts; a list: its length."""
    if isinstance(rec.get("flagged"), int) and not isinstance(rec.get("flagged"), bool):
        return int(rec["flagged"])
    f = rec.get("findings", rec.get("counts"))
    if isinstance(f, dict):
        if isinstance(f.get("flagged"), int):
            return int(f["flagged"])
        return sum(int(v) for v in f.values() if isinstance(v, int) and not isinstance(v, bool))
    if isinstance(f, list):
        return len(f)
    return 0


def _action_events(a: ActionLog) -> list[dict[str, str]]:
    out = []
    for r in a.records:
        fn = _ACTION_TEXT.get(str(r.get("event")))
        if fn is not None:
            out.append({"t": _t(r.get("t")), "source": a.id, "event": fn(r)})
    return out


# ---------------------------------------------------------------------------------------------- build


def _exposed_targets(actions: list[ActionLog]) -> tuple[set[tuple], set[tuple], dict[str, Any]]:
    """(exposed, unchecked, summary) from the exposure scans: the newest scan decides each target's status
    ... but a target once found exposed stays in the incident even if a later scan finds it clean (it was
    rotated)."""
    exposed: set[tuple] = set()
    unchecked: set[tuple] = set()
    summary: dict[str, Any] = {"scans": 0, "sources": [], "leaked_at": None, "last_scan": None, "labels": {}}
    for a in actions:
        if a.kind != "exposure":
            continue
        for r in a.events("exposure_scanned"):
            summary["scans"] += 1
            summary["sources"].append(str(r.get("source")))
            summary["last_scan"] = _t(r.get("t"))
            if r.get("leaked_at"):
                summary["leaked_at"] = _t(r["leaked_at"])
            exposed |= {tuple(x) for x in r.get("exposed") or [] if isinstance(x, list)}
            for field_ in ("exposed_labels", "unchecked_labels"):
                if isinstance(r.get(field_), dict):
                    summary["labels"].update({str(k): str(v) for k, v in r[field_].items()})
            unchecked = {tuple(x) for x in r.get("unchecked") or [] if isinstance(x, list)}  # the newest scan's
    summary["sources"] = sorted(set(summary["sources"]))
    return exposed, unchecked, summary


def build_report(runs: list[RunLog], actions: list[ActionLog], since: datetime | None = None, *,
                 since_source: str | None = None, problems: list[str] | None = None) -> Report:
    """The report of these journals. `since` opens the leak window when no scan gave a leaked_at."""
    rows: list[TargetRow] = []
    timeline: list[dict[str, str]] = []
    problems = list(problems or [])
    for run in runs:
        r, e = _run_rows(run)
        rows.extend(r)
        timeline.extend(e)
    for a in actions:
        timeline.extend(_action_events(a))
    exposed, unchecked, exposure = _exposed_targets(actions)

    # The newest row per target (a later run supersedes an earlier one for the same target).
    latest: dict[tuple, TargetRow] = {}
    for row in rows:
        if row.target:
            latest[tuple(row.target)] = row
    scope_targets = exposed or set(latest)

    # Header.
    headers = [r.header for r in runs] + [a.header for a in actions]
    def uniq(name: str) -> list[Any]:
        vals = []
        for h in headers:
            v = h.get(name)
            if v is not None and v not in vals:
                vals.append(v)
        return vals
    operators = sorted({(str(o.get("user")), str(o.get("hostname"))) for o in uniq("operator") if isinstance(o, dict)})
    key_ids = sorted({str(rec.get("key_id")) for a in actions if a.kind == "keys"
                      for rec in a.events("key_created", "key_switched", "key_proven")}
                     | {str(rec.get("key_id")) for a in actions if a.kind == "keys"
                        for rec in a.events("key_revoked") if rec.get("which") == "old"}
                     | {str(a.header["key_id"]) for a in actions if a.header.get("key_id") is not None})
    header = {"accounts": sorted(str(x) for x in uniq("account")),
              "key_kinds": sorted(str(x) for x in uniq("key_kind")),
              "operators": [{"user": u, "hostname": h} for u, h in operators],
              "api_hosts": sorted(str(x) for x in uniq("host")),
              "key_ids": key_ids}

    # Leak window: from leaked_at (or since) to when the last exposed password was rotated and proven dead.
    start = exposure["leaked_at"] or (iso(since) if since else None)
    closed_at: list[str] = []
    still_open: list[str] = []
    for key in sorted(scope_targets):
        row = latest.get(key)
        if row is None or row.rotated_at is None or row.old_login == "still-accepted":
            still_open.append(exposure["labels"].get(_label(key), _label(key)) if row is None else row.label)
        else:
            closed_at.append(row.verified_at if row.old_login == "rejected" and row.verified_at else row.rotated_at)
    window = {"start": start, "start_source": "leaked_at" if exposure["leaked_at"] else ("since" if since else None),
              "end": max(closed_at) if closed_at and not still_open else None,
              "open": bool(still_open) or not scope_targets,
              "still_exposed": sorted(still_open)}

    # Keys.
    keys: dict[str, list[dict[str, Any]]] = {"created": [], "revoked": [], "dead": [], "revoke_failed": [],
                                             "still_live": []}
    key_events = ("key_created", "key_revoked", "key_dead", "key_revoke_failed")
    for a in actions:
        if a.kind != "keys":
            continue
        for r in a.records:
            e = r.get("event")
            if e in key_events and not _is_key_id(r.get("key_id")):
                # a damaged record must not read as "old key None ... done": skipped and reported
                problems.append(f"{a.id}: {e} at {r.get('t')} has no valid key_id ({r.get('key_id')!r}): skipped")
                continue
            if e == "key_created":
                keys["created"].append({"t": _t(r.get("t")), "key_id": r.get("key_id"), "name": r.get("name"),
                                        "scope": r.get("scope"), "request_id": r.get("request_id")})
            elif e == "key_revoked":
                keys["revoked"].append({"t": _t(r.get("t")), "key_id": r.get("key_id"), "which": r.get("which"),
                                        "request_id": r.get("request_id")})
            elif e == "key_dead":
                keys["dead"].append({"t": _t(r.get("t")), "key_id": r.get("key_id"), "status": r.get("status")})
            elif e == "key_revoke_failed":
                keys["revoke_failed"].append({"t": _t(r.get("t")), "key_id": r.get("key_id"),
                                              "which": r.get("which"), "reason": r.get("reason")})
    # The latest revoke event per key decides: a failure a resume then revoked and proved dead is closed.
    latest_key = key_states(keys)
    for k in keys["revoked"] + keys["revoke_failed"]:
        state = latest_key.get(k["key_id"])
        if state != "dead" and k.get("which") in ("old", None):
            if not any(x["key_id"] == k["key_id"] for x in keys["still_live"]):
                keys["still_live"].append({"key_id": k["key_id"],
                                           "why": "revoke failed" if state == "failed"
                                           else "revoked, not yet confirmed dead"})

    # How the newest key hand-off ended: one that left a key live says so, whatever its revoke records show.
    endings = sorted(((_t(r.get("t")) or "", a.id, r.get("outcome"), a.header) for a in actions if a.kind == "keys"
                      for r in a.events("done") if r.get("outcome") in HANDOFF_OUTCOMES), key=lambda e: (e[0], e[1]))
    if endings and endings[-1][2] in HANDOFF_LIVE:
        _t_end, _jid, outcome, header = endings[-1]
        kid = header.get("old_key_id") if _is_key_id(header.get("old_key_id")) else "in use"
        if outcome == "half_made_live":
            kid = next((x["key_id"] for x in reversed(keys["created"])), "new")
        if not any(x["key_id"] == kid for x in keys["still_live"]):
            keys["still_live"].append({"key_id": kid, "why": HANDOFF_LIVE[outcome]})

    # IP allow.
    ipallow: dict[str, list[dict[str, Any]]] = {"reviewed": [], "changed": [], "failed": []}
    for a in actions:
        if a.kind != "ipallow":
            continue
        for r in a.records:
            e = r.get("event")
            if e == "ipallow_reviewed":
                reviewed = {"t": _t(r.get("t")), "project_id": r.get("project_id"),
                            "findings": list(r.get("findings") or [])}
                if isinstance(r.get("review_projects"), int) and not isinstance(r.get("review_projects"), bool):
                    reviewed["review_projects"] = r["review_projects"]  # how many projects that review covered
                ipallow["reviewed"].append(reviewed)
            elif e == "ipallow_changed":
                ipallow["changed"].append({"t": _t(r.get("t")), "project_id": r.get("project_id"),
                                           "before": _ips(r.get("before")), "after": _ips(r.get("after")),
                                           "operations": list(r.get("operations") or []),
                                           "request_id": r.get("request_id")})
            elif e == "ipallow_failed":
                ipallow["failed"].append({"t": _t(r.get("t")), "project_id": r.get("project_id"),
                                          "reason": r.get("reason")})

    # Roles.
    roles: dict[str, list[dict[str, Any]]] = {"audits": [], "dropped": [], "kept": [], "failed": [], "refused": []}
    for a in actions:
        if a.kind != "roles":
            continue
        for r in a.records:
            e = r.get("event")
            who = {"t": _t(r.get("t")), "project_id": r.get("project_id"), "branch_id": r.get("branch_id"),
                   "role": r.get("role")}
            if e == "audit_reviewed":
                audit = {"t": _t(r.get("t")), "flagged": _audit_flagged(r)}
                if isinstance(r.get("flagged_targets"), list):
                    audit["flagged_targets"] = sorted({"/".join(str(p) for p in x) for x in r["flagged_targets"]
                                                       if isinstance(x, list) and len(x) == 3})
                roles["audits"].append(audit)
            elif e == "role_dropped":
                roles["dropped"].append({**who, "operations": list(r.get("operations") or []),
                                         "request_id": r.get("request_id")})
            elif e == "role_kept":
                roles["kept"].append({**who, "reason": r.get("reason")})
            elif e == "role_drop_failed":
                roles["failed"].append({**who, "reason": r.get("reason")})
            elif e == "role_drop_refused":
                roles["refused"].append({**who, "reason": r.get("reason")})

    # Counts (over the newest row of each target, plus the skipped ones).
    final = list(latest.values())
    def n(*states: str) -> int:
        return sum(1 for r in final if r.state in states)
    failed_sinks = sorted({s for r in final for s in r.failed_sinks})
    counts = {
        "exposed_found": len(exposed), "unchecked": len(unchecked),
        "targets": len(final), "rotated": n(*ROTATED_STATES), "delivered": n("delivered"),
        "unconfirmed": n("unconfirmed"), "failed": n("failed"), "unknown": n("unknown", "resetting", "applying"),
        "not_started": n("planned", "cancelled"),
        "skipped": sum(1 for r in rows if r.state == "skipped" and not r.target) + n("skipped"),
        "verified": sum(1 for r in final if r.new_login == "ok" and r.old_login == "rejected"),
        "old_still_accepted": sum(1 for r in final if r.old_login == "still-accepted"),
        "still_exposed": len(still_open) if scope_targets else 0,
        "failed_sinks": len(failed_sinks),
        "keys_created": len(keys["created"]), "keys_revoked": len(keys["revoked"]),
        "ipallow_changed": len(ipallow["changed"]), "roles_dropped": len(roles["dropped"]),
    }

    # Evidence.
    ops = sorted({o for r in rows for o in r.operations} | {o for c in ipallow["changed"] for o in c["operations"]}
                 | {o for d in roles["dropped"] for o in d["operations"]})
    reqs = sorted({q for r in rows for q in r.request_ids}
                  | {str(x["request_id"]) for group in (keys["created"], keys["revoked"], ipallow["changed"],
                                                        roles["dropped"]) for x in group if x.get("request_id")})
    evidence = {"operation_ids": ops, "request_ids": reqs}

    # Open actions.
    open_actions: list[str] = []
    for r in sorted(final, key=lambda r: r.label):
        if r.state == "failed":
            open_actions.append(f"{r.label}: the reset failed ({r.reason or 'no reason journaled'}); retry it")
        elif r.state in ("unknown", "resetting", "applying"):
            open_actions.append(f"{r.label}: outcome unknown; `neon-tui rotate --resume latest` reconciles it")
        elif r.state == "unconfirmed":
            open_actions.append(f"{r.label}: reset applied but its operations are unconfirmed; --resume checks it")
        elif r.state in ("planned", "cancelled"):
            open_actions.append(f"{r.label}: not rotated yet")
        if r.old_login == "still-accepted":
            open_actions.append(f"{r.label}: the old password still logs in")
        for sink, why in r.failed_sinks.items():
            open_actions.append(f"{r.label}: delivery to {sink} failed ({why})")
    for key in sorted(exposed - set(latest)):
        open_actions.append(f"{exposure['labels'].get(_label(key), _label(key))}: exposed and not rotated")
    if unchecked:
        open_actions.append(f"{len(unchecked)} target(s) could not be checked for exposure")
    for k in keys["still_live"]:
        open_actions.append(f"API key {k['key_id']}: {k['why']}")
    if not any(a.kind == "keys" for a in actions):
        open_actions.append("API keys: not rotated (revoke any key that may have leaked, create a new one)")
    if not any(a.kind == "ipallow" for a in actions):
        open_actions.append("IP allow: not reviewed")
    for f in ipallow["failed"]:
        open_actions.append(f"IP allow of {f['project_id']}: change failed ({f['reason']})")
    if not any(a.kind == "roles" for a in actions):
        open_actions.append("Roles: not audited (drop roles you do not recognize)")
    for f in roles["failed"]:
        if role_decisions(roles).get(role_target(f), {}).get("decision") == "failed":  # a later drop or keep clears it
            open_actions.append(f"role {role_target(f)}: drop failed ({f['reason']})")

    timeline.sort(key=lambda e: (e["t"], e["source"], e["event"]))
    scope = {"since": iso(since) if since else None, "source": since_source or ("--since" if since else "journals"),
             "runs": [r.id for r in runs], "actions": [a.id for a in actions]}
    names = exposure.pop("labels")
    exposure_out = {**exposure, "exposed": [names.get(_label(k), _label(k)) for k in sorted(exposed)],
                    "unchecked": [names.get(_label(k), _label(k)) for k in sorted(unchecked)]}
    rows.sort(key=lambda r: (r.label, r.run))
    report = Report(scope, header, window, counts, timeline, rows, exposure_out, keys, ipallow, roles, evidence,
                    open_actions, sorted(problems))
    guard(to_dict(report))
    return report


def to_dict(report: Report) -> dict[str, Any]:
    return asdict(report)


def to_json(report: Report) -> str:
    data = guard(to_dict(report))
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


# ---------------------------------------------------------------------------------------------- markdown


def _md(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    h, w, c = report.header, report.leak_window, report.counts
    L: list[str] = ["# Incident report: leaked Neon credentials", ""]
    L += ["## Summary", ""]
    L.append(f"- Account(s): {', '.join(h['accounts']) or 'unknown'}; key kind: {', '.join(h['key_kinds']) or 'unknown'}")
    L.append("- Operator(s): " + (", ".join(f"{o['user']}@{o['hostname']}" for o in h["operators"]) or "unknown"))
    L.append(f"- API host(s): {', '.join(h['api_hosts']) or 'unknown'}")
    L.append(f"- API keys used (ids): {', '.join(h['key_ids']) or 'not journaled'}")
    start = w["start"] or "unknown (no --leaked-at, no --since)"
    end = "still open" if w["open"] else w["end"]
    L.append(f"- Leak window (UTC): {start} to {end}")
    if w["still_exposed"]:
        L.append(f"- Still exposed: {', '.join(w['still_exposed'])}")
    L.append(f"- Scope: {report.scope['source']}; {len(report.scope['runs'])} run(s), "
             f"{len(report.scope['actions'])} action journal(s)")
    L += ["", "## Counts", "", "| what | count |", "|---|---:|"]
    for k, v in c.items():
        L.append(f"| {k.replace('_', ' ')} | {v} |")
    L += ["", "## Timeline (UTC)", ""]
    for e in report.timeline:
        L.append(f"- {e['t'] or '(no time)'} {_md(e['event'])} `[{e['source']}]`")
    if not report.timeline:
        L.append("- (nothing journaled)")
    L += ["", "## Targets", "",
          "| target | state | attempts | operations | request ids | new login | old login | delivered | failed sinks |",
          "|---|---|---:|---|---|---|---|---|---|"]
    for r in report.targets:
        failed = "; ".join(f"{s}: {why}" for s, why in r.failed_sinks.items())
        L.append(f"| {_md(r.label)} | {r.state} | {r.attempts} | {_md(', '.join(r.operations))} | "
                 f"{_md(', '.join(r.request_ids))} | {r.new_login or '-'} | {r.old_login or '-'} | "
                 f"{_md(', '.join(r.delivered)) or '-'} | {_md(failed) or '-'} |")
    ex = report.exposure
    L += ["", "## Exposure", "", f"- Scans: {ex['scans']} ({_md(', '.join(ex['sources'])) or 'none'}); "
          f"last {ex['last_scan'] or '-'}",
          f"- Exposed: {_md(', '.join(ex['exposed'])) or 'none found'}",
          f"- Not checked: {_md(', '.join(ex['unchecked'])) or 'none'}"]
    k = report.keys
    L += ["", "## API keys", ""]
    for name in ("created", "revoked", "dead", "revoke_failed", "still_live"):
        items = k[name]
        text = "; ".join(_md(" ".join(f"{a}={b}" for a, b in item.items() if b not in (None, "", []))) for item in items)
        L.append(f"- {name.replace('_', ' ')}: {text or 'none'}")
    L += ["", "## IP allow", ""]
    L.append("- reviewed: " + (", ".join(f"{_md(r['project_id'])} ({len(r['findings'])} finding(s))"
                                         for r in report.ipallow["reviewed"]) or "none"))
    for ch in report.ipallow["changed"]:
        L.append(f"- changed {ch['t']} {_md(ch['project_id'])}: {_md(ch['before'])} -> {_md(ch['after'])}")
    for f in report.ipallow["failed"]:
        L.append(f"- failed {f['t']} {_md(f['project_id'])}: {_md(f['reason'])}")
    L += ["", "## Roles", ""]
    L.append("- audits: " + (", ".join(f"{a['t']} ({a['flagged']} flagged)" for a in report.roles["audits"]) or "none"))
    for name in ("dropped", "kept", "failed", "refused"):
        items = report.roles.get(name, [])
        L.append(f"- {name}: " + (", ".join(
            _md(f"{i['project_id']}/{i['branch_id']}/{i['role']}" + (f" ({i['reason']})" if i.get("reason") else ""))
            for i in items) or "none"))
    L += ["", "## Evidence", "",
          f"- Operation ids: {', '.join(report.evidence['operation_ids']) or 'none'}",
          f"- Request ids: {', '.join(report.evidence['request_ids']) or 'none'}"]
    L += ["", "## Open actions", ""]
    L += [f"- [ ] {_md(a)}" for a in report.open_actions] or ["- none"]
    if report.problems:
        L += ["", "## Journal problems", ""] + [f"- {_md(p)}" for p in report.problems]
    text = "\n".join(L) + "\n"
    guard(text, "report")
    return text
