"""`make demo` installs neon-tui alone (with pip's progress and a line saying so); `make test` adds the [test] extra."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(target: str, tmp_path: Path, fresh: bool = True) -> str:
    """What `make TARGET` would run in a fresh clone (no .venv yet): make -n, nothing executed."""
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        if fresh:
            shutil.copy(ROOT / name, tmp_path / name)
    # Under `make test` this runs inside make: without its MAKEFLAGS/MAKELEVEL the inner make prints only the
    # commands (no "Entering directory" lines) and is not told -n/-k by the outer one.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PYTEST_ARGS")}
    out = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=tmp_path, capture_output=True,
                         text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_demo_installs_only_what_the_demo_needs_and_says_so(tmp_path):
    out = dry_run("demo", tmp_path)
    assert "-m venv .venv" in out
    assert 'install --progress-bar on -c constraints.txt -e .\n' in out
    assert ".[test]" not in out
    assert "Installing neon-tui and its dependencies into .venv (about a minute, first time only)" in out
    assert out.rstrip().endswith(".venv/bin/neon-tui --demo")
    heavy = [line for line in out.splitlines() if "pip install" in line and "-e ." in line]
    assert heavy and not any("--quiet" in line for line in heavy)  # pip's progress shows


def test_test_adds_the_test_extra(tmp_path):
    out = dry_run("test", tmp_path)
    assert '-e ".[test]"' in out and "-e .\n" in out
    assert out.rstrip().endswith(".venv/bin/python -m pytest")
    # once installed for the tests, the demo has nothing left to install
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    (tmp_path / ".venv" / ".installed").touch()
    (tmp_path / ".venv" / ".installed-test").touch()
    assert dry_run("demo", tmp_path, fresh=False).strip() == ".venv/bin/neon-tui --demo"
