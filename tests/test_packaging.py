"""Packaging: the core never imports the UI, and the built wheel ships the stylesheet."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_core_never_imports_textual_or_rich():
    # httpx imports its optional command-line module (click, rich, pygments) whenever those happen to
    # be installed; block that module so the check sees only what our code imports.
    code = (
        "import sys\n"
        "sys.modules['httpx._main'] = None\n"
        "import neon_tui.neon, neon_tui.neon.client, neon_tui.simulator, neon_tui.simulator.serve\n"
        "import importlib, pkgutil\n"
        "for pkg in ('neon_tui.neon', 'neon_tui.simulator', 'neon_tui.rotation', 'neon_tui.incident'):\n"
        "    try:\n"
        "        mod = importlib.import_module(pkg)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"UI modules imported by the core: {out.stdout}"


def test_core_sources_do_not_import_ui():
    """A static check as well, so a lazy import inside a function cannot hide."""
    import ast

    bad = []
    for pkg in ("neon", "rotation", "simulator", "incident"):
        for path in (ROOT / "neon_tui" / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("textual", "rich")]
    assert not bad


@pytest.mark.slow
def test_wheel_ships_stylesheet(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("neon_tui-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"), str(wheel)],
                   check=True, capture_output=True)
    code = (
        "import pathlib, neon_tui.app\n"
        "path = pathlib.Path(neon_tui.app.NeonApp.CSS_PATH)\n"
        "assert path.is_file(), path\n"
        "assert 'site-packages' in str(path), path\n"
        "print(path)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("neon_tui/styles/app.tcss")
