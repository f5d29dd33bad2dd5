"""Fixtures that run the real `neon-tui` command against a simulator served on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.serve import serve_in_thread


class Served:
    def __init__(self, sim: Simulator, url: str, env: dict[str, str], state: Path) -> None:
        self.sim, self.url, self.env, self.state = sim, url, env, state
        self.procs: list[subprocess.Popen] = []

    def run(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "neon_tui.cli", *args], env=self.env, input=input,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "neon_tui.cli", *args], env=self.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def journals(self) -> list[Path]:
        d = self.state / "neon-tui" / "runs"
        return sorted(d.glob("run-*.jsonl")) if d.is_dir() else []

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()


@pytest.fixture
def served(tmp_path, request):
    marker = request.node.get_closest_marker("sim")
    cfg = dict(op_seconds=0.2, rate_limit="neon")
    if marker:
        cfg.update(marker.kwargs)
    sim = Simulator(SimConfig(**cfg))
    with serve_in_thread(sim) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEON_")}
        state = tmp_path / "state"
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=str(state),
                   XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                   PYTHONUNBUFFERED="1")
        s = Served(sim, url, env, state)
        try:
            yield s
        finally:
            s.stop_all()
