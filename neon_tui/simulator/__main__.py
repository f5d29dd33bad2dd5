"""Run the simulator server: python -m neon_tui.simulator [options]."""

import argparse
import sys

from . import serve


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neon_tui.simulator",
                                     description="Serve a simulated Neon account on loopback.")
    serve.add_arguments(parser)
    return serve.main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(run())
