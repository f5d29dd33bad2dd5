"""A fixed incident's journals (fixed times, so the report is byte-for-byte stable), written as the real
writers write them: run journals in the engine's record shapes, action journals with the event and field
names of neon_tui/incident/actions.py."""

from __future__ import annotations

import json
from pathlib import Path

HOST = "https://console.neon.tech/api/v2"
ACCOUNT = "org-coral-tide-222222"
OPERATOR = {"user": "oncall", "hostname": "laptop-7"}
DAY = "2026-11-02T"

APP_MAIN = ["p-shop", "br-main", "app"]
APP_DEV = ["p-shop", "br-dev", "app"]
ETL = ["p-analytics", "br-main", "etl"]


def _t(hms: str) -> str:
    return f"{DAY}{hms}.000+00:00"


def _write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    return path


def _action(kind: str, hms: str, key_kind: str = "organization") -> dict:
    return {"t": _t(hms), "event": "action", "kind": kind, "host": HOST, "account": ACCOUNT, "key_kind": key_kind,
            "operator": OPERATOR}


def run_records(*, rotated_all: bool = False) -> list[dict]:
    """A run over three exposed targets: one delivered and verified, one held after a sink failed, one whose
    resets kept getting lost (failed). `rotated_all` makes the third succeed and the sink recover."""
    recs = [{"t": _t("16:05:00"), "event": "run", "host": HOST, "org_id": ACCOUNT, "selectors": ["p-shop/*/app"],
             "account": ACCOUNT, "key_kind": "organization", "operator": OPERATOR, "sinks": ["keyring", "vercel"],
             "targets": [{"target": APP_MAIN, "label": "shop/main/app", "role_updated_at": "2026-01-01T00:00:00Z",
                          "store_passwords": True},
                         {"target": APP_DEV, "label": "shop/dev/app", "role_updated_at": "2026-01-01T00:00:00Z",
                          "store_passwords": True},
                         {"target": ETL, "label": "analytics/main/etl", "role_updated_at": "2026-01-01T00:00:00Z",
                          "store_passwords": False}],
             "skipped": [{"label": "shop/main/readonly", "reason": "cannot log in (NOLOGIN)"}]}]

    def rotate(target, base: int, ops: list[str], rid: str, vercel_ok: bool, old: str = "rejected"):
        s = lambda n: f"16:05:{base + n:02d}"  # noqa: E731
        recs.extend([
            {"t": _t(s(0)), "event": "state", "target": target, "state": "resetting", "before": "2026-01-01T00:00:00Z",
             "wall": 1796054700.0},
            {"t": _t(s(1)), "event": "state", "target": target, "state": "applying", "operations": ops,
             "role_updated_at": f"{DAY}{s(1)}Z", "request_id": rid},
            {"t": _t(s(3)), "event": "state", "target": target, "state": "rotated", "operations": ops},
            {"t": _t(s(4)), "event": "delivered", "target": target, "sink": "keyring", "detail": "keyring entry",
             "unconfirmed": False},
        ])
        if vercel_ok:
            recs.append({"t": _t(s(5)), "event": "delivered", "target": target, "sink": "vercel",
                         "detail": "vercel env DATABASE_URL", "unconfirmed": False})
            recs.append({"t": _t(s(5)), "event": "state", "target": target, "state": "delivered",
                         "reason": "delivered to keyring, vercel"})
        else:
            recs.append({"t": _t(s(5)), "event": "delivery_failed", "target": target, "sink": "vercel",
                         "reason": "HTTP 403 from Vercel"})
            recs.append({"t": _t(s(5)), "event": "state", "target": target, "state": "rotated",
                         "reason": "held: not yet delivered to vercel"})
        recs.append({"t": _t(s(7)), "event": "verified", "target": target,
                     "verification": {"new": "ok", "new_reason": None, "old": old, "old_reason": None,
                                      "database": "neondb", "new_checks": [], "old_checks": []}})

    rotate(APP_MAIN, 1, ["op-101", "op-102"], "req-aaa1", True)
    rotate(APP_DEV, 11, ["op-103"], "req-aaa2", rotated_all)
    if rotated_all:
        rotate(ETL, 21, ["op-104"], "req-aaa3", True)
        recs.append({"t": _t("16:06:00"), "event": "end", "counts": {"delivered": 2, "rotated": 1}})
    else:
        recs.extend([
            {"t": _t("16:05:21"), "event": "state", "target": ETL, "state": "resetting",
             "before": "2026-01-01T00:00:00Z", "wall": 1796054721.0},
            {"t": _t("16:05:23"), "event": "state", "target": ETL, "state": "unknown",
             "reason": "answer lost (ReadTimeout); reconciling"},
            {"t": _t("16:05:40"), "event": "state", "target": ETL, "state": "failed",
             "reason": "resets keep getting lost and none landed; check the API, then retry"},
            {"t": _t("16:05:41"), "event": "paused", "counts": {"delivered": 1, "rotated": 1, "failed": 1},
             "cancelled": False},
        ])
    return recs


