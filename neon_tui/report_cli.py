"""`neon-tui report` (the incident report from the journals) and `neon-tui status` (the breach checklist, live)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

REPORT_DESCRIPTION = """\
The incident report, from the journals of this machine (never a secret): the leak window, who ran what
against which Neon account, a UTC timeline (resets, operations, verifications, deliveries, API keys, IP
allow changes, role drops), counts, a table per target, the evidence (operation and request ids) and the
actions still open.

RUN: run or action journal ids (e.g. run-20261130T160211Z-1a2b3c4d) or paths. Default: every journal of
the incident, i.e. written since --since, else since the leaked_at of the newest exposure scan
(`neon-tui exposure --leaked-at`), else every journal.

--out FILE writes the report (mode 0600) and journals that it was written (the checklist's last step).

Scope: only journals made against this API host (NEON_API_HOST, or Neon's; --demo: the demo's), and of one
account: --account ID, else NEON_API_KEY's account when the key is set, else every account (said on standard
error when the journals name several). Journals that name no account are kept.

Exit status: 0 report written; 1 a journal could not be read; 2 usage error.
"""

STATUS_DESCRIPTION = """\
Neon's breach checklist with each step's live state, derived from the journals (and, with an API key,
checked against the account: revoked keys gone, rotated roles changed since the leak):
exposed roles found, passwords rotated and verified, stored copies replaced, API keys rotated, IP allow
reviewed, unknown roles handled, report written.

Only journals of this API host and, with a key (or --demo), of the key's account count; --demo counts only
journals written after this process started (each --demo run is a fresh simulated account).

