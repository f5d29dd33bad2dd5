"""The options of `neon-tui simulator serve`, importable without the web stack (the CLI builds every
subcommand's parser at start-up)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--api-key", default=None, help="personal API key to accept (default: generated)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated account (default 7)")
    parser.add_argument("--projects", type=int, default=None, help="projects in the primary organization")
    parser.add_argument("--branches", type=int, default=None, help="branches per project")
    parser.add_argument("--roles", type=int, default=None, help="login roles per branch besides neondb_owner")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    parser.add_argument("--op-seconds", type=float, default=2.0, help="how long operations take (default 2)")
    parser.add_argument("--rate-limit", choices=("neon", "off"), default="neon",
                        help="apply Neon's documented rate limits (default neon)")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of an injected fault per request")
    parser.add_argument("--postgres", action="store_true",
                        help="back every branch with a real local PostgreSQL cluster behind a Neon-like router")
    parser.add_argument("--postgres-max-running", type=int, default=8, metavar="N",
                        help="with --postgres: clusters running at once; the least recently used stops (default 8)")


__all__ = ["add_arguments"]