def rehost(root: Path, host: str, account: str | None = None) -> None:
    """Point every fixture journal under root at another API host (e.g. a test app's simulator) and, given,
    another account (the simulator key's)."""
    for path in root.rglob("*.jsonl"):
        text = path.read_text().replace(json.dumps(HOST), json.dumps(host))
        if account is not None:
            text = text.replace(json.dumps(ACCOUNT), json.dumps(account))
        path.write_text(text)


def write_incident(root: Path, *, complete: bool = False) -> tuple[Path, Path]:
    """The fixture incident under root: (runs dir, actions dir). `complete` closes every step."""
    runs, acts = root / "runs", root / "actions"
    _write(runs / "run-20261102T160500Z-aaaa1111.jsonl", run_records(rotated_all=complete))
    _write(acts / "exposure-20261102T160200Z-e0e0e0e0.jsonl", [
        _action("exposure", "16:02:00"),
        {"t": _t("16:02:09"), "event": "exposure_scanned", "source": "prod.env", "leaked_at": "2026-11-02T14:05:00Z",
         "exposed": [APP_MAIN, APP_DEV, ETL], "unchecked": [] if complete else [["p-legacy", None, None]],
         "counts": {"exposed": 3, "unchecked": 0 if complete else 1, "clean": 9, "roles": 12, "projects": 3,
                    "organizations": 1, "requests": 41}, "complete": complete},
    ])
    _write(acts / "keys-20261102T163000Z-k0k0k0k0.jsonl", [
        _action("keys", "16:30:00"),
        {"t": _t("16:30:02"), "event": "key_created", "key_id": 7002, "name": "neon-tui-2026-11-02",
         "scope": "organization", "org_id": ACCOUNT, "project_id": None, "request_id": "req-kkk1"},
        {"t": _t("16:30:03"), "event": "key_stored", "key_id": 7002, "sink": "keyring"},
        {"t": _t("16:30:04"), "event": "key_switched", "key_id": 7002},
        {"t": _t("16:30:05"), "event": "key_proven", "key_id": 7002, "account": ACCOUNT},
        {"t": _t("16:40:00"), "event": "key_revoked", "key_id": 7001, "which": "old", "request_id": "req-kkk2"},
        *([{"t": _t("16:40:02"), "event": "key_dead", "key_id": 7001, "status": 401}] if complete else []),
        {"t": _t("16:40:03"), "event": "done", "outcome": "rotated", "reason": None},
    ])
    _write(acts / "ipallow-20261102T164500Z-i0i0i0i0.jsonl", [
        _action("ipallow", "16:45:00"),
        {"t": _t("16:45:01"), "event": "ipallow_reviewed", "project_id": "p-shop",
         "findings": [{"kind": "open", "message": "open to every address: the allowlist is empty", "flag": True}]},
        {"t": _t("16:46:00"), "event": "ipallow_changed", "project_id": "p-shop",
         "before": {"ips": [], "protected_branches_only": False},
         "after": {"ips": ["203.0.113.0/24"], "protected_branches_only": True},
         "operations": ["op-201"], "request_id": "req-iii1"},
        {"t": _t("16:46:05"), "event": "ipallow_applied", "project_id": "p-shop", "operations": ["op-201"]},
        {"t": _t("16:47:00"), "event": "ipallow_reviewed", "project_id": "p-analytics", "findings": []},
        *([{"t": _t("16:47:30"), "event": "ipallow_reviewed", "project_id": "p-legacy", "findings": []}]
          if complete else []),
    ])
    _write(acts / "roles-20261102T165000Z-r0r0r0r0.jsonl", [
        _action("roles", "16:50:00"),
        {"t": _t("16:50:01"), "event": "audit_reviewed", "findings": {"flagged": 2}},
        {"t": _t("16:51:00"), "event": "role_dropped", "project_id": "p-analytics", "branch_id": "br-main",
         "role": "backdoor", "operations": ["op-301"], "request_id": "req-rrr1"},
        {"t": _t("16:52:00"), "event": "role_kept", "project_id": "p-shop", "branch_id": "br-main",
         "role": "analyst", "reason": "known: the BI tool"},
    ])
    return runs, acts
