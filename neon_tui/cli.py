"""Command line: the TUI (default), `neon-tui rotate`, `neon-tui exposure`, `neon-tui scan`, `neon-tui ipallow` and `neon-tui simulator serve`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from neon_tui import __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neon-tui", description="Rotate leaked Neon Postgres role passwords on every branch.")
    p.add_argument("--version", action="version", version=f"neon-tui {__version__}")
    p.add_argument("--demo", action="store_true", help="run against an in-process simulated Neon account")
    p.add_argument("--read-only", action="store_true", help="browse and plan, never write")
    p.add_argument("--checklist", action="store_true",
                   help="open on the incident checklist (the demo always does)")
    p.add_argument("--check-config", action="store_true",
                   help="report every problem in config.toml (and the keymap) and exit: 0 fine, 1 problems")
    sub = p.add_subparsers(dest="command")

    sim = sub.add_parser("simulator", help="the simulated Neon API")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve a simulated Neon account over HTTP on loopback")
    from neon_tui.simulator.serve_args import add_arguments as add_serve_arguments  # no web stack at start-up

    add_serve_arguments(serve)

    tree = sub.add_parser("tree", help="print the account tree as text")
    tree.add_argument("--demo", action="store_true", help="use an in-process simulated account")

    from neon_tui import rotate_cli

    rotate = sub.add_parser("rotate", help="plan or run password resets without the TUI",
                            description=rotate_cli.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    rotate_cli.add_arguments(rotate)

    from neon_tui import exposure_cli

    exposure = sub.add_parser("exposure", help="find every role whose current password is a leaked one",
                              description=exposure_cli.DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    exposure_cli.add_arguments(exposure)

    from neon_tui import envscan_cli

    scan = sub.add_parser("scan", help="find copies of Neon connection strings in .env files",
                          description=envscan_cli.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    envscan_cli.add_arguments(scan)

    from neon_tui import keys_cli

    keys = sub.add_parser("keys", help="list, create, revoke and rotate Neon API keys",
                          description=keys_cli.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    keys_cli.add_arguments(keys)
    from neon_tui import report_cli

    report = sub.add_parser("report", help="the incident report from the journals (Markdown or JSON)",
                            description=report_cli.REPORT_DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    report_cli.add_report_arguments(report)
    status = sub.add_parser("status", help="the breach checklist, each step's live state",
                            description=report_cli.STATUS_DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    report_cli.add_status_arguments(status)
    from neon_tui import ipallow_cli

    ipallow = sub.add_parser("ipallow", help="review and change each project's IP Allow list",
                             description=ipallow_cli.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    ipallow_cli.add_arguments(ipallow)
    from neon_tui import audit_cli

    audit = sub.add_parser("audit", help="roles, branches, members and project access changed since the leak",
                           description=audit_cli.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    audit_cli.add_arguments(audit)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if ns.check_config and ns.command is None:
        return check_config()
    if ns.command == "simulator":
        from neon_tui.simulator import serve as serve_mod

        return serve_mod.main(ns)
    if ns.command == "rotate":
        from neon_tui import rotate_cli

        return rotate_cli.main(ns)
    if ns.command == "exposure":
        from neon_tui import exposure_cli

        return exposure_cli.main(ns)
    if ns.command == "scan":
        from neon_tui import envscan_cli

        return envscan_cli.main(ns)
    if ns.command == "keys":
        from neon_tui import keys_cli

        return keys_cli.main(ns)
    if ns.command in ("report", "status"):
        from neon_tui import report_cli

        return report_cli.report_main(ns) if ns.command == "report" else report_cli.status_main(ns)
    if ns.command == "ipallow":
        from neon_tui import ipallow_cli

        return ipallow_cli.main(ns)
    if ns.command == "audit":
        from neon_tui import audit_cli

        return audit_cli.main(ns)
    if ns.command == "tree":
        from neon_tui.tree_print import print_tree

        return asyncio.run(print_tree(demo=ns.demo))
    from neon_tui.app import make_app

    app = make_app(demo=ns.demo, read_only=ns.read_only, checklist=ns.checklist)
    try:
        app.run()
    finally:
        backend = getattr(app, "demo_postgres", None)
        if backend is not None:
            backend.close()

    return app.return_code or 0


def check_config() -> int:
    """`neon-tui --check-config`: every problem of the settings file, one per line; exit 1 if any."""
    from neon_tui.config import read_settings
    from neon_tui.keymap_check import keymap_problems

    settings, problems = read_settings()
    assert settings.path is not None
    problems += keymap_problems(settings.keymap, where=f"{settings.path}: keymap")
    state = "found" if settings.path.is_file() else "not found: the defaults apply"
    print(f"settings: {settings.path} ({state})")
    for problem in problems:
        print(f"  problem: {problem}")
    if problems:
        print(f"{len(problems)} problem(s); neon-tui uses the defaults for those and the rest of the file as written.")
        return 1
    print("no problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