Exit status: 0 every step done; 3 some steps open; 1 the journals (or the account) could not be read;
2 usage error.
"""

EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE, EXIT_OPEN = 0, 1, 2, 3


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="run or action journal ids or paths (default: the incident)")
    p.add_argument("--since", metavar="TIME", help="the incident started at TIME (ISO 8601, UTC if no zone)")
    p.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    p.add_argument("--out", metavar="FILE", help="write the report to FILE (0600) instead of standard output")
    p.add_argument("--demo", action="store_true",
                   help="the demo's journals (by default only those made against NEON_API_HOST, or Neon's API)")
    p.add_argument("--account", metavar="ID",
                   help="only journals of this Neon account (default: the account of NEON_API_KEY when it is set, "
                        "else every account, said on standard error); journals that name no account are kept")


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", metavar="TIME", help="the incident started at TIME (ISO 8601, UTC if no zone)")
    p.add_argument("--json", action="store_true", help="one JSON object: the steps and the exit status")
    p.add_argument("--demo", action="store_true",
                   help="check against an in-process simulated account (no API key needed)")


def _err(cmd: str, msg: str) -> None:
    print(f"neon-tui {cmd}: {msg}", file=sys.stderr, flush=True)


def _since(cmd: str, ns: argparse.Namespace):
    from neon_tui.incident.exposure_log import parse_when

    return parse_when(ns.since, "--since") if ns.since else None


def write_report_file(report, path: Path, fmt: str) -> Path:
    """Write the report (0600, replacing atomically) and journal a "report_written" action."""
    from neon_tui.incident.actions import create_action_journal
    from neon_tui.incident.report import render_markdown, to_json

    text = to_json(report) if fmt == "json" else render_markdown(report)
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    h = report.header
    journal = create_action_journal(
        "report", host=(h["api_hosts"] or [None])[0], account=(h["accounts"] or [None])[0],
        key_kind=(h["key_kinds"] or [None])[0])
    try:
        journal.write("report_written", path=str(path.resolve()), format="json" if fmt == "json" else "markdown",
                      runs=list(report.scope["runs"]), actions=list(report.scope["actions"]))
    finally:
        journal.close()
    return path


def report_main(ns: argparse.Namespace) -> int:
    from neon_tui.incident.exposure_log import TimeError
    from neon_tui.incident.journals import load
    from neon_tui.incident.report import ReportError, build_report, render_markdown, to_json
    from neon_tui.rotation.journal import JournalError

    try:
        since = _since("report", ns)
    except TimeError as e:
        _err("report", str(e))
        return EXIT_USAGE
    account = (ns.account or "").strip() or None
    if account is None and not ns.demo and os.environ.get("NEON_API_KEY") and not ns.runs:
        account, why = asyncio.run(_key_account(False))
        if account is None:
            _err("report", f"the key's account is unknown ({why}): journals of every account")
        else:
            _err("report", f"journals of account {account} (NEON_API_KEY's; --account chooses another)")
    try:
        from neon_tui.incident.journals import current_host

        inputs = load(list(ns.runs), since=since, host=current_host(ns.demo), account=account)
    except JournalError as e:
        _err("report", str(e))
        return EXIT_UNREADABLE
    accounts = sorted({str(x.header.get("account")) for x in [*inputs.runs, *inputs.actions] if x.header.get("account")})
    if account is None and len(accounts) > 1:
        _err("report", f"the journals name {len(accounts)} accounts ({', '.join(accounts)}): "
                       "--account ID keeps one")
    for p in inputs.problems:
        _err("report", f"damaged journal: {p}")
    try:
        report = build_report(inputs.runs, inputs.actions, inputs.since, since_source=inputs.since_source,
                              problems=inputs.problems)
        if ns.out:
            path = write_report_file(report, Path(ns.out), "json" if ns.json else "markdown")
            _err("report", f"written to {path} ({len(report.timeline)} timeline events, "
                           f"{len(report.open_actions)} open actions)")
        else:
            sys.stdout.write(to_json(report) if ns.json else render_markdown(report))
            sys.stdout.flush()
    except ReportError as e:
        _err("report", str(e))
        return EXIT_UNREADABLE
    except (OSError, JournalError) as e:
        _err("report", f"cannot write {ns.out}: {getattr(e, 'strerror', None) or e}")
        return EXIT_UNREADABLE
    return EXIT_OK


def status_main(ns: argparse.Namespace) -> int:
    from neon_tui.incident.exposure_log import TimeError
    from neon_tui.incident.journals import load
    from neon_tui.rotation.journal import JournalError

    try:
        since = _since("status", ns)
    except TimeError as e:
        _err("status", str(e))
        return EXIT_USAGE
    from datetime import datetime, timezone

    started = datetime.now(timezone.utc)
    account = None
    if ns.demo or os.environ.get("NEON_API_KEY"):
        account, _why = asyncio.run(_key_account(ns.demo))  # only the key's account's journals
    try:
        from neon_tui.incident.journals import current_host

        # --demo: each process is a fresh simulated account; earlier demo sessions' journals are not its business
        inputs = load(None, since=since, host=current_host(ns.demo), account=account,
                      not_before=started if ns.demo else None)
    except JournalError as e:
        _err("status", str(e))
        return EXIT_UNREADABLE
    try:
        account, why = asyncio.run(_account(ns, inputs))
    except KeyboardInterrupt:
        return 130
    from neon_tui.incident.checklist import DONE, GLYPHS, checklist

    steps = checklist(inputs.runs, inputs.actions, account)
    unreadable = bool(inputs.problems) or why is not None and os.environ.get("NEON_API_KEY") is not None
    code = EXIT_UNREADABLE if unreadable else (EXIT_OK if all(s.state == DONE for s in steps) else EXIT_OPEN)
    if ns.json:
        sys.stdout.write(json.dumps({"steps": [s.to_json() for s in steps], "scope": inputs.since_source,
                                     "since": inputs.since.isoformat() if inputs.since else None,
                                     "account": account, "account_unchecked": why, "problems": inputs.problems,
                                     "exit": code}, ensure_ascii=False) + "\n")
    else:
        for n, s in enumerate(steps, 1):
            sys.stdout.write(f"{GLYPHS[s.state]} {n}. {s.short:<32} {s.state:<12} {s.figure}\n")
            for d in s.details[:5]:
                sys.stdout.write(f"{'':52}{d}\n")
        sys.stdout.flush()
        if why:
            _err("status", f"not checked against the account: {why}")
    for p in inputs.problems:
        _err("status", f"damaged journal: {p}")
    return code


async def _key_account(demo: bool) -> tuple[str | None, str | None]:
    """GET /auth's account_id for the key in use (or the demo's), or (None, why not)."""
    from neon_tui.neon.errors import NeonError
    from neon_tui.rotate_cli import make_client

    try:
        client, _sim = make_client(demo)
    except NeonError as e:
        return None, str(e)
    async with client:
        try:
            return (await client.get_auth()).account_id, None
        except NeonError as e:
            return None, str(e)


async def _account(ns: argparse.Namespace, inputs):
    """What the account says (checklist.confirm), or (None, why not)."""
    from neon_tui.incident.checklist import confirm
    from neon_tui.neon.errors import NeonError
    from neon_tui.rotate_cli import make_client

    if not ns.demo and not os.environ.get("NEON_API_KEY"):
        return None, "NEON_API_KEY is not set (journals only)"
    try:
        client, _sim = make_client(ns.demo)
    except NeonError as e:
        return None, str(e)
    async with client:
        try:
            return await confirm(client, inputs.runs, inputs.actions), None
        except NeonError as e:
            return None, str(e)
