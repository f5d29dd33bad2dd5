"""`neon-tui rotate` (and every other subcommand) starts without loading the simulator's web stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_parser_does_not_import_the_simulator_web_stack():
    code = (
        "import sys\n"
        "from neon_tui.cli import _parser\n"
        "_parser().parse_args(['rotate', '*'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn')\n"
        "               or m in ('neon_tui.simulator.core', 'neon_tui.simulator.serve'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_simulator_package_still_exports_lazily():
    code = (
        "import neon_tui.simulator as s\n"
        "from neon_tui.simulator import SimConfig, Simulator\n"
        "from neon_tui.simulator.serve import add_arguments\n"
        "print(Simulator.__module__, SimConfig.__module__, add_arguments.__module__)\n"
        "try:\n"
        "    s.Nope\n"
        "except AttributeError as e:\n"
        "    print('ok', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split("\n")[0] == "neon_tui.simulator.core neon_tui.simulator.config neon_tui.simulator.serve_args"
    assert out.stdout.split("\n")[1].startswith("ok ")
